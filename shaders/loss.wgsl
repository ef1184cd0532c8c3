// loss.wgsl: softmax cross-entropy over a batch of logits, its gradient, and the running
// loss / accuracy totals, all in one workgroup so the sums have a fixed order.
//
// Label smoothing (PyTorch's `label_smoothing`): the target of row r is
// (1-eps)*onehot(label) + eps/K, so loss = logsumexp(z) - (1-eps)*z[label] - (eps/K)*sum_j z[j]
// and dlogits = (softmax - target) / valid. With eps = 0 the code takes the plain
// cross-entropy path, whose arithmetic is the same as before smoothing existed.
//
// Only the rows of the first `step.valid` samples count (the last eval batch may be partial; its padding
// rows get zero gradient). The totals stay on the GPU and are read every few steps.

struct Params {
    batch: u32, classes: u32,   // rows (samples x per_sample), classes
    flags: u32,      // bit 0: write the gradient (training)
    smoothing: f32,  // eps in [0, 1); 0 for evaluation
    per_sample: u32, // rows per sample: 1, or T positions of a language model's window
    _pad0: u32, _pad1: u32, _pad2: u32,
}

// Written once per step by the host (ops::StepState); same struct in every shader.
struct Step {
    step: u32, epoch: u32, valid: u32, lr: f32,
    seed_lo: u32, seed_hi: u32, step_size: f32, bc2_sqrt: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;       // (rows, classes)
@group(0) @binding(2) var<storage, read> labels: array<u32>;       // (rows,)
@group(0) @binding(3) var<storage, read> step: Step;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>; // (rows, classes): (softmax - target) / valid
@group(0) @binding(5) var<storage, read_write> totals: array<f32>;  // (4,): loss sum, correct, rows, batches

var<workgroup> red_loss: array<f32, 256>;
var<workgroup> red_hit: array<f32, 256>;

@compute @workgroup_size(256)
fn cross_entropy(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let valid = min(step.valid * p.per_sample, p.batch);
    let smoothed = p.smoothing > 0.0;
    // Target probabilities: `on` for the label, `off` elsewhere (exactly 1 and 0 without
    // smoothing).
    let off = select(0.0, p.smoothing / f32(p.classes), smoothed);
    let on = select(1.0, 1.0 - p.smoothing + off, smoothed);
    var loss = 0.0;
    var hits = 0.0;
    for (var r = t; r < p.batch; r += 256u) {
        let row = r * p.classes;
        var mx = logits[row];
        var arg = 0u;
        for (var j = 1u; j < p.classes; j++) {
            let v = logits[row + j];
            if (v > mx) { mx = v; arg = j; }
        }
        var z = 0.0;
        for (var j = 0u; j < p.classes; j++) { z += exp(logits[row + j] - mx); }
        let label = labels[r];
        let counted = r < valid;
        if (counted) {
            let zl = logits[row + min(label, p.classes - 1u)];
            if (smoothed) {
                var sum = 0.0;
                for (var j = 0u; j < p.classes; j++) { sum += logits[row + j]; }
                loss += log(z) + mx - (1.0 - p.smoothing) * zl - off * sum;
            } else {
                loss += log(z) + mx - zl;
            }
            hits += select(0.0, 1.0, arg == label);
        }
        if ((p.flags & 1u) != 0u) {
            let scale = select(0.0, 1.0 / f32(max(valid, 1u)), counted);
            for (var j = 0u; j < p.classes; j++) {
                let sm = exp(logits[row + j] - mx) / z;
                dlogits[row + j] = (sm - select(off, on, j == label)) * scale;
            }
        }
    }
    red_loss[t] = loss;
    red_hit[t] = hits;
    for (var s = 128u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (t < s) {
            red_loss[t] += red_loss[t + s];
            red_hit[t] += red_hit[t + s];
        }
    }
    if (t == 0u) {
        totals[0] += red_loss[0];
        totals[1] += red_hit[0];
        totals[2] += f32(valid);
        totals[3] += 1.0;
    }
}
