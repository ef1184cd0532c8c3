// elementwise.wgsl: one invocation per output element, for the small passes between the
// big kernels: ReLU and GELU and their gradients, addition (of two inputs, or into the
// output), the ordered sum of split-K slices, the column sums that give a bias gradient.
//
// Grids longer than 65,535 workgroups fold into y; an invocation's element is
// gid.x + gid.y * num_workgroups.x * 256.

struct Params {
    len: u32,      // elements of the output
    rows: u32,     // column_sum: rows summed per column; sum_slices: number of slices
    flags: u32,    // bit 1: accumulate into the output
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn put(i: u32, v: f32) {
    if ((p.flags & 2u) != 0u) { y[i] = y[i] + v; } else { y[i] = v; }
}

// y = max(x, 0)    x, y: (len,)
@compute @workgroup_size(256)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    y[i] = max(x[i], 0.0);
}

// y += x or y = x   x, y: (len,). Used to merge gradients of branches.
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    put(i, x[i]);
}

// y[i] (+)= sum over s in 0..rows of x[s*len + i], in order s = 0, 1, ...   x: (rows, len), y: (len,)
@compute @workgroup_size(256)
fn sum_slices(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) { s += x[r * p.len + i]; }
    put(i, s);
}

// y[j] (+)= sum over r of x[r*len + j]    x: (rows, len), y: (len,). The bias gradient.
@compute @workgroup_size(256)
fn column_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = index(gid, nwg);
    if (j >= p.len) { return; }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) { s += x[r * p.len + j]; }
    put(j, s);
}


// dx = dy * (y > 0): ReLU backward from the saved output.   all: (len,)
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@compute @workgroup_size(256)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    put(i, select(0.0, dy[i], x[i] > 0.0));
}

// y = x + x2: the forward of a standalone residual or skip connection.   all: (len,)
@group(0) @binding(3) var<storage, read> x2: array<f32>;
@compute @workgroup_size(256)
fn add_two(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    y[i] = x[i] + x2[i];
}

// ---- GELU, the exact (erf) form: y = x * Phi(x), Phi the standard normal CDF ----
//
// Phi comes from erfc by the Chebyshev fit of Numerical Recipes (2nd ed., section 6.2,
// `erfcc`): erfc(z) = t * exp(-z^2 - 1.26551223 + t * P(t)), t = 1 / (1 + z/2), z >= 0.
// Its error, measured in f64 over z >= 0: absolute <= 8.3e-8 (so |Phi error| <= 4.2e-8),
// and RELATIVE <= 1.05e-7 (1.2e-7 as published) everywhere, the far tail included. With
// Phi(x) = erfc(-x/sqrt2) / 2 taken on the side where it is the small tail, GELU keeps
// that relative accuracy for large negative x, where the common Abramowitz-Stegun 7.1.26
// fit (absolute error 1.5e-7) is off by percents in relative terms. f32 evaluation adds
// the rounding of the polynomial and of exp (Vulkan allows exp 3 + 2|x| ulp).
// The gradient uses the same Phi and the exact density phi: GELU'(x) = Phi(x) + x phi(x),
// which differs from the derivative of the fitted forward x * Phi~(x) by at most 8e-8
// (measured in f64 over [-10, 10]): forward and gradient agree to f32 precision.

// The tail probability Phi(-|x|) = erfc(|x| / sqrt2) / 2.
fn normal_tail(x: f32) -> f32 {
    let z = abs(x) * 0.70710678118654752;
    let t = 1.0 / (1.0 + 0.5 * z);
    let q = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return 0.5 * t * exp(q - z * z);
}

// Phi(x). NaN in gives NaN out (both select arms are NaN).
fn normal_cdf(x: f32) -> f32 {
    let tail = normal_tail(x);
    return select(1.0 - tail, tail, x < 0.0);
}

// y = x * Phi(x)    x, y: (len,)
@compute @workgroup_size(256)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let v = x[i];
    y[i] = v * normal_cdf(v);
}

// dx (+)= dy * (Phi(x) + x phi(x)), from the saved input x.   x = binding 1, dx = binding 2, dy = binding 3: (len,)
@compute @workgroup_size(256)
fn gelu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let v = x[i];
    let pdf = 0.39894228040143268 * exp(-0.5 * v * v);
    put(i, dy[i] * (normal_cdf(v) + v * pdf));
}
