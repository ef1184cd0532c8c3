// clip.wgsl: the global gradient norm over the flat gradient buffer and the clipping
// factor min(1, max_norm / (norm + 1e-6)) (PyTorch's clip_grad_norm_), in two fixed-order
// passes so that a seed on an adapter gives the same bits every time (no float atomics):
//
// `partials`: workgroup k sums g² over its chunk [k*CHUNK, (k+1)*CHUNK) of CHUNK = 4096
//   elements: invocation t adds elements k*CHUNK + t + 256*j for j = 0..15 in order, then
//   a fixed tree over the 256 invocations. One partial per chunk.
// `finish`: one workgroup; invocation t adds partials t, t+256, ... in order, a fixed tree,
//   then writes clip_out = [scale, norm]. The optimizer of the same step multiplies each
//   gradient by clip_out[0] (sgd.wgsl / adamw.wgsl `update_clipped`).
//
// The chunk size is a constant of the algorithm, not a tuning knob: changing it changes
// the order of the sums and so the bits.

struct Params {
    len: u32,            // elements of g (partials: the gradient length; finish: partial count)
    max_norm: f32,       // finish only
    _p0: u32, _p1: u32,
}

const CHUNK: u32 = 4096u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;              // (len,) gradients
@group(0) @binding(2) var<storage, read_write> partials: array<f32>; // (ceil(len / 4096),) Σ g² per chunk
@group(0) @binding(3) var<storage, read_write> clip_out: array<f32>; // (2,): scale, norm

var<workgroup> red: array<f32, 256>;

fn tree(t: u32) {
    for (var s = 128u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (t < s) { red[t] += red[t + s]; }
    }
}

@compute @workgroup_size(256)
fn partials_sq(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = lid.x;
    let k = wid.x + wid.y * nwg.x;
    let base = k * CHUNK;
    var acc = 0.0;
    for (var j = 0u; j < CHUNK / 256u; j++) {
        let i = base + t + 256u * j;
        if (i < p.len) {
            let x = g[i];
            acc += x * x;
        }
    }
    red[t] = acc;
    tree(t);
    if (t == 0u && base < p.len) { partials[k] = red[0]; }
}

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    var acc = 0.0;
    for (var i = t; i < p.len; i += 256u) { acc += partials[i]; }
    red[t] = acc;
    tree(t);
    if (t == 0u) {
        let norm = sqrt(red[0]);
        clip_out[0] = min(1.0, p.max_norm / (norm + 1e-6));
        clip_out[1] = norm;
    }
}
