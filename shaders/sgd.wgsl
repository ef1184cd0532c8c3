// sgd.wgsl: one SGD-with-momentum step over every parameter of a model at once.
//
// All parameters live in one flat buffer, weights that take weight decay first, then the
// exempt ones (BatchNorm scales and shifts, biases); `n_decay` is the boundary. The update
// is PyTorch's: g' = g + wd*w; v = mu*v + g'; w -= lr * (nesterov ? g' + mu*v : v).
// The learning rate comes from the per-step state, so a schedule needs no new dispatch.

struct Params {
    len: u32, n_decay: u32,
    flags: u32,          // bit 0: Nesterov
    _pad: u32,
    momentum: f32, weight_decay: f32, _p1: f32, _p2: f32,
}

struct Step {
    step: u32, epoch: u32, valid: u32, lr: f32,
    seed_lo: u32, seed_hi: u32, _a: u32, _b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;    // (len,) parameters
@group(0) @binding(2) var<storage, read> g: array<f32>;          // (len,) gradients
@group(0) @binding(3) var<storage, read_write> v: array<f32>;    // (len,) momentum
@group(0) @binding(4) var<storage, read> step: Step;

@compute @workgroup_size(256)
fn update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.len) { return; }
    var d = g[i];
    if (i < p.n_decay) { d += p.weight_decay * w[i]; }
    let m = p.momentum * v[i] + d;
    v[i] = m;
    if ((p.flags & 1u) != 0u) { d += p.momentum * m; } else { d = m; }
    w[i] -= step.lr * d;
}
