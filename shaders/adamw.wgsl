// adamw.wgsl: one AdamW step over every parameter of a model at once (PyTorch's AdamW,
// amsgrad off).
//
// Parameters, gradients and both moments are flat buffers of the same layout; indices
// below `n_decay` take the decoupled weight decay, the rest (norms, biases, embeddings,
// class token: exempt by the graph) none. One invocation updates one element:
//   w *= 1 - lr*wd                      (i < n_decay)
//   m  = b1*m + (1-b1)*g
//   v  = b2*v + (1-b2)*g*g
//   w -= step_size * m / (sqrt(v)/bc2_sqrt + eps)
// with step_size = lr/(1 - b1^t) and bc2_sqrt = sqrt(1 - b2^t) for the optimizer's step
// count t (1 on its first step): the host computes both in f64 and writes them with the
// learning rate into the per-step state, so the shader needs no pow and no step counter.
//
// `update_clipped` first multiplies the gradient by the global-norm clipping factor that
// clip.wgsl computed earlier in the same step (`clip[0]`); a factor of exactly 1 leaves
// the gradient as read, so the arithmetic is then `update`'s bit for bit.

struct Params {
    len: u32, n_decay: u32, _p0: u32, _p1: u32,
    beta1: f32, one_minus_beta1: f32, beta2: f32, one_minus_beta2: f32,
    eps: f32, weight_decay: f32, _p2: f32, _p3: f32,
}

// Written once per step by the host (ops::StepState); same struct in every shader.
struct Step {
    step: u32, epoch: u32, valid: u32, lr: f32,
    seed_lo: u32, seed_hi: u32, step_size: f32, bc2_sqrt: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;    // (len,) parameters
@group(0) @binding(2) var<storage, read> g: array<f32>;          // (len,) gradients
@group(0) @binding(3) var<storage, read_write> m: array<f32>;    // (len,) first moment
@group(0) @binding(4) var<storage, read_write> v: array<f32>;    // (len,) second moment
@group(0) @binding(5) var<storage, read> step: Step;
@group(0) @binding(6) var<storage, read> clip: array<f32>;       // (2,): gradient scale, global norm

fn adamw_at(i: u32, gi: f32) {
    var wi = w[i];
    if (i < p.n_decay) { wi *= 1.0 - step.lr * p.weight_decay; }
    let mi = p.beta1 * m[i] + p.one_minus_beta1 * gi;
    let vi = p.beta2 * v[i] + p.one_minus_beta2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    let denom = sqrt(vi) / step.bc2_sqrt + p.eps;
    w[i] = wi - step.step_size * (mi / denom);
}

@compute @workgroup_size(256)
fn update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.len) { return; }
    adamw_at(i, g[i]);
}

@compute @workgroup_size(256)
fn update_clipped(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.len) { return; }
    let s = clip[0];
    // A select, not g*s, when s == 1: no multiply for the compiler to fuse with what follows.
    adamw_at(i, select(g[i] * s, g[i], s == 1.0));
}
