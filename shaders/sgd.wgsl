// sgd.wgsl: one SGD-with-momentum step over every parameter of a model at once.
//
// All parameters live in one flat buffer, weights that take weight decay first, then the
// exempt ones (BatchNorm scales and shifts, biases); `n_decay` is the boundary. The update
// is PyTorch's: g' = g + wd*w; v = mu*v + g'; w -= lr * (nesterov ? g' + mu*v : v).
// The learning rate comes from the per-step state, so a schedule needs no new dispatch.
//
// `update_clipped` first multiplies the gradient by the global-norm clipping factor that
// clip.wgsl computed earlier in the same step (`clip[0]`). A factor of exactly 1 (clipping
// inactive) leaves the gradient as read, so the arithmetic is then `update`'s bit for bit.

struct Params {
    len: u32, n_decay: u32,
    flags: u32,          // bit 0: Nesterov
    _pad: u32,
    momentum: f32, weight_decay: f32, _p1: f32, _p2: f32,
}

// Written once per step by the host (ops::StepState); same struct in every shader.
struct Step {
    step: u32, epoch: u32, valid: u32, lr: f32,
    seed_lo: u32, seed_hi: u32, step_size: f32, bc2_sqrt: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;    // (len,) parameters
@group(0) @binding(2) var<storage, read> g: array<f32>;          // (len,) gradients
@group(0) @binding(3) var<storage, read_write> v: array<f32>;    // (len,) momentum
@group(0) @binding(4) var<storage, read> step: Step;
@group(0) @binding(5) var<storage, read> clip: array<f32>;       // (2,): gradient scale, global norm

fn sgd_at(i: u32, gi: f32) {
    var d = gi;
    if (i < p.n_decay) { d += p.weight_decay * w[i]; }
    let m = p.momentum * v[i] + d;
    v[i] = m;
    if ((p.flags & 1u) != 0u) { d += p.momentum * m; } else { d = m; }
    w[i] -= step.lr * d;
}

@compute @workgroup_size(256)
fn update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.len) { return; }
    sgd_at(i, g[i]);
}

@compute @workgroup_size(256)
fn update_clipped(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.len) { return; }
    let s = clip[0];
    // A select, not g*s, when s == 1: no multiply for the compiler to fuse with what follows.
    sgd_at(i, select(g[i] * s, g[i], s == 1.0));
}
