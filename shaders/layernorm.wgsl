// layernorm.wgsl: LayerNorm over the last axis of a (rows, dim) matrix, forward and backward.
//
// Per-row work (forward, backward_rows): a workgroup of 256 invocations holds 256 / tpr
// rows, tpr (threads per row, a power of two chosen by the host from dim alone)
// consecutive invocations per row. Each invocation reduces a fixed strided subset of its
// row (j = lane, lane + tpr, ...), then a tree in workgroup memory over the row's tpr slots
// combines them: the order of every sum depends on (dim, tpr) only, so results are
// bit-identical run to run. Statistics take two passes (mean, then the sum of squared
// deviations): sum and sum of squares cancel badly in f32.
//
// Column sums (dgamma, dbeta over rows) are two stages with no atomics: backward_partial
// sums fixed chunks of `chunk` rows per column into scratch, backward_final adds the
// chunks in order. The chunking is a function of rows only.
//
// stats (rows, 2): [mean, rstd] per row, rstd = 1 / sqrt(biased variance + eps); written by
// forward, read by the backward passes.
// Grids of more than 65,535 workgroups fold into y: workgroup g = wg.x + wg.y * nwg.x.

struct Params {
    rows: u32,
    dim: u32,
    flags: u32,    // backward_rows: bit 1 accumulate into dx
    tpr: u32,      // forward, backward_rows: invocations per row, a power of two 1..256
    eps: f32,
    chunk: u32,    // backward_partial: rows per chunk
    chunks: u32,   // backward_*: number of chunks = ceil(rows / chunk)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;

// Sums red_a and red_b over each aligned segment of p.tpr slots into its first slot.
fn tree(t: u32) {
    for (var s = p.tpr / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if ((t % p.tpr) < s) {
            red_a[t] += red_a[t + s];
            red_b[t] += red_b[t + s];
        }
    }
    workgroupBarrier();
}

// ---- forward: y = (x - mean) * rstd * gamma + beta, one row per tpr invocations ----
@group(0) @binding(1) var<storage, read> fw_x: array<f32>;                // (rows, dim)
@group(0) @binding(2) var<storage, read> fw_gamma: array<f32>;            // (dim,)
@group(0) @binding(3) var<storage, read> fw_beta: array<f32>;             // (dim,)
@group(0) @binding(4) var<storage, read_write> fw_y: array<f32>;          // (rows, dim)
@group(0) @binding(5) var<storage, read_write> fw_stats: array<f32>;      // (rows, 2) mean, rstd

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let lane = t % p.tpr;
    let base = t - lane;
    let row = (wg.x + wg.y * nwg.x) * (WG / p.tpr) + t / p.tpr;
    let live = row < p.rows;                              // idle invocations still meet the barriers
    var len = p.dim;
    if (!live) { len = 0u; }
    let off = row * p.dim;

    var s = 0.0;
    for (var j = lane; j < len; j += p.tpr) { s += fw_x[off + j]; }
    red_a[t] = s;
    red_b[t] = 0.0;
    tree(t);
    let mean = red_a[base] / f32(p.dim);
    workgroupBarrier();                                   // everyone has read the mean before red_a is reused

    var v = 0.0;
    for (var j = lane; j < len; j += p.tpr) {
        let d = fw_x[off + j] - mean;
        v += d * d;
    }
    red_a[t] = v;
    tree(t);
    let rstd = inverseSqrt(red_a[base] / f32(p.dim) + p.eps);

    if (!live) { return; }
    for (var j = lane; j < p.dim; j += p.tpr) {
        fw_y[off + j] = (fw_x[off + j] - mean) * rstd * fw_gamma[j] + fw_beta[j];
    }
    if (lane == 0u) {
        fw_stats[2u * row] = mean;
        fw_stats[2u * row + 1u] = rstd;
    }
}

// ---- backward_rows: dx (+)= rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma ----
@group(0) @binding(1) var<storage, read> br_x: array<f32>;                // (rows, dim) forward input
@group(0) @binding(2) var<storage, read> br_gamma: array<f32>;            // (dim,)
@group(0) @binding(3) var<storage, read> br_stats: array<f32>;            // (rows, 2)
@group(0) @binding(4) var<storage, read> br_dy: array<f32>;               // (rows, dim)
@group(0) @binding(5) var<storage, read_write> br_dx: array<f32>;         // (rows, dim)

@compute @workgroup_size(256)
fn backward_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let lane = t % p.tpr;
    let base = t - lane;
    let row = (wg.x + wg.y * nwg.x) * (WG / p.tpr) + t / p.tpr;
    let live = row < p.rows;
    var len = p.dim;
    var mean = 0.0;
    var rstd = 0.0;
    if (live) {
        mean = br_stats[2u * row];
        rstd = br_stats[2u * row + 1u];
    } else {
        len = 0u;
    }
    let off = row * p.dim;

    var sg = 0.0;
    var sgx = 0.0;
    for (var j = lane; j < len; j += p.tpr) {
        let g = br_dy[off + j] * br_gamma[j];
        sg += g;
        sgx += g * (br_x[off + j] - mean) * rstd;
    }
    red_a[t] = sg;
    red_b[t] = sgx;
    tree(t);
    let mg = red_a[base] / f32(p.dim);
    let mgx = red_b[base] / f32(p.dim);

    if (!live) { return; }
    for (var j = lane; j < p.dim; j += p.tpr) {
        let i = off + j;
        let xhat = (br_x[i] - mean) * rstd;
        var d = rstd * (br_dy[i] * br_gamma[j] - mg - xhat * mgx);
        if ((p.flags & 2u) != 0u) { d += br_dx[i]; }
        br_dx[i] = d;
    }
}

// ---- backward_partial: per chunk c of rows and column j, sums of dy * xhat and dy ----
// One invocation per (c, j), j fastest so neighbours read neighbouring columns.
@group(0) @binding(1) var<storage, read> bp_x: array<f32>;                // (rows, dim)
@group(0) @binding(2) var<storage, read> bp_stats: array<f32>;            // (rows, 2)
@group(0) @binding(3) var<storage, read> bp_dy: array<f32>;               // (rows, dim)
@group(0) @binding(4) var<storage, read_write> bp_part: array<f32>;       // (chunks, 2, dim): [dgamma; dbeta] per chunk

@compute @workgroup_size(256)
fn backward_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.chunks * p.dim) { return; }
    let c = i / p.dim;
    let j = i % p.dim;
    let r_end = min((c + 1u) * p.chunk, p.rows);
    var sg = 0.0;
    var sb = 0.0;
    for (var r = c * p.chunk; r < r_end; r++) {
        let g = bp_dy[r * p.dim + j];
        sb += g;
        sg += g * (bp_x[r * p.dim + j] - bp_stats[2u * r]) * bp_stats[2u * r + 1u];
    }
    bp_part[(2u * c) * p.dim + j] = sg;
    bp_part[(2u * c + 1u) * p.dim + j] = sb;
}

// ---- backward_final: dgamma[j] = sum over c of part[c, 0, j], dbeta[j] of part[c, 1, j], in order c = 0, 1, ... ----
@group(0) @binding(1) var<storage, read> bf_part: array<f32>;             // (chunks, 2, dim)
@group(0) @binding(2) var<storage, read_write> bf_dgamma: array<f32>;     // (dim,) overwritten
@group(0) @binding(3) var<storage, read_write> bf_dbeta: array<f32>;      // (dim,) overwritten

@compute @workgroup_size(256)
fn backward_final(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= 2u * p.dim) { return; }
    let k = i / p.dim;                                    // 0: dgamma, 1: dbeta
    let j = i % p.dim;
    var s = 0.0;
    for (var c = 0u; c < p.chunks; c++) { s += bf_part[(2u * c + k) * p.dim + j]; }
    if (k == 0u) { bf_dgamma[j] = s; } else { bf_dbeta[j] = s; }
}
