// srank.wgsl: stable rank ||W||_F^2 / sigma_max(W)^2 of many weight matrices at once, by
// power iteration on W^T W, warm-started from the previous call's vectors.
//
// Every matrix is a row-major (rows, cols) slice of the flat parameter buffer (a conv
// weight (c_out, c_in, kh, kw) read as c_out x c_in*kh*kw, a linear weight as stored).
// One iteration is three dispatches over all layers: u = W v; v = W^T u; then per layer
// sigma^2 ~ |u|^2 (the Rayleigh quotient v^T W^T W v for the unit v of this iteration)
// and v = v / |v|. Grids are (blocks, layers); blocks past a layer's size return.

struct Params {
    layers: u32, _a: u32, _b: u32, _c: u32,
}

struct Layer {
    offset: u32,    // first element of W in the parameter buffer
    rows: u32,
    cols: u32,
    v_off: u32,     // first element of this layer's v (cols) and of its u (rows)
    u_off: u32,
    _a: u32, _b: u32, _c: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;           // flat parameters
@group(0) @binding(2) var<storage, read> layers: array<Layer>;    // (L,)
@group(0) @binding(3) var<storage, read_write> v: array<f32>;     // (sum cols,)
@group(0) @binding(4) var<storage, read_write> u: array<f32>;     // (sum rows,)
@group(0) @binding(5) var<storage, read_write> est: array<f32>;   // (2L,): sigma_max^2, ||W||_F^2

var<workgroup> red: array<f32, 64>;

fn tree(t: u32) {
    for (var s = 32u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (t < s) { red[t] += red[t + s]; }
    }
    workgroupBarrier();
}

// u[row] = sum_c W[row, c] v[c]: one workgroup per (row, layer).
@compute @workgroup_size(64)
fn mat_vec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (wg.y >= p.layers) { return; }
    let l = layers[wg.y];
    let row = wg.x;
    if (row >= l.rows) { return; }
    var s = 0.0;
    for (var c = lid.x; c < l.cols; c += 64u) { s += w[l.offset + row * l.cols + c] * v[l.v_off + c]; }
    red[lid.x] = s;
    tree(lid.x);
    if (lid.x == 0u) { u[l.u_off + row] = red[0]; }
}

// v[c] = sum_r W[r, c] u[r]: one invocation per column, 64 columns per workgroup.
@compute @workgroup_size(64)
fn mat_t_vec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (wg.y >= p.layers) { return; }
    let l = layers[wg.y];
    let c = wg.x * 64u + lid.x;
    if (c >= l.cols) { return; }
    var s = 0.0;
    for (var r = 0u; r < l.rows; r++) { s += w[l.offset + r * l.cols + c] * u[l.u_off + r]; }
    v[l.v_off + c] = s;
}

// Per layer: est[2l] = |u|^2, v /= |v|. One workgroup per layer.
@compute @workgroup_size(64)
fn normalize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (wg.x >= p.layers) { return; }
    let l = layers[wg.x];
    var s = 0.0;
    for (var r = lid.x; r < l.rows; r += 64u) { s += u[l.u_off + r] * u[l.u_off + r]; }
    red[lid.x] = s;
    tree(lid.x);
    let sigma2 = red[0];
    workgroupBarrier();
    s = 0.0;
    for (var c = lid.x; c < l.cols; c += 64u) { s += v[l.v_off + c] * v[l.v_off + c]; }
    red[lid.x] = s;
    tree(lid.x);
    let inv = inverseSqrt(max(red[0], 1e-30));
    for (var c = lid.x; c < l.cols; c += 64u) { v[l.v_off + c] *= inv; }
    if (lid.x == 0u) { est[2u * wg.x] = sigma2; }
}

// Per layer: est[2l + 1] = ||W||_F^2. One workgroup per layer.
@compute @workgroup_size(64)
fn frobenius(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (wg.x >= p.layers) { return; }
    let l = layers[wg.x];
    let n = l.rows * l.cols;
    var s = 0.0;
    for (var i = lid.x; i < n; i += 64u) { s += w[l.offset + i] * w[l.offset + i]; }
    red[lid.x] = s;
    tree(lid.x);
    if (lid.x == 0u) { est[2u * wg.x + 1u] = red[0]; }
}
