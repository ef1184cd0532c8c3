// augment.wgsl: builds one batch on the GPU from the uint8 data set uploaded once.
//
// One invocation per output element (b, c, y, x). Sample b of this step is
// perm[step*B + b]; its random crop offset and flip come from a counter-based hash of
// (seed, epoch, sample position), so a step is reproducible from the step state alone and
// a resumed run draws the same augmentations. Crop pads with zero pixels, as torchvision's
// RandomCrop(padding=4) does, and then normalises per channel.
//
// The images are split over two bindings (each at most the adapter's storage binding
// limit); each chunk holds whole images, `per_chunk` of them, packed 4 bytes per u32.

struct Params {
    batch: u32, channels: u32, height: u32, width: u32,
    n: u32,             // images in the data set
    per_chunk: u32,     // images per data chunk
    pad: u32,           // crop padding (0: no crop)
    flags: u32,         // bit 0: random horizontal flip
    mean: vec4<f32>,    // per channel, pixels scaled to [0, 1]
    inv_std: vec4<f32>,
}

struct Step {
    step: u32, epoch: u32, valid: u32, lr: f32,
    seed_lo: u32, seed_hi: u32, step_size: f32, bc2_sqrt: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> data0: array<u32>;       // images [0, per_chunk)
@group(0) @binding(2) var<storage, read> data1: array<u32>;       // images [per_chunk, n)
@group(0) @binding(3) var<storage, read> all_labels: array<u32>;  // (n,)
@group(0) @binding(4) var<storage, read> perm: array<u32>;        // (n,) this epoch's order
@group(0) @binding(5) var<storage, read> step: Step;
@group(0) @binding(6) var<storage, read_write> out_x: array<f32>;       // (B, C, H, W)
@group(0) @binding(7) var<storage, read_write> out_labels: array<u32>;  // (B,)

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

fn pixel(img: u32, off: u32) -> u32 {
    let chunk = img / p.per_chunk;
    let byte = (img % p.per_chunk) * p.channels * p.height * p.width + off;
    var word: u32;
    if (chunk == 0u) { word = data0[byte / 4u]; } else { word = data1[byte / 4u]; }
    return (word >> (8u * (byte % 4u))) & 255u;
}

@compute @workgroup_size(256)
fn batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let chw = p.channels * p.height * p.width;
    if (i >= p.batch * chw) { return; }
    let b = i / chw;
    let c = (i % chw) / (p.height * p.width);
    let y = (i % (p.height * p.width)) / p.width;
    let x = i % p.width;
    // Positions past the data set (a partial last batch) repeat the last image; the loss
    // ignores rows past step.valid.
    let pos = min(step.step * p.batch + b, p.n - 1u);
    let img = perm[pos];
    var dy = p.pad;
    var dx = p.pad;
    var flip = false;
    if (p.pad > 0u || (p.flags & 1u) != 0u) {
        let h = pcg(pcg(pcg(step.seed_lo ^ pcg(step.seed_hi)) ^ step.epoch) ^ pos);
        if (p.pad > 0u) {
            dy = h % (2u * p.pad + 1u);
            dx = (h / 256u) % (2u * p.pad + 1u);
        }
        flip = (p.flags & 1u) != 0u && ((h >> 20u) & 1u) == 1u;
    }
    var sx = x;
    if (flip) { sx = p.width - 1u - x; }
    let yy = i32(y + dy) - i32(p.pad);
    let xx = i32(sx + dx) - i32(p.pad);
    var v = 0.0;
    if (yy >= 0 && xx >= 0 && yy < i32(p.height) && xx < i32(p.width)) {
        v = f32(pixel(img, (c * p.height + u32(yy)) * p.width + u32(xx))) / 255.0;
    }
    out_x[i] = (v - p.mean[c]) * p.inv_std[c];
    if (i % chw == 0u) { out_labels[b] = all_labels[img]; }
}
