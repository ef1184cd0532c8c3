// pool.wgsl: 2x2 max-pool with stride 2 (VGG) and global average pool (ResNet head),
// forward and backward. One invocation per output element (forward) or per input element
// (backward), so every gradient element is written by exactly one invocation: no atomics.

struct Params {
    planes: u32,     // batch * channels
    h_in: u32, w_in: u32,
    flags: u32,      // bit 1: accumulate into the gradient
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// src = x (P, H, W), dst = y (P, H/2, W/2)
@compute @workgroup_size(256)
fn max_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ho = p.h_in / 2u;
    let wo = p.w_in / 2u;
    let i = index(gid, nwg);
    if (i >= p.planes * ho * wo) { return; }
    let plane = i / (ho * wo);
    let oy = (i % (ho * wo)) / wo;
    let ox = i % wo;
    let base = (plane * p.h_in + 2u * oy) * p.w_in + 2u * ox;
    dst[i] = max(max(src[base], src[base + 1u]), max(src[base + p.w_in], src[base + p.w_in + 1u]));
}

// src = dy (P, H/2, W/2), dst = dx (P, H, W); x is the forward input. The gradient goes
// to the first maximum of each window in row-major order, as in PyTorch.
@group(0) @binding(3) var<storage, read> x: array<f32>;
@compute @workgroup_size(256)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.planes * p.h_in * p.w_in) { return; }
    let ho = p.h_in / 2u;
    let wo = p.w_in / 2u;
    let plane = i / (p.h_in * p.w_in);
    let iy = (i % (p.h_in * p.w_in)) / p.w_in;
    let ix = i % p.w_in;
    var g = 0.0;
    let oy = iy / 2u;
    let ox = ix / 2u;
    if (oy < ho && ox < wo) {
        let base = (plane * p.h_in + 2u * oy) * p.w_in + 2u * ox;
        var best = base;
        for (var k = 1u; k < 4u; k++) {
            let j = base + (k / 2u) * p.w_in + (k % 2u);
            if (x[j] > x[best]) { best = j; }
        }
        if (best == i) { g = src[(plane * ho + oy) * wo + ox]; }
    }
    if ((p.flags & 2u) != 0u) { g += dst[i]; }
    dst[i] = g;
}

// src = x (P, H*W), dst = y (P,): the mean of each plane
@compute @workgroup_size(256)
fn avg_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.planes) { return; }
    let hw = p.h_in * p.w_in;
    var s = 0.0;
    for (var j = 0u; j < hw; j++) { s += src[i * hw + j]; }
    dst[i] = s / f32(hw);
}

// src = dy (P,), dst = dx (P, H*W)
@compute @workgroup_size(256)
fn avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    let hw = p.h_in * p.w_in;
    if (i >= p.planes * hw) { return; }
    var g = src[i / hw] / f32(hw);
    if ((p.flags & 2u) != 0u) { g += dst[i]; }
    dst[i] = g;
}
