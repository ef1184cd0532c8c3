// tokens.wgsl: data movement for transformers: axis permutes (attention heads), image
// patches as token rows, class token + position embedding, taking the class token, the
// token-id lookup of a language model, with their backwards, and a language model's batch
// of text windows. Pure moves are bit exact
// (loads and stores, at most one f32 add); the gradient sums loop in a fixed order.
//
// One invocation per output element everywhere, so every element is written by exactly one
// invocation: no atomics, writes coalesced. Grids longer than 65,535 workgroups fold into
// y; an invocation's element is gid.x + gid.y * num_workgroups.x * 256.
//
// Bindings: 0 the uniform, 1 the main input, 2 the output, 3.. extra operands. Entry points
// bind different variables at the same numbers (each uses only its own), as elementwise.wgsl.

// The permute's shape after the host has dropped size-1 axes and merged output axes that
// are contiguous in the input: up to 6 output axes right-aligned in slots 0..5 (slot 5
// innermost); unused leading slots have d = 1, s = 0.
struct PermuteParams {
    len: u32,      // output elements (vec4s for permute4)
    flags: u32,    // bit 1: accumulate into y
    d0: u32, d1: u32, d2: u32, d3: u32, d4: u32, d5: u32,   // output dims; d0 is not read (len bounds slot 0)
    s0: u32, s1: u32, s2: u32, s3: u32, s4: u32, s5: u32,   // input stride of each output axis
    _pad0: u32, _pad1: u32,
}

struct Params {
    len: u32,       // invocations that do work
    flags: u32,     // bit 1: accumulate into the output
    batch: u32,     // B
    tokens: u32,    // T of the (B, T, D) tensor named per entry
    rows: u32,      // take_rows: rows taken per sample
    start: u32,     // take_rows: first row taken
    dim: u32,       // D (patchify: C·p·p, the row length)
    vocab: u32,     // lookup: table rows
    channels: u32,  // patchify: C
    height: u32,    // patchify: H
    width: u32,     // patchify: W
    patch_size: u32, // patchify: p
}

// Written once per step by the host (ops::StepState); same struct in every shader.
struct Step {
    step: u32, epoch: u32, valid: u32, lr: f32,
    seed_lo: u32, seed_hi: u32, step_size: f32, bc2_sqrt: f32,
}

@group(0) @binding(0) var<uniform> pp: PermuteParams;
@group(0) @binding(0) var<uniform> p: Params;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn accumulating(flags: u32) -> bool {
    return (flags & 2u) != 0u;
}

// The input offset of output element i (in elements, or vec4s for permute4): unravel i
// over the output dims from the innermost slot, add coordinate * input stride. Slots of
// size 1 are skipped (their coordinate is 0); after slot 1, what is left of i is the slot-0
// coordinate (0 when slot 0 is padding, since i < len).
fn permute_source(i: u32) -> u32 {
    var r = i;
    var src = 0u;
    if (pp.d5 > 1u) { src += (r % pp.d5) * pp.s5; r = r / pp.d5; }
    if (pp.d4 > 1u) { src += (r % pp.d4) * pp.s4; r = r / pp.d4; }
    if (pp.d3 > 1u) { src += (r % pp.d3) * pp.s3; r = r / pp.d3; }
    if (pp.d2 > 1u) { src += (r % pp.d2) * pp.s2; r = r / pp.d2; }
    if (pp.d1 > 1u) { src += (r % pp.d1) * pp.s1; r = r / pp.d1; }
    return src + r * pp.s0;
}

// y = x.permute(perm), or y += it.   x: the input (len,) in its own row-major order,
// y: (len,) in output order.
@group(0) @binding(1) var<storage, read> px: array<f32>;
@group(0) @binding(2) var<storage, read_write> py: array<f32>;
@compute @workgroup_size(256)
fn permute(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= pp.len) { return; }
    let v = px[permute_source(i)];
    if (accumulating(pp.flags)) { py[i] = py[i] + v; } else { py[i] = v; }
}

// The same when the innermost output axis is contiguous in the input with a multiple of 4
// elements (attention heads with d_head % 4 == 0): the host divides that dim and every
// stride by 4, and each invocation moves one vec4: a quarter of the index math, 16-byte
// loads and stores.   x4, y4: (len,) vec4s
@group(0) @binding(1) var<storage, read> px4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> py4: array<vec4<f32>>;
@compute @workgroup_size(256)
fn permute4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= pp.len) { return; }
    let v = px4[permute_source(i)];
    if (accumulating(pp.flags)) { py4[i] = py4[i] + v; } else { py4[i] = v; }
}

// The main input and the output of the entries below; each entry's header gives their shapes.
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// src = x (B, C, H, W), dst = y (B, P, C·p·p) with P = (H/p)·(W/p) patches in row-major
// order and each row ordered (c, ky, kx), the flattening of a Conv2d weight (D, C, p, p).
@compute @workgroup_size(256)
fn patchify(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let pw = p.width / p.patch_size;            // patches per image row
    let np = (p.height / p.patch_size) * pw;    // patches per image
    let k = i % p.dim;                          // (c, ky, kx) within the row
    let row = i / p.dim;                        // b * P + patch index
    let b = row / np;
    let pidx = row % np;
    let c = k / (p.patch_size * p.patch_size);
    let ky = (k / p.patch_size) % p.patch_size;
    let kx = k % p.patch_size;
    let iy = (pidx / pw) * p.patch_size + ky;
    let ix = (pidx % pw) * p.patch_size + kx;
    dst[i] = src[((b * p.channels + c) * p.height + iy) * p.width + ix];
}

// dst[b, j, :] (+)= src[b, start + j, :] for j < rows.   src (B, T, D) with T = tokens,
// dst (B, rows, D). The class token (rows 1, start 0) and the patch rows of the embedding's
// gradient (rows P, start 1).
@compute @workgroup_size(256)
fn take_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let d = i % p.dim;
    let n = i / p.dim;
    let j = n % p.rows;
    let b = n / p.rows;
    let v = src[(b * p.tokens + p.start + j) * p.dim + d];
    if (accumulating(p.flags)) { dst[i] = dst[i] + v; } else { dst[i] = v; }
}

// src = dy (B, D), dst = dx (B, T, D) with T = tokens. Overwriting: one invocation per dx
// element, dx[b, 0, :] = dy[b, :], the other rows 0. Accumulating: one per dy element,
// dx[b, 0, :] += dy[b, :], the other rows untouched (len says which grid the host built).
@compute @workgroup_size(256)
fn first_token_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let d = i % p.dim;
    if (accumulating(p.flags)) {
        let b = i / p.dim;
        let o = b * p.tokens * p.dim + d;
        dst[o] = dst[o] + src[i];
    } else {
        let n = i / p.dim;
        let t = n % p.tokens;
        let b = n / p.tokens;
        var v = 0.0;
        if (t == 0u) { v = src[b * p.dim + d]; }
        dst[i] = v;
    }
}

// src = x (B, P, D) patch embeddings, dst = y (B, T, D) with T = tokens = P + 1,
// cls (D,), pos (T, D):  y[b, 0] = cls + pos[0];  y[b, 1 + i] = x[b, i] + pos[1 + i].
@group(0) @binding(3) var<storage, read> cls: array<f32>;
@group(0) @binding(4) var<storage, read> pos: array<f32>;
@compute @workgroup_size(256)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let d = i % p.dim;
    let n = i / p.dim;
    let t = n % p.tokens;
    let b = n / p.tokens;
    var v: f32;
    if (t == 0u) {
        v = cls[d];
    } else {
        v = src[(b * (p.tokens - 1u) + t - 1u) * p.dim + d];
    }
    dst[i] = v + pos[t * p.dim + d];
}

// src = dy (B, T, D) with T = tokens, dst = dpos (T, D) overwritten (rows 0..T of a
// possibly longer table): dpos[t, d] = Σ_b dy[b, t, d], b = 0, 1, ... in order.
@compute @workgroup_size(256)
fn batch_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let stride = p.tokens * p.dim;
    var s = 0.0;
    for (var b = 0u; b < p.batch; b++) { s += src[b * stride + i]; }
    dst[i] = s;
}

// As batch_sum, and row 0's sums are also the class token's gradient: dcls (D,) overwritten.
@group(0) @binding(3) var<storage, read_write> dcls: array<f32>;
@compute @workgroup_size(256)
fn embed_backward_params(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let stride = p.tokens * p.dim;
    var s = 0.0;
    for (var b = 0u; b < p.batch; b++) { s += src[b * stride + i]; }
    dst[i] = s;
    if (i < p.dim) { dcls[i] = s; }
}

// src = table (vocab, D), dst = y (B, T, D) with T = tokens, ids (B·T,) u32, pos (T_max ≥ T, D):
// y[b, t] = table[min(ids[b·T + t], vocab - 1)] + pos[t]. The clamp keeps a bad id inside
// the table (the loader validates ids; this only guarantees no out-of-bounds read).
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read> lpos: array<f32>;
@compute @workgroup_size(256)
fn lookup(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let d = i % p.dim;
    let n = i / p.dim;
    let t = n % p.tokens;
    let id = min(ids[n], p.vocab - 1u);
    dst[i] = src[id * p.dim + d] + lpos[t * p.dim + d];
}

// src = dy (B·T, D), dst = dtable (vocab, D) overwritten, ids (B·T,) u32 clamped as in
// lookup: dtable[v, d] = Σ over n = 0, 1, ... in order with ids[n] == v of dy[n, d].
// Every invocation scans all B·T ids: vocab·D·B·T compares, about 1e8-4e8 for a character
// model (vocab 65-256, D 384, B·T 16k): a fraction of a millisecond on a discrete GPU. The
// id a thread reads is the same across the (v, ·) threads of a workgroup when D ≥ 256 (a
// broadcast load), and the branch is uniform there.
@group(0) @binding(3) var<storage, read> tids: array<u32>;
@compute @workgroup_size(256)
fn lookup_backward_table(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let d = i % p.dim;
    let v = i / p.dim;
    let n_tokens = p.batch * p.tokens;
    var s = 0.0;
    for (var n = 0u; n < n_tokens; n++) {
        if (min(tids[n], p.vocab - 1u) == v) { s += src[n * p.dim + d]; }
    }
    // Accumulate: a tied head wrote its gradient of the same table first.
    if (accumulating(p.flags)) { dst[i] = dst[i] + s; } else { dst[i] = s; }
}

// A language model's batch: B windows of T token ids from a token stream, and their
// targets (each position's next token). Training (p.start == 0): window b of the step
// starts at a counter hash of (seed, epoch, step·B + b) modulo p.rows possible starts, so
// a step is reproducible from the step state alone (data::text::window_start mirrors it).
// Evaluation (p.start = stride > 0): window w = step·B + b starts at w·stride, clamped to
// the last start: the same windows at every evaluation.
// stream (n,) u32 ids, ids and labels (B·T,) u32, p.rows = n − T starts.
@group(0) @binding(1) var<storage, read> wstream: array<u32>;
@group(0) @binding(2) var<storage, read_write> wids: array<u32>;
@group(0) @binding(5) var<storage, read_write> wlabels: array<u32>;
@group(0) @binding(6) var<storage, read> wstep: Step;

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

@compute @workgroup_size(256)
fn text_windows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let b = i / p.tokens;
    let t = i % p.tokens;
    let w = wstep.step * p.batch + b;
    var start: u32;
    if (p.start == 0u) {
        let h = pcg(pcg(pcg(wstep.seed_lo ^ pcg(wstep.seed_hi)) ^ wstep.epoch) ^ w);
        start = h % p.rows;
    } else {
        start = min(w * p.start, p.rows - 1u);
    }
    wids[i] = wstream[start + t];
    wlabels[i] = wstream[start + t + 1u];
}
