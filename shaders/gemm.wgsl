// gemm.wgsl: C = alpha * A * B (+ bias[col]) (+ C when accumulating), tiled.
//
// One workgroup of WG_N x WG_M invocations computes a (TM*WG_M) x (TM*WG_N) tile of C;
// each invocation keeps a TM x TM register block in vec4 accumulators: 4x4 (`main`,
// single or double-buffered) or 8x8 (`main_8x8`, for large GPUs: twice the multiply-adds
// per workgroup-memory read). K
// is walked in steps of BK through workgroup memory. The host picks the entry and tile
// per GEMM (ops/tune.rs: by measurement, or by output shape) so small layers do not
// compute mostly padding.
//
// Grid z is one of two things, never both:
// - split-K (BATCHED false): workgroup z computes the K range [z*k_split, (z+1)*k_split)
//   into its own slice of C (for shapes with few output tiles and a long K); the slices
//   are then summed in a fixed order by elementwise.wgsl `sum_slices`, so results stay
//   deterministic.
// - batched GEMM (override BATCHED true): G independent products of the same (M, K, N),
//   C_g = op(A_g) op(B_g) for g = z in 0..G, with A_g at element a_first + g*a_stride of
//   a, B_g at b_first + g*b_stride of b, C_g at c_first + g*c_stride of c (stride 0: one operand shared by all g). Only
//   the row-major and transposed views (A_MODE 0/1, B_MODE 0/1, C_MODE 0) take the
//   offsets, and only in BATCHED pipelines: the others compile to the unbatched code. A
//   batched GEMM is not split (each product sums all of K, in the order an unbatched one
//   does, so G = 1 gives matmul's bits).

// A, B and C are *views*. The override constants A_MODE, B_MODE, C_MODE say how a logical
// element maps to memory, so the same core serves matmul in the three layouts training
// needs and convolution as implicit GEMM without a materialised im2col:
//
//   A (M x K)  0: a[g*a_stride + m*K + k]         row-major
//              1: a[g*a_stride + k*M + m]         stored transposed (K x M)
//              2: conv weight (c_out, c_in, kh, kw) read as (c_in) x (c_out*t_h*t_w), the
//                 taps of one stride phase: k = (co, ty, tx), tap (ph_y + ty*stride, ph_x + tx*stride)
//              3: NCHW tensor (batch, c_out, h_out, w_out) read as (c_out) x (batch*h_out*w_out)
//   B (K x N)  0: b[g*b_stride + k*N + n]         row-major
//              1: b[g*b_stride + n*K + k]         stored transposed (N x K)
//              2: im2col of x (batch, c_in, h_in, w_in): k = (ci, r, s), n = (img, oy, ox)
//              3: dY (batch, c_out, h_out, w_out) gathered for the data gradient of one
//                 stride phase: k = (co, ty, tx), n = (img, qy, qx) (see "stride phases")
//              4: im2col of x transposed for the weight gradient: k = (img, oy, ox), n = (ci, r, s)
//   C (M x N)  0: c[z*M*N + m*N + n]              row-major, one slice per split;
//                 c[g*c_stride + m*N + n]         batched
//              1: NCHW scatter: n = (img, hw), c[(img*M + m)*(N/batch) + hw]
//              2: NCHW scatter of one stride phase: n = (img, qy, qx) is pixel
//                 (y0 + qy*stride, x0 + qx*stride) of c (batch, M, h_in, w_in)
//
// Stride phases (the data gradient). Input row iy receives from output row
// oy = (iy + pad - r) / stride only for the taps r with r = (iy + pad) mod stride: under
// stride 2 a 3x3 kernel gives each input pixel 1, 2 or 4 of its 9 taps. So the host runs
// one GEMM per phase (ph_y, ph_x) of (iy + pad, ix + pad) mod stride, over that phase's
// pixels (iy = y0 + qy*stride; q_h x q_w of them) and its taps only (t_h x t_w), with
// oy = base_y + qy - ty: every K step is useful work, none a multiplication by a skipped
// zero. Under stride 1 there is one phase and this is the plain transposed convolution.

struct Params {
    m: u32, n: u32, k: u32,
    flags: u32,     // bit 0: add bias[n]; bit 1: accumulate (C += A*B)
    batch: u32, c_in: u32, h_in: u32, w_in: u32,
    c_out: u32, h_out: u32, w_out: u32, kh: u32,
    kw: u32, stride: u32, pad: u32,
    k_split: u32,   // K elements per z slice (= k when not split)
    alpha: f32,     // scale of the product (1 except for regularisers)
    // One stride phase of the data gradient (A_MODE 2, B_MODE 3, C_MODE 2):
    ph_y: u32, ph_x: u32,       // the taps' offsets: r = ph_y + ty*stride
    y0: u32, x0: u32,           // the phase's first input pixel
    q_h: u32, q_w: u32,         // its pixels per image: q_h x q_w
    t_h: u32, t_w: u32,         // its taps: t_h x t_w
    base_y: u32, base_x: u32,   // oy = base_y + qy - ty
    // Batched GEMM (BATCHED): G products (the grid's z; here for the host's tile key) and
    // the element strides between consecutive A_g, B_g, C_g (0: shared).
    groups: u32,
    a_stride: u32, b_stride: u32, c_stride: u32,
    // ... and where A_0, B_0, C_0 start in their buffers (attention's Q, K and V are three
    // blocks of one buffer, at offsets no binding could start at).
    a_first: u32, b_first: u32, c_first: u32,
    _pad0: u32, _pad1: u32,
}

override A_MODE: u32 = 0u;
override B_MODE: u32 = 0u;
override C_MODE: u32 = 0u;
override BATCHED: bool = false;   // grid z = product g, operands offset by g*stride

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;        // see A_MODE
@group(0) @binding(2) var<storage, read> b: array<f32>;        // see B_MODE
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // (N,) or a dummy when flags bit 0 is clear
@group(0) @binding(4) var<storage, read_write> c: array<f32>;  // see C_MODE

override WG_M: u32 = 16u;      // invocations along M (each computes TM rows)
override WG_N: u32 = 16u;      // invocations along N (each computes TM columns)
override BK: u32 = 16u;        // K step through workgroup memory
override TM: u32 = 4u;         // rows and columns per invocation: 4 (main) or 8 (main_8x8)
override STAGES: u32 = 1u;     // workgroup-memory copies of the tile: 1 or 2 (main only)
override RM: u32 = WG_M * TM / 4u;   // vec4 row groups in a tile
override RN: u32 = WG_N * TM / 4u;   // vec4 column groups in a tile
override AS_LEN: u32 = BK * RM;      // one copy of the A tile
override BS_LEN: u32 = BK * RN;
override AS_ALL: u32 = AS_LEN * STAGES;
override BS_ALL: u32 = BS_LEN * STAGES;

// Where this workgroup's A_g, B_g (BATCHED only) and C slice or product (C_MODE 0) start:
// set once at the top of each entry point by `begin`.
var<private> ga_off: u32;
var<private> gb_off: u32;
var<private> gc_off: u32;

var<workgroup> As: array<vec4<f32>, AS_ALL>;   // [copy][kk][i]: A[m0 + 4i .. 4i+3, k0 + kk]
var<workgroup> Bs: array<vec4<f32>, BS_ALL>;   // [copy][kk][j]: B[k0 + kk, n0 + 4j .. 4j+3]

// A[m .. m+3, k] as a vec4 (zero outside M x K). The index arithmetic for k is done once
// per vec4, and the four rows step by a fixed stride: integer division is slow on CPU
// adapters (no vector divide), and these loads run once per tile element.
fn load_a4(m: u32, k: u32) -> vec4<f32> {
    var out = vec4<f32>(0.0);
    if (k >= p.k) { return out; }
    var base: u32;
    var stride: u32;
    if (A_MODE == 0u) {
        base = m * p.k + k;
        stride = p.k;
        if (BATCHED) { base += ga_off; }
    } else if (A_MODE == 1u) {
        base = k * p.m + m;
        stride = 1u;
        if (BATCHED) { base += ga_off; }
    } else if (A_MODE == 2u) {
        // conv weight (c_out, c_in, kh, kw) read as c_in x (c_out*t_h*t_w), one phase's taps
        let tt = p.t_h * p.t_w;
        let co = k / tt;
        let r = p.ph_y + ((k % tt) / p.t_w) * p.stride;
        let s = p.ph_x + (k % p.t_w) * p.stride;
        stride = p.kh * p.kw;
        base = (co * p.c_in + m) * stride + r * p.kw + s;
    } else {
        // NCHW (batch, c_out, h_out, w_out) read as c_out x (batch*h_out*w_out)
        let hw = p.h_out * p.w_out;
        base = ((k / hw) * p.c_out + m) * hw + k % hw;
        stride = hw;
    }
    for (var i = 0u; i < 4u; i++) {
        if (m + i < p.m) { out[i] = a[base + i * stride]; }
    }
    return out;
}

// One im2col element: image img, channel ci, output position (oy, ox), kernel tap (r, s).
fn im2col(img: u32, ci: u32, oy: u32, ox: u32, r: u32, s: u32) -> f32 {
    let iy = i32(oy * p.stride + r) - i32(p.pad);
    let ix = i32(ox * p.stride + s) - i32(p.pad);
    if (iy < 0 || ix < 0 || iy >= i32(p.h_in) || ix >= i32(p.w_in)) { return 0.0; }
    return b[((img * p.c_in + ci) * p.h_in + u32(iy)) * p.w_in + u32(ix)];
}

// B[k, n .. n+3] as a vec4 (zero outside K x N), decomposing k and n once and stepping the
// innermost coordinate for the next three columns.
fn load_b4(k: u32, n: u32) -> vec4<f32> {
    var out = vec4<f32>(0.0);
    if (k >= p.k || n >= p.n) { return out; }
    var off = 0u;
    if (BATCHED) { off = gb_off; }
    if (B_MODE == 0u) {
        for (var j = 0u; j < 4u; j++) {
            if (n + j < p.n) { out[j] = b[off + k * p.n + n + j]; }
        }
        return out;
    }
    if (B_MODE == 1u) {
        for (var j = 0u; j < 4u; j++) {
            if (n + j < p.n) { out[j] = b[off + (n + j) * p.k + k]; }
        }
        return out;
    }
    let khw = p.kh * p.kw;
    if (B_MODE == 2u) {
        // k = (ci, r, s), n = (img, oy, ox)
        let ci = k / khw;
        let r = (k % khw) / p.kw;
        let s = k % p.kw;
        let hw = p.h_out * p.w_out;
        var img = n / hw;
        var oy = (n % hw) / p.w_out;
        var ox = n % p.w_out;
        for (var j = 0u; j < 4u; j++) {
            if (n + j < p.n) { out[j] = im2col(img, ci, oy, ox, r, s); }
            ox += 1u;
            if (ox == p.w_out) { ox = 0u; oy += 1u; if (oy == p.h_out) { oy = 0u; img += 1u; } }
        }
        return out;
    }
    if (B_MODE == 3u) {
        // k = (co, ty, tx), n = (img, qy, qx) of one stride phase: dY[img, co, oy, ox] with
        // oy = base_y + qy - ty (zero outside the output)
        let tt = p.t_h * p.t_w;
        let co = k / tt;
        let oy0 = i32(p.base_y) - i32((k % tt) / p.t_w);
        let ox0 = i32(p.base_x) - i32(k % p.t_w);
        let qhw = p.q_h * p.q_w;
        var img = n / qhw;
        var qy = (n % qhw) / p.q_w;
        var qx = n % p.q_w;
        for (var j = 0u; j < 4u; j++) {
            let oy = oy0 + i32(qy);
            let ox = ox0 + i32(qx);
            if (n + j < p.n && oy >= 0 && ox >= 0 && u32(oy) < p.h_out && u32(ox) < p.w_out) {
                out[j] = b[((img * p.c_out + co) * p.h_out + u32(oy)) * p.w_out + u32(ox)];
            }
            qx += 1u;
            if (qx == p.q_w) { qx = 0u; qy += 1u; if (qy == p.q_h) { qy = 0u; img += 1u; } }
        }
        return out;
    }
    // B_MODE 4: k = (img, oy, ox), n = (ci, r, s)
    let hw = p.h_out * p.w_out;
    let img = k / hw;
    let oy = (k % hw) / p.w_out;
    let ox = k % p.w_out;
    var ci = n / khw;
    var r = (n % khw) / p.kw;
    var s = n % p.kw;
    for (var j = 0u; j < 4u; j++) {
        if (n + j < p.n) { out[j] = im2col(img, ci, oy, ox, r, s); }
        s += 1u;
        if (s == p.kw) { s = 0u; r += 1u; if (r == p.kh) { r = 0u; ci += 1u; } }
    }
    return out;
}

fn store_c(m: u32, n0: u32, v: vec4<f32>) {
    if (m >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if (n < p.n) {
            var x = p.alpha * v[j];
            if ((p.flags & 1u) != 0u) { x += bias[n]; }
            var idx: u32;
            if (C_MODE == 0u) {
                idx = gc_off + m * p.n + n;
            } else if (C_MODE == 1u) {
                let hw = p.n / p.batch;
                idx = ((n / hw) * p.m + m) * hw + n % hw;
            } else {
                let qhw = p.q_h * p.q_w;
                let iy = p.y0 + ((n % qhw) / p.q_w) * p.stride;
                let ix = p.x0 + (n % p.q_w) * p.stride;
                idx = (((n / qhw) * p.m + m) * p.h_in + iy) * p.w_in + ix;
            }
            if ((p.flags & 2u) != 0u) { x += c[idx]; }
            c[idx] = x;
        }
    }
}

// Stages K step [k0, k0 + BK) of the tile's A rows and B columns into workgroup-memory
// copy `copy`, zero past k_end; invocation t of the workgroup loads every
// (WG_M*WG_N)-th vec4.
fn stage(t: u32, m0: u32, n0: u32, k0: u32, k_end: u32, copy: u32) {
    let threads = WG_M * WG_N;
    for (var i = t; i < AS_LEN; i += threads) {
        let k = k0 + i / RM;
        if (k < k_end) {
            As[copy * AS_LEN + i] = load_a4(m0 + 4u * (i % RM), k);
        } else {
            As[copy * AS_LEN + i] = vec4<f32>(0.0);
        }
    }
    for (var i = t; i < BS_LEN; i += threads) {
        let k = k0 + i / RN;
        if (k < k_end) {
            Bs[copy * BS_LEN + i] = load_b4(k, n0 + 4u * (i % RN));
        } else {
            Bs[copy * BS_LEN + i] = vec4<f32>(0.0);
        }
    }
}

// Sets this workgroup's operand offsets from grid z (a K slice, or a product when
// BATCHED) and returns the first K it sums.
fn begin(z: u32) -> u32 {
    if (BATCHED) {
        ga_off = p.a_first + z * p.a_stride;
        gb_off = p.b_first + z * p.b_stride;
        gc_off = p.c_first + z * p.c_stride;
        return 0u;
    }
    gc_off = z * p.m * p.n;
    return z * p.k_split;
}

// The 4x4 register block. With STAGES = 2 the tile has two copies in workgroup memory:
// step i+1 is staged into one while step i is computed from the other, so each K step
// needs one barrier instead of two (barriers are what CPU adapters pay most for; on a
// GPU the next step's loads overlap the arithmetic). STAGES is an override, so the
// branches on it are resolved when the pipeline is built. Same sum order either way.
@compute @workgroup_size(WG_N, WG_M, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = wg.y * 4u * WG_M;
    let n0 = wg.x * 4u * WG_N;
    let k_begin = begin(wg.z);
    let k_end = min(p.k, k_begin + p.k_split);
    let t = lid.y * WG_N + lid.x;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    if (STAGES == 2u) {
        stage(t, m0, n0, k_begin, k_end, 0u);
        workgroupBarrier();
    }
    var cur = 0u;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        if (STAGES == 1u) {
            stage(t, m0, n0, k0, k_end, 0u);
            workgroupBarrier();
        } else if (k0 + BK < k_end) {
            // The other copy was last read before the previous barrier.
            stage(t, m0, n0, k0 + BK, k_end, 1u - cur);
        }
        let a_off = cur * AS_LEN;
        let b_off = cur * BS_LEN;
        for (var kk = 0u; kk < BK; kk++) {
            let av = As[a_off + kk * RM + lid.y];
            let bv = Bs[b_off + kk * RN + lid.x];
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
        if (STAGES == 2u) {
            cur = 1u - cur;
        }
    }

    let m = m0 + 4u * lid.y;
    let n = n0 + 4u * lid.x;
    store_c(m, n, acc0);
    store_c(m + 1u, n, acc1);
    store_c(m + 2u, n, acc2);
    store_c(m + 3u, n, acc3);
}

// The 8x8 register block (TM = 8). An invocation's rows are the two groups of four
// 4*ly.. and 4*(ly + WG_M).. of the tile, and likewise its columns, so neighbouring
// invocations read neighbouring vec4s of workgroup memory. Each output still sums its K
// range in order, so the result is bit for bit that of `main`.
@compute @workgroup_size(WG_N, WG_M, 1)
fn main_8x8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = wg.y * 8u * WG_M;
    let n0 = wg.x * 8u * WG_N;
    let k_begin = begin(wg.z);
    let k_end = min(p.k, k_begin + p.k_split);
    let t = lid.y * WG_N + lid.x;

    // acc[8*h + 2*r + g]: row r of row group h, column group g.
    var acc: array<vec4<f32>, 16>;

    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        stage(t, m0, n0, k0, k_end, 0u);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = As[kk * RM + lid.y];
            let a1 = As[kk * RM + lid.y + WG_M];
            let b0 = Bs[kk * RN + lid.x];
            let b1 = Bs[kk * RN + lid.x + WG_N];
            acc[0] += a0.x * b0;
            acc[1] += a0.x * b1;
            acc[2] += a0.y * b0;
            acc[3] += a0.y * b1;
            acc[4] += a0.z * b0;
            acc[5] += a0.z * b1;
            acc[6] += a0.w * b0;
            acc[7] += a0.w * b1;
            acc[8] += a1.x * b0;
            acc[9] += a1.x * b1;
            acc[10] += a1.y * b0;
            acc[11] += a1.y * b1;
            acc[12] += a1.z * b0;
            acc[13] += a1.z * b1;
            acc[14] += a1.w * b0;
            acc[15] += a1.w * b1;
        }
        workgroupBarrier();
    }

    let n_lo = n0 + 4u * lid.x;
    let n_hi = n0 + 4u * (lid.x + WG_N);
    for (var h = 0u; h < 2u; h++) {
        let m = m0 + 4u * (lid.y + h * WG_M);
        for (var r = 0u; r < 4u; r++) {
            store_c(m + r, n_lo, acc[8u * h + 2u * r]);
            store_c(m + r, n_hi, acc[8u * h + 2u * r + 1u]);
        }
    }
}
