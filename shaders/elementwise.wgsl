// elementwise.wgsl: one invocation per output element, for the small passes between the
// big kernels: ReLU and its gradient, addition (of two inputs, or into the output), the
// ordered sum of split-K slices, the column sums that give a bias gradient.
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
