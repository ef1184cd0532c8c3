// softmax.wgsl: softmax over the last axis of a (rows, n) matrix and its backward, for
// attention scores. Not the fused attention kernel: one pass over materialised scores.
//
// Layout of the work: a workgroup of 256 invocations holds 256 / tpr rows, tpr (threads per
// row, a power of two chosen by the host from n alone) consecutive invocations per row.
// Each invocation reduces a fixed strided subset of its row (j = lane, lane + tpr, ...),
// then a tree in workgroup memory over the row's tpr slots combines them. The order of
// every sum is a function of (n, tpr) only, so results are bit-identical run to run, and
// tpr is not a tuning knob that may differ between adapters. Rows of a short row share a
// workgroup instead of leaving most of it idle (n is 17..257 in vision transformers).
//
// Causal (flags bit 0): row r is query i = r % n of a square (n, n) attention block;
// columns j > i are masked: y = 0 there and the softmax runs over j <= i.
//
// Grids of more than 65,535 workgroups fold into y: workgroup g = wg.x + wg.y * nwg.x.

struct Params {
    rows: u32,
    n: u32,        // row length
    flags: u32,    // bit 0: causal mask (forward); bit 1: accumulate into dx (backward)
    tpr: u32,      // invocations per row: a power of two, 1..256
}

@group(0) @binding(0) var<uniform> p: Params;

const WG: u32 = 256u;
// Below any score: the identity of max for invocations with no element.
// (not -3.40282347e38, f32's lowest: naga writes that back as a decimal Tint reads as
// out of range, and the browser rejects the whole shader).
const LOWEST: f32 = -3.0e38;
var<workgroup> red: array<f32, 256>;

// Sums red over each aligned segment of p.tpr slots into the segment's first slot.
fn tree_sum(t: u32) {
    for (var s = p.tpr / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if ((t % p.tpr) < s) { red[t] += red[t + s]; }
    }
    workgroupBarrier();
}

// As tree_sum, with max.
fn tree_max(t: u32) {
    for (var s = p.tpr / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if ((t % p.tpr) < s) { red[t] = max(red[t], red[t + s]); }
    }
    workgroupBarrier();
}

// ---- forward: y = exp(x - max) / sum exp(x - max) over the row's unmasked columns ----
@group(0) @binding(1) var<storage, read> fw_x: array<f32>;                // (rows, n)
@group(0) @binding(2) var<storage, read_write> fw_y: array<f32>;          // (rows, n)

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let lane = t % p.tpr;
    let base = t - lane;                                  // this row's first slot in red
    let row = (wg.x + wg.y * nwg.x) * (WG / p.tpr) + t / p.tpr;
    let live = row < p.rows;                              // idle invocations still meet the barriers
    var len = p.n;                                        // unmasked columns 0..len
    if ((p.flags & 1u) != 0u) { len = row % p.n + 1u; }
    if (!live) { len = 0u; }
    let off = row * p.n;

    var m = LOWEST;
    for (var j = lane; j < len; j += p.tpr) { m = max(m, fw_x[off + j]); }
    red[t] = m;
    tree_max(t);
    m = red[base];
    workgroupBarrier();                                   // everyone has read the max before red is reused

    var s = 0.0;
    for (var j = lane; j < len; j += p.tpr) { s += exp(fw_x[off + j] - m); }
    red[t] = s;
    tree_sum(t);
    s = red[base];

    if (!live) { return; }
    for (var j = lane; j < p.n; j += p.tpr) {
        // A NaN anywhere in the unmasked row makes s NaN, so it reaches every unmasked output.
        var v = 0.0;
        if (j < len) { v = exp(fw_x[off + j] - m) / s; }
        fw_y[off + j] = v;
    }
}

// ---- backward: dx (+)= y * (dy - sum_j y_j dy_j); masked entries have y = 0 and get 0 ----
@group(0) @binding(1) var<storage, read> bw_y: array<f32>;                // (rows, n) forward output
@group(0) @binding(2) var<storage, read> bw_dy: array<f32>;               // (rows, n)
@group(0) @binding(3) var<storage, read_write> bw_dx: array<f32>;         // (rows, n)

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let lane = t % p.tpr;
    let row = (wg.x + wg.y * nwg.x) * (WG / p.tpr) + t / p.tpr;
    let live = row < p.rows;
    var len = p.n;
    if (!live) { len = 0u; }
    let off = row * p.n;

    var d = 0.0;
    for (var j = lane; j < len; j += p.tpr) { d += bw_y[off + j] * bw_dy[off + j]; }
    red[t] = d;
    tree_sum(t);
    d = red[t - lane];

    if (!live) { return; }
    for (var j = lane; j < p.n; j += p.tpr) {
        let i = off + j;
        var g = bw_y[i] * (bw_dy[i] - d);
        if ((p.flags & 2u) != 0u) { g += bw_dx[i]; }
        bw_dx[i] = g;
    }
}
