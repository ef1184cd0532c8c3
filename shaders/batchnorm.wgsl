// batchnorm.wgsl: BatchNorm2d over NCHW activations, training and eval.
//
// Per-channel reductions run one workgroup of 256 invocations per channel: each invocation
// sums a fixed strided subset, then a tree in workgroup memory combines them, so results
// are deterministic (no atomics). Mean and variance are two passes over the data rather
// than sum and sum-of-squares, which cancels badly in f32.
//
// stats (2C,): [mean_0..mean_{C-1}, invstd_0..invstd_{C-1}] as used by the forward pass;
// backward reads the same buffer.

struct Params {
    batch: u32, channels: u32, hw: u32,
    flags: u32,      // apply: bit 0 ReLU after, bit 1 add residual before the ReLU;
                     // backward: bit 0 mask dy by the saved output y > 0 (the fused ReLU), bit 1 accumulate dx
    eps: f32,
    momentum: f32,   // running = (1 - momentum) * running + momentum * batch statistic
    _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;

fn at(c: u32, i: u32) -> u32 {
    // i-th element (over batch and space) of channel c
    return ((i / p.hw) * p.channels + c) * p.hw + i % p.hw;
}

// Sums red_a and red_b over the workgroup into element 0 of each.
fn tree(t: u32) {
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (t < s) {
            red_a[t] += red_a[t + s];
            red_b[t] += red_b[t + s];
        }
    }
    workgroupBarrier();
}

// ---- training statistics: one workgroup per channel ----
@group(0) @binding(1) var<storage, read> st_x: array<f32>;                 // (B, C, H, W)
@group(0) @binding(2) var<storage, read_write> st_stats: array<f32>;       // (2C,) mean, invstd
@group(0) @binding(3) var<storage, read_write> st_running: array<f32>;     // (2C,) running mean, running var

@compute @workgroup_size(256)
fn stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wg.x;
    let t = lid.x;
    let count = p.batch * p.hw;
    var s = 0.0;
    for (var i = t; i < count; i += WG) { s += st_x[at(c, i)]; }
    red_a[t] = s;
    red_b[t] = 0.0;
    tree(t);
    let mean = red_a[0] / f32(count);
    workgroupBarrier();
    var v = 0.0;
    for (var i = t; i < count; i += WG) {
        let d = st_x[at(c, i)] - mean;
        v += d * d;
    }
    red_a[t] = v;
    red_b[t] = 0.0;
    tree(t);
    if (t == 0u) {
        let var_b = red_a[0] / f32(count);
        st_stats[c] = mean;
        st_stats[p.channels + c] = inverseSqrt(var_b + p.eps);
        // The running variance is the unbiased estimate, as in PyTorch.
        let unbiased = var_b * f32(count) / f32(max(count, 2u) - 1u);
        st_running[c] = (1.0 - p.momentum) * st_running[c] + p.momentum * mean;
        st_running[p.channels + c] = (1.0 - p.momentum) * st_running[p.channels + c] + p.momentum * unbiased;
    }
}

// ---- eval statistics from the running estimates: one invocation per channel ----
@group(0) @binding(1) var<storage, read> ev_running: array<f32>;           // (2C,)
@group(0) @binding(2) var<storage, read_write> ev_stats: array<f32>;       // (2C,)

@compute @workgroup_size(64)
fn eval_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.channels) { return; }
    ev_stats[c] = ev_running[c];
    ev_stats[p.channels + c] = inverseSqrt(ev_running[p.channels + c] + p.eps);
}

// ---- y = [relu]( gamma * (x - mean) * invstd + beta [+ residual] ): one invocation per element ----
@group(0) @binding(1) var<storage, read> ap_x: array<f32>;                 // (B, C, H, W)
@group(0) @binding(2) var<storage, read> ap_stats: array<f32>;             // (2C,)
@group(0) @binding(3) var<storage, read> ap_gamma: array<f32>;             // (C,)
@group(0) @binding(4) var<storage, read> ap_beta: array<f32>;              // (C,)
@group(0) @binding(5) var<storage, read> ap_res: array<f32>;               // (B, C, H, W) or a dummy
@group(0) @binding(6) var<storage, read_write> ap_y: array<f32>;           // (B, C, H, W)

@compute @workgroup_size(256)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.batch * p.channels * p.hw) { return; }
    let c = (i / p.hw) % p.channels;
    var v = (ap_x[i] - ap_stats[c]) * ap_stats[p.channels + c] * ap_gamma[c] + ap_beta[c];
    if ((p.flags & 2u) != 0u) { v += ap_res[i]; }
    if ((p.flags & 1u) != 0u) { v = max(v, 0.0); }
    ap_y[i] = v;
}

// ---- backward reduction: dgamma = sum(g * xhat), dbeta = sum(g); one workgroup per channel ----
// g is dy, or dy masked by the fused ReLU's saved output (flags bit 0): folding the mask in
// here saves an activation-sized buffer and a pass per BatchNorm.
@group(0) @binding(1) var<storage, read> br_x: array<f32>;                 // (B, C, H, W) forward input
@group(0) @binding(2) var<storage, read> br_stats: array<f32>;             // (2C,)
@group(0) @binding(3) var<storage, read> br_dy: array<f32>;                // (B, C, H, W)
@group(0) @binding(4) var<storage, read_write> br_dgamma: array<f32>;      // (C,)
@group(0) @binding(5) var<storage, read_write> br_dbeta: array<f32>;       // (C,)
@group(0) @binding(6) var<storage, read> br_y: array<f32>;                 // (B, C, H, W) fused output, or a dummy

@compute @workgroup_size(256)
fn backward_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wg.x;
    let t = lid.x;
    let count = p.batch * p.hw;
    let mean = br_stats[c];
    let invstd = br_stats[p.channels + c];
    var sg = 0.0;
    var sgx = 0.0;
    for (var i = t; i < count; i += WG) {
        let j = at(c, i);
        var g = br_dy[j];
        if ((p.flags & 1u) != 0u && !(br_y[j] > 0.0)) { g = 0.0; }
        sg += g;
        sgx += g * (br_x[j] - mean) * invstd;
    }
    red_a[t] = sgx;
    red_b[t] = sg;
    tree(t);
    if (t == 0u) {
        br_dgamma[c] = red_a[0];
        br_dbeta[c] = red_b[0];
    }
}

// ---- dx = gamma * invstd / n * (n * g - dbeta - xhat * dgamma), g as above: one invocation per element ----
@group(0) @binding(1) var<storage, read> ba_x: array<f32>;                 // (B, C, H, W)
@group(0) @binding(2) var<storage, read> ba_stats: array<f32>;             // (2C,)
@group(0) @binding(3) var<storage, read> ba_gamma: array<f32>;             // (C,)
@group(0) @binding(4) var<storage, read> ba_dy: array<f32>;                // (B, C, H, W)
@group(0) @binding(5) var<storage, read> ba_dgamma: array<f32>;            // (C,)
@group(0) @binding(6) var<storage, read> ba_dbeta: array<f32>;             // (C,)
@group(0) @binding(7) var<storage, read_write> ba_dx: array<f32>;          // (B, C, H, W)
@group(0) @binding(8) var<storage, read> ba_y: array<f32>;                 // (B, C, H, W) fused output, or a dummy

@compute @workgroup_size(256)
fn backward_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.batch * p.channels * p.hw) { return; }
    let c = (i / p.hw) % p.channels;
    let n = f32(p.batch * p.hw);
    let invstd = ba_stats[p.channels + c];
    let xhat = (ba_x[i] - ba_stats[c]) * invstd;
    var g = ba_dy[i];
    if ((p.flags & 1u) != 0u && !(ba_y[i] > 0.0)) { g = 0.0; }
    var d = ba_gamma[c] * invstd / n * (n * g - ba_dbeta[c] - xhat * ba_dgamma[c]);
    if ((p.flags & 2u) != 0u) { d += ba_dx[i]; }
    ba_dx[i] = d;
}
