// attention.wgsl: fused multi-head self-attention, forward and backward, reading Q, K, V
// straight from the qkv linear's output and writing the context straight in the layout
// the projection reads. Not a flash-attention kernel: the probabilities are written out
// (backward reads them instead of recomputing), and there is no workgroup memory.
//
// Layouts (D = H·d): qkv (B, T, 3, H, d) = (B, T, 3·D), Q then K then V, each split into
// heads; out and dout (B, T, H, d) = (B, T, D); probs and ds (B, H, T, T).
//
// One invocation owns one row: a query row (b, h, i) in `forward` and `backward_q`, a key
// row (b, h, j) in `backward_kv`; row r = (b·H + h)·T + i. Invocations never share data,
// so no entry point has a barrier (CPU adapters are slow at them) and the workgroup size
// does not move any sum: every sum runs over j (or i) ascending, then c ascending, in the
// invocation that owns it. Rows of a vector q, dO, dQ, dK, dV of length d ≤ 64 live in
// private arrays (the per-row vectors of d values; a local array is the only way to hold
// a row whose length is a runtime value).
//
// Causal (flags bit 0): key j > query i is masked: P = 0 there (written as 0), loops skip it.
// ACCUMULATE (flags bit 1): the backward entries add into dqkv instead of overwriting it.
//
// Grids of more than 65,535 workgroups fold into y: row = (wg.x + wg.y·nwg.x)·WG + lid.x.

struct Params {
    batch: u32,
    tokens: u32,      // T
    heads: u32,       // H
    head_dim: u32,    // d, 1..64
    flags: u32,       // bit 0: causal; bit 1: accumulate into dqkv
    scale: f32,       // 1/sqrt(d)
    rows: u32,        // B·H·T
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const WG: u32 = 64u;
const MAXD: u32 = 64u;
// Below any score: the running max before the first key.
// (not -3.40282347e38, f32's lowest: naga writes that back as a decimal Tint reads as
// out of range, and the browser rejects the whole shader).
const LOWEST: f32 = -3.0e38;

// The (batch, head, token) of row r.
struct Row {
    b: u32,
    h: u32,
    i: u32,
}

fn row_of(r: u32) -> Row {
    let bh = r / p.tokens;
    return Row(bh / p.heads, bh % p.heads, r % p.tokens);
}

// Offset in qkv of element 0 of head h of slot `which` (0 Q, 1 K, 2 V) of token t of batch b.
fn qkv_at(b: u32, t: u32, which: u32, h: u32) -> u32 {
    return ((b * p.tokens + t) * 3u + which) * (p.heads * p.head_dim) + h * p.head_dim;
}

// Offset in out / dout of element 0 of head h of token t of batch b.
fn out_at(b: u32, t: u32, h: u32) -> u32 {
    return (b * p.tokens + t) * (p.heads * p.head_dim) + h * p.head_dim;
}

fn causal() -> bool {
    return (p.flags & 1u) != 0u;
}

fn accumulate() -> bool {
    return (p.flags & 2u) != 0u;
}

// ---- forward: P_i = softmax(s·q_i·K^T) (masked), o_i = P_i V ----
@group(0) @binding(1) var<storage, read> fw_qkv: array<f32>;              // (B, T, 3, H, d)
@group(0) @binding(2) var<storage, read_write> fw_out: array<f32>;        // (B, T, H, d)
@group(0) @binding(3) var<storage, read_write> fw_probs: array<f32>;      // (B, H, T, T)

// Pass 1 runs over the keys once for the running max m and the sum l of exp(s - m)
// (rescaled whenever m grows); pass 2 recomputes each score, writes p = exp(s - m) / l and
// accumulates o. A NaN score makes l NaN, and so every probability and output of its row.
@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = (wg.x + wg.y * nwg.x) * WG + lid.x;
    if (r >= p.rows) { return; }
    let w = row_of(r);
    let d = p.head_dim;
    var len = p.tokens;                                   // unmasked keys 0..len
    if (causal()) { len = w.i + 1u; }

    var q: array<f32, MAXD>;
    let qo = qkv_at(w.b, w.i, 0u, w.h);
    for (var c = 0u; c < d; c++) { q[c] = fw_qkv[qo + c]; }

    var m = LOWEST;
    var l = 0.0;
    for (var j = 0u; j < len; j++) {
        let ko = qkv_at(w.b, j, 1u, w.h);
        var s = 0.0;
        for (var c = 0u; c < d; c++) { s += q[c] * fw_qkv[ko + c]; }
        s *= p.scale;
        if (s > m) {
            l = l * exp(m - s) + 1.0;
            m = s;
        } else {
            l += exp(s - m);
        }
    }

    let inv = 1.0 / l;
    var o: array<f32, MAXD>;
    let po = r * p.tokens;
    for (var j = 0u; j < len; j++) {
        let ko = qkv_at(w.b, j, 1u, w.h);
        var s = 0.0;
        for (var c = 0u; c < d; c++) { s += q[c] * fw_qkv[ko + c]; }
        let pj = exp(s * p.scale - m) * inv;
        fw_probs[po + j] = pj;
        let vo = ko + p.heads * p.head_dim;               // V is the slot after K
        for (var c = 0u; c < d; c++) { o[c] += pj * fw_qkv[vo + c]; }
    }
    for (var j = len; j < p.tokens; j++) { fw_probs[po + j] = 0.0; }
    let oo = out_at(w.b, w.i, w.h);
    for (var c = 0u; c < d; c++) { fw_out[oo + c] = o[c]; }
}

// ---- backward, query rows: dS_ij = P_ij (dP_ij - sum_j P_ij dP_ij), dQ_i = s·sum_j dS_ij K_j ----
@group(0) @binding(1) var<storage, read> bq_qkv: array<f32>;              // (B, T, 3, H, d)
@group(0) @binding(2) var<storage, read> bq_probs: array<f32>;            // (B, H, T, T)
@group(0) @binding(3) var<storage, read> bq_dout: array<f32>;             // (B, T, H, d)
@group(0) @binding(4) var<storage, read_write> bq_dqkv: array<f32>;       // (B, T, 3, H, d): Q slots
@group(0) @binding(5) var<storage, read_write> bq_ds: array<f32>;         // (B, H, T, T) scratch

// dP_ij = dO_i · V_j goes to ds in the first pass over the keys (and the row's sum of
// P·dP is taken); the second pass turns it into dS in place. Masked entries of ds are not
// written (backward_kv does not read them).
@compute @workgroup_size(64)
fn backward_q(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = (wg.x + wg.y * nwg.x) * WG + lid.x;
    if (r >= p.rows) { return; }
    let w = row_of(r);
    let d = p.head_dim;
    var len = p.tokens;
    if (causal()) { len = w.i + 1u; }

    var g: array<f32, MAXD>;                              // dO_i
    let go = out_at(w.b, w.i, w.h);
    for (var c = 0u; c < d; c++) { g[c] = bq_dout[go + c]; }

    let po = r * p.tokens;
    var rs = 0.0;
    for (var j = 0u; j < len; j++) {
        let vo = qkv_at(w.b, j, 2u, w.h);
        var dp = 0.0;
        for (var c = 0u; c < d; c++) { dp += g[c] * bq_qkv[vo + c]; }
        bq_ds[po + j] = dp;
        rs += bq_probs[po + j] * dp;
    }

    var dq: array<f32, MAXD>;
    for (var j = 0u; j < len; j++) {
        let ds = bq_probs[po + j] * (bq_ds[po + j] - rs);
        bq_ds[po + j] = ds;
        let ko = qkv_at(w.b, j, 1u, w.h);
        for (var c = 0u; c < d; c++) { dq[c] += ds * bq_qkv[ko + c]; }
    }
    let qo = qkv_at(w.b, w.i, 0u, w.h);
    for (var c = 0u; c < d; c++) {
        var v = dq[c] * p.scale;
        if (accumulate()) { v += bq_dqkv[qo + c]; }
        bq_dqkv[qo + c] = v;
    }
}

// ---- backward, key rows: dK_j = s·sum_i dS_ij Q_i, dV_j = sum_i P_ij dO_i ----
@group(0) @binding(1) var<storage, read> bk_qkv: array<f32>;              // (B, T, 3, H, d)
@group(0) @binding(2) var<storage, read> bk_probs: array<f32>;            // (B, H, T, T)
@group(0) @binding(3) var<storage, read> bk_dout: array<f32>;             // (B, T, H, d)
@group(0) @binding(4) var<storage, read_write> bk_dqkv: array<f32>;       // (B, T, 3, H, d): K, V slots
@group(0) @binding(5) var<storage, read> bk_ds: array<f32>;               // (B, H, T, T) from backward_q

@compute @workgroup_size(64)
fn backward_kv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = (wg.x + wg.y * nwg.x) * WG + lid.x;
    if (r >= p.rows) { return; }
    let w = row_of(r);                                    // w.i is the key j here
    let d = p.head_dim;
    var start = 0u;                                       // unmasked queries start..T
    if (causal()) { start = w.i; }

    var dk: array<f32, MAXD>;
    var dv: array<f32, MAXD>;
    let col = (r / p.tokens) * p.tokens * p.tokens + w.i; // entry (i = 0, j) of this (b, h)
    for (var i = start; i < p.tokens; i++) {
        let e = col + i * p.tokens;
        let ds = bk_ds[e];
        let pij = bk_probs[e];
        let qo = qkv_at(w.b, i, 0u, w.h);
        let go = out_at(w.b, i, w.h);
        for (var c = 0u; c < d; c++) {
            dk[c] += ds * bk_qkv[qo + c];
            dv[c] += pij * bk_dout[go + c];
        }
    }
    let ko = qkv_at(w.b, w.i, 1u, w.h);
    let vo = ko + p.heads * p.head_dim;
    for (var c = 0u; c < d; c++) {
        var k = dk[c] * p.scale;
        var v = dv[c];
        if (accumulate()) {
            k += bk_dqkv[ko + c];
            v += bk_dqkv[vo + c];
        }
        bk_dqkv[ko + c] = k;
        bk_dqkv[vo + c] = v;
    }
}
