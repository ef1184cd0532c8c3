//! GPU against the f64 references for BatchNorm, pooling, ReLU, the loss (with label
//! smoothing), SGD, AdamW, gradient clipping and the batch builder; hand-checkable cases
//! first, then seeded shapes that are not multiples of the 256-invocation workgroups.

mod common;
use common::*;
use cuttle::gpu::{read_f32, read_u32, test_gpu, Gpu, Tensor};
use cuttle::ops::{adamw, augment, batchnorm as bn, clip, elementwise, loss, pool, sgd, StepState};

fn t(gpu: &Gpu, name: &str, v: &[f64]) -> Tensor {
    Tensor::from_slice(gpu, name, &[v.len()], &f32s(v)).unwrap()
}
fn z(gpu: &Gpu, name: &str, n: usize) -> Tensor {
    Tensor::zeros(gpu, name, &[n]).unwrap()
}
fn read(gpu: &Gpu, x: &Tensor) -> Vec<f32> {
    pollster::block_on(read_f32(gpu, &[x])).unwrap().remove(0)
}
fn step_tensor(gpu: &Gpu, st: StepState) -> Tensor {
    Tensor::from_slice(gpu, "step", &[8], bytemuck::cast_slice::<_, u32>(&[st])).unwrap()
}

#[test]
fn batchnorm_forward_backward_and_running_stats() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(11);
    for s in [
        bn::BnShape { batch: 2, channels: 3, hw: 1 },
        bn::BnShape { batch: 3, channels: 5, hw: 97 },
        bn::BnShape { batch: 5, channels: 2, hw: 300 },
    ] {
        let n = s.batch * s.channels * s.hw;
        let x: Vec<f64> = rng.vec(n).iter().map(|v| v * 2.0 + 0.5).collect();
        let (gamma, beta, res, dy) = (rng.vec(s.channels), rng.vec(s.channels), rng.vec(n), rng.vec(n));
        let (y, mean, inv) = bn::cpu::forward(s, &x, &gamma, &beta);
        let (dx, dg, db) = bn::cpu::backward(s, &x, &gamma, &dy);
        let (tx, tg, tb, tres, tdy) =
            (t(&gpu, "x", &x), t(&gpu, "g", &gamma), t(&gpu, "b", &beta), t(&gpu, "res", &res), t(&gpu, "dy", &dy));
        let stats = z(&gpu, "stats", 2 * s.channels);
        let mut running0 = vec![0.0; s.channels];
        running0.extend(vec![1.0; s.channels]);
        let running = t(&gpu, "running", &running0);
        let (ty, ty2, tdx, tdg, tdb) =
            (z(&gpu, "y", n), z(&gpu, "y2", n), z(&gpu, "dx", n), z(&gpu, "dg", s.channels), z(&gpu, "db", s.channels));
        let mut ds = vec![
            bn::stats(&gpu, "stats", s, &tx, &stats, &running),
            bn::apply(&gpu, "apply", s, 0, &tx, &stats, &tg, &tb, None, &ty),
            bn::apply(&gpu, "apply-res-relu", s, bn::RELU | bn::RESIDUAL, &tx, &stats, &tg, &tb, Some(&tres), &ty2),
        ];
        ds.extend(bn::backward(&gpu, "bwd", s, &tx, &stats, &tg, &tdy, None, &tdg, &tdb, Some((&tdx, false))));
        gpu.run(&ds);
        assert_close("bn y", &read(&gpu, &ty), &y, 1e-5, 1e-4);
        let y2: Vec<f64> = y.iter().zip(&res).map(|(a, r)| (a + r).max(0.0)).collect();
        assert_close("bn y (residual, relu)", &read(&gpu, &ty2), &y2, 1e-5, 1e-4);
        let mut st = mean.clone();
        st.extend(&inv);
        assert_close("bn stats", &read(&gpu, &stats), &st, 1e-5, 1e-4);
        // Reductions over up to 1,500 elements: allow a few more ulps.
        assert_close("bn dx", &read(&gpu, &tdx), &dx, 1e-4, 1e-3);
        assert_close("bn dgamma", &read(&gpu, &tdg), &dg, 1e-4, 1e-4);
        assert_close("bn dbeta", &read(&gpu, &tdb), &db, 1e-4, 1e-4);
        let cnt = (s.batch * s.hw) as f64;
        let mut want_running: Vec<f64> = mean.iter().map(|m| 0.1 * m).collect();
        want_running.extend(inv.iter().map(|i| {
            let var = 1.0 / (i * i) - bn::EPS as f64;
            0.9 + 0.1 * var * cnt / (cnt - 1.0).max(1.0)
        }));
        assert_close("bn running", &read(&gpu, &running), &want_running, 1e-5, 1e-4);
        // The fused ReLU's backward: dy masked by the saved output y2 > 0, folded into both
        // passes; dx accumulated into a prefilled buffer; and without dx only dγ, dβ.
        // (The mask from the GPU's own y2, so a value within rounding of 0 cannot disagree.)
        let y2_gpu = read(&gpu, &ty2);
        let masked: Vec<f64> = dy.iter().zip(&y2_gpu).map(|(&g, &y)| if y > 0.0 { g } else { 0.0 }).collect();
        let (dx_m, dg_m, db_m) = bn::cpu::backward(s, &x, &gamma, &masked);
        let prior = rng.vec(n);
        let (tdx2, tdg2, tdb2) = (t(&gpu, "dx2", &prior), z(&gpu, "dg2", s.channels), z(&gpu, "db2", s.channels));
        let (tdg3, tdb3) = (z(&gpu, "dg3", s.channels), z(&gpu, "db3", s.channels));
        let mut ds =
            bn::backward(&gpu, "bwd-relu", s, &tx, &stats, &tg, &tdy, Some(&ty2), &tdg2, &tdb2, Some((&tdx2, true)));
        ds.extend(bn::backward(&gpu, "bwd-no-dx", s, &tx, &stats, &tg, &tdy, Some(&ty2), &tdg3, &tdb3, None));
        assert_eq!(ds.len(), 3, "without dx only the reduction runs");
        gpu.run(&ds);
        let want: Vec<f64> = dx_m.iter().zip(&prior).map(|(a, b)| a + b).collect();
        assert_close("bn dx (relu mask, accumulated)", &read(&gpu, &tdx2), &want, 1e-4, 1e-3);
        assert_close("bn dgamma (relu mask)", &read(&gpu, &tdg2), &dg_m, 1e-4, 1e-4);
        assert_close("bn dbeta (relu mask)", &read(&gpu, &tdb2), &db_m, 1e-4, 1e-4);
        assert_close("bn dgamma (no dx)", &read(&gpu, &tdg3), &dg_m, 1e-4, 1e-4);
        assert_close("bn dbeta (no dx)", &read(&gpu, &tdb3), &db_m, 1e-4, 1e-4);
        // Eval: stats from the running estimates.
        let ev = z(&gpu, "eval-stats", 2 * s.channels);
        gpu.run(&[bn::eval_stats(&gpu, "eval", s, &running, &ev)]);
        let r = read(&gpu, &running);
        let mut want_ev: Vec<f64> = r[..s.channels].iter().map(|&m| m as f64).collect();
        want_ev.extend(r[s.channels..].iter().map(|&v| 1.0 / (v as f64 + bn::EPS as f64).sqrt()));
        assert_close("bn eval stats", &read(&gpu, &ev), &want_ev, 1e-5, 1e-4);
    }
}

#[test]
fn add_two_inputs() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(13);
    for n in [1, 255, 257, 1000] {
        let (a, b) = (rng.vec(n), rng.vec(n));
        let (ta, tb, ty) = (t(&gpu, "a", &a), t(&gpu, "b", &b), z(&gpu, "y", n));
        gpu.run(&[elementwise::add_two(&gpu, "add", &ta, &tb, &ty)]);
        let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_close("a + b", &read(&gpu, &ty), &want, 1e-6, 1e-6);
    }
}

#[test]
fn pools_and_relu() {
    let Some(gpu) = test_gpu() else { return };
    // Hand-checked: one 2x2 window [1 3; 2 0] -> max 3 at index 1, mean 1.5.
    let x = t(&gpu, "x", &[1., 3., 2., 0.]);
    let (y, a) = (z(&gpu, "y", 1), z(&gpu, "a", 1));
    gpu.run(&[pool::max_forward(&gpu, "max", (1, 2, 2), &x, &y), pool::avg_forward(&gpu, "avg", (1, 2, 2), &x, &a)]);
    assert_eq!((read(&gpu, &y), read(&gpu, &a)), (vec![3.0], vec![1.5]));

    let mut rng = Rng(12);
    for shape in [(3, 6, 8), (7, 5, 9), (300, 4, 4)] {
        let (pl, h, w) = shape;
        let xs = rng.vec(pl * h * w);
        let dy = rng.vec(pl * (h / 2) * (w / 2));
        let dya = rng.vec(pl);
        let (tx, tdy, tdya) = (t(&gpu, "x", &xs), t(&gpu, "dy", &dy), t(&gpu, "dya", &dya));
        let (ty, tdx, ta, tdxa) =
            (z(&gpu, "y", dy.len()), z(&gpu, "dx", xs.len()), z(&gpu, "a", pl), z(&gpu, "dxa", xs.len()));
        let (tr, tdr) = (z(&gpu, "relu", xs.len()), z(&gpu, "drelu", xs.len()));
        gpu.run(&[
            pool::max_forward(&gpu, "max", shape, &tx, &ty),
            pool::max_backward(&gpu, "max-b", shape, &tx, &tdy, &tdx, false),
            pool::avg_forward(&gpu, "avg", shape, &tx, &ta),
            pool::avg_backward(&gpu, "avg-b", shape, &tdya, &tdxa, false),
            elementwise::relu(&gpu, "relu", &tx, &tr),
            // d relu with dy = x itself, read through the saved output.
            elementwise::relu_backward(&gpu, "relu-b", &tr, &tx, &tdr, false),
        ]);
        assert_close("maxpool", &read(&gpu, &ty), &pool::cpu::max_forward(shape, &xs), 0.0, 1e-6); // exact up to f32 rounding of the inputs
        assert_close("maxpool dx", &read(&gpu, &tdx), &pool::cpu::max_backward(shape, &xs, &dy), 0.0, 1e-6); // exact up to f32 rounding of the inputs
        assert_close("avgpool", &read(&gpu, &ta), &pool::cpu::avg_forward(shape, &xs), 1e-6, 1e-5);
        assert_close("avgpool dx", &read(&gpu, &tdxa), &pool::cpu::avg_backward(shape, &dya), 1e-6, 1e-5);
        let relu: Vec<f64> = xs.iter().map(|v| v.max(0.0)).collect();
        assert_close("relu", &read(&gpu, &tr), &relu, 0.0, 1e-6); // exact up to f32 rounding of the inputs
        assert_close("relu dx", &read(&gpu, &tdr), &relu, 0.0, 1e-6); // exact up to f32 rounding of the inputs
    }
}

#[test]
fn cross_entropy_loss_grad_and_totals() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(13);
    // Hand-checked smoothing: logits [0, 0], label 0, ε = 0.2: target [0.9, 0.1], softmax
    // [0.5, 0.5], loss ln 2 whatever the target, gradient [-0.4, 0.4].
    let (l, _, d) = loss::cpu::cross_entropy(2, 1, 0.2, &[0.0, 0.0], &[0]);
    assert!((l - 2f64.ln()).abs() < 1e-12 && (d[0] + 0.4).abs() < 1e-12 && (d[1] - 0.4).abs() < 1e-12);
    for (b, k, valid, eps) in [(1, 2, 1, 0.0), (300, 10, 300, 0.0), (37, 7, 20, 0.0), (1, 2, 1, 0.2), (37, 7, 20, 0.1)]
    {
        let logits: Vec<f64> = rng.vec(b * k).iter().map(|v| v * 4.0).collect();
        let labels: Vec<u32> = (0..b).map(|_| rng.below(k) as u32).collect();
        let (l, correct, d) = loss::cpu::cross_entropy(k, valid, eps, &logits, &labels);
        let (tl, tlab) = (t(&gpu, "logits", &logits), Tensor::from_slice(&gpu, "labels", &[b], &labels).unwrap());
        let step = step_tensor(&gpu, StepState { valid: valid as u32, ..Default::default() });
        let (td, tot) = (z(&gpu, "d", b * k), z(&gpu, "totals", 4));
        let ce = loss::cross_entropy(&gpu, "ce", (b, 1, k), true, eps as f32, &tl, &tlab, &step, &td, &tot);
        gpu.run(&[ce]);
        assert_close("ce grad", &read(&gpu, &td), &d, 1e-6, 1e-4);
        let totals = read(&gpu, &tot);
        assert_close("ce totals", &totals, &[l * valid as f64, correct as f64, valid as f64, 1.0], 1e-4, 1e-5);
    }
}

#[test]
fn sgd_matches_reference() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(14);
    for cfg in [sgd::SgdConfig::default(), sgd::SgdConfig { momentum: 0.8, weight_decay: 1e-2, nesterov: true }] {
        let n = 1000;
        let (mut w, g, mut v) = (rng.vec(n), rng.vec(n), rng.vec(n));
        let (tw, tg, tv) = (t(&gpu, "w", &w), t(&gpu, "g", &g), t(&gpu, "v", &v));
        let step = step_tensor(&gpu, StepState { lr: 0.05, ..Default::default() });
        gpu.run(&[sgd::update(&gpu, cfg, 613, &tw, &tg, &tv, &step, None)]);
        sgd::cpu::update(cfg, 0.05, 1.0, 613, &mut w, &g, &mut v);
        assert_close("sgd w", &read(&gpu, &tw), &w, 1e-6, 1e-5);
        assert_close("sgd v", &read(&gpu, &tv), &v, 1e-6, 1e-5);
    }
}

/// The per-step state of AdamW's step `t` at rate `lr`, as the trainer writes it.
fn adamw_state(cfg: adamw::AdamWConfig, lr: f32, t: u64) -> StepState {
    let (step_size, bc2_sqrt) = adamw::bias_correction(cfg, lr, t);
    StepState { lr, step_size, bc2_sqrt, ..Default::default() }
}

#[test]
fn adamw_matches_reference_over_several_steps() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(15);
    // Odd length, decayed [0, 613), exempt after; PyTorch's defaults and a harsher set.
    let (n, n_decay) = (1001, 613);
    let configs = [
        adamw::AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05 },
        adamw::AdamWConfig { beta1: 0.8, beta2: 0.95, eps: 1e-6, weight_decay: 0.3 },
    ];
    for cfg in configs {
        let w0 = rng.vec(n);
        let (mut w, mut m, mut v) = (w0.clone(), vec![0.0; n], vec![0.0; n]);
        let (tw, tg, tm, tv) = (t(&gpu, "w", &w), z(&gpu, "g", n), z(&gpu, "m", n), z(&gpu, "v", n));
        let step = z(&gpu, "step", 8);
        let update = adamw::update(&gpu, cfg, n_decay, &tw, &tg, &tm, &tv, &step, None);
        for t in 1..=6u64 {
            let g: Vec<f64> = rng.vec(n).iter().map(|x| x * 2.0).collect();
            let lr = 0.01 / t as f32; // a different rate every step
            tg.write(&gpu, &f32s(&g));
            step.write_struct(&gpu, &adamw_state(cfg, lr, t));
            gpu.run([&update]);
            adamw::cpu::update(cfg, lr as f64, t, 1.0, n_decay, &mut w, &g, &mut m, &mut v);
            let what = |x: &str| format!("adamw {x} (β2 {}, step {t})", cfg.beta2);
            assert_close(&what("m"), &read(&gpu, &tm), &m, 1e-6, 1e-5);
            assert_close(&what("v"), &read(&gpu, &tv), &v, 1e-6, 1e-5);
            assert_close(&what("w"), &read(&gpu, &tw), &w, 1e-6, 1e-5);
            if t == 1 {
                // Hand-checked: from zero moments the first step is w(1 - lr·wd) - lr·g/(|g| + eps'),
                // eps' = eps/sqrt(1-β2): about lr·sign(g); the exempt part has no decay.
                let got = read(&gpu, &tw);
                for i in [0, n_decay - 1, n_decay, n - 1] {
                    let decay = if i < n_decay { 1.0 - lr as f64 * cfg.weight_decay as f64 } else { 1.0 };
                    let want = w0[i] * decay - lr as f64 * g[i].signum();
                    assert!((got[i] as f64 - want).abs() < 1e-5, "first step at {i}: {} vs {want}", got[i]);
                }
            }
        }
    }
}

#[test]
fn gradient_norm_and_clip_scale_match_reference() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(16);
    // One element, a chunk less one, a chunk and a bit, several chunks and an odd tail.
    for n in [1, clip::CHUNK - 1, clip::CHUNK + 1, 3 * clip::CHUNK + 517, 70_001] {
        let g = rng.vec(n);
        let tg = t(&gpu, "g", &g);
        let c = clip::GradClip::new(&gpu, n).unwrap();
        let (norm, _) = clip::cpu::scale(1.0, &g);
        for max in [0.5 * norm, 1e6] {
            let (_, scale) = clip::cpu::scale(max, &g);
            gpu.run(&c.dispatches(&gpu, max as f32, &tg));
            let out = read(&gpu, &c.out);
            // A sum of up to 70k squares in f32: a few more ulps than elementwise.
            assert_close(&format!("clip [scale, norm] (n {n}, max {max})"), &out, &[scale, norm], 1e-6, 1e-5);
            if max > norm {
                assert_eq!(out[0], 1.0, "inactive clipping is a factor of exactly 1");
            }
            // Fixed order: the same bits every time.
            gpu.run(&c.dispatches(&gpu, max as f32, &tg));
            assert_eq!(read(&gpu, &c.out), out, "n {n}: the reduction must be deterministic");
        }
    }
}

/// Clipping inside the optimizer: active, it matches the references with the scaled
/// gradient; inactive (norm below the maximum), the update is bit-identical to the one
/// without clipping, for SGD and AdamW.
#[test]
fn clipped_optimizer_steps_match_reference_and_inactive_clipping_changes_no_bit() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(17);
    let (n, n_decay) = (5003, 2999);
    let (w, g, mom) = (rng.vec(n), rng.vec(n), rng.vec(n));
    let (norm, _) = clip::cpu::scale(1.0, &g);
    let tg = t(&gpu, "g", &g);
    let c = clip::GradClip::new(&gpu, n).unwrap();
    let sgd_cfg = sgd::SgdConfig { momentum: 0.9, weight_decay: 5e-4, nesterov: false };
    let adam_cfg = adamw::AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05 };
    let sgd_step = step_tensor(&gpu, StepState { lr: 0.05, ..Default::default() });
    let adam_step = step_tensor(&gpu, adamw_state(adam_cfg, 1e-3, 3));
    let bits = |x: &Tensor| read(&gpu, x).iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    // Runs one step of each optimizer from the same state, clipped at `max` or not:
    // (sgd w, sgd momentum, adamw w, adamw m, adamw v).
    let run = |max: Option<f64>| {
        let (sw, sv) = (t(&gpu, "sw", &w), t(&gpu, "sv", &mom));
        let (aw, am, av) =
            (t(&gpu, "aw", &w), t(&gpu, "am", &mom), t(&gpu, "av", &g.iter().map(|x| x * x).collect::<Vec<_>>()));
        let mut ds = match max {
            Some(m) => c.dispatches(&gpu, m as f32, &tg),
            None => vec![],
        };
        let scale = max.map(|_| &c.out);
        ds.push(sgd::update(&gpu, sgd_cfg, n_decay, &sw, &tg, &sv, &sgd_step, scale));
        ds.push(adamw::update(&gpu, adam_cfg, n_decay, &aw, &tg, &am, &av, &adam_step, scale));
        gpu.run(&ds);
        [sw, sv, aw, am, av]
    };
    let plain = run(None).map(|x| bits(&x));
    let inactive = run(Some(norm * 1.5)).map(|x| bits(&x));
    for (i, name) in ["sgd w", "sgd momentum", "adamw w", "adamw m", "adamw v"].iter().enumerate() {
        assert!(plain[i] == inactive[i], "{name}: inactive clipping changed bits");
    }
    // Active: a quarter of the norm.
    let active = run(Some(norm * 0.25));
    let scale = clip::cpu::scale(norm * 0.25, &g).1;
    let (mut sw, mut sv) = (w.clone(), mom.clone());
    sgd::cpu::update(sgd_cfg, 0.05, scale, n_decay, &mut sw, &g, &mut sv);
    let (mut aw, mut am, mut av) = (w.clone(), mom.clone(), g.iter().map(|x| x * x).collect::<Vec<_>>());
    adamw::cpu::update(adam_cfg, 1e-3, 3, scale, n_decay, &mut aw, &g, &mut am, &mut av);
    // The scale comes from a reduction: its relative error carries into every element.
    for (name, got, want) in [
        ("sgd w", &active[0], &sw),
        ("sgd momentum", &active[1], &sv),
        ("adamw w", &active[2], &aw),
        ("adamw m", &active[3], &am),
        ("adamw v", &active[4], &av),
    ] {
        assert_close(&format!("clipped {name}"), &read(&gpu, got), want, 1e-6, 2e-5);
    }
}

#[test]
fn augment_batch_matches_reference() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(15);
    let (n, c, h, w) = (23, 3, 7, 5);
    let d = cuttle::data::Dataset {
        name: "synthetic".into(),
        images: (0..n * c * h * w).map(|_| rng.below(256) as u8).collect(),
        labels: (0..n).map(|i| (i % 4) as u32).collect(),
        n,
        channels: c,
        height: h,
        width: w,
        classes: 4,
        class_names: (0..4).map(|i| i.to_string()).collect(),
    };
    let dev = augment::DeviceData::upload(&gpu, "syn", &d).unwrap();
    let perm = cuttle::data::epoch_permutation(n, 9, 1);
    let tperm = Tensor::from_slice(&gpu, "perm", &[n], &perm).unwrap();
    for aug in [
        augment::Augment { pad: 0, flip: false, mean_std: vec![(0.5, 0.25), (0.4, 0.2), (0.3, 0.1)] },
        augment::Augment { pad: 2, flip: true, mean_std: vec![(0.5, 0.25), (0.4, 0.2), (0.3, 0.1)] },
    ] {
        for st in [
            StepState { step: 0, epoch: 1, seed_lo: 7, ..Default::default() },
            StepState { step: 2, epoch: 3, seed_lo: 7, seed_hi: 1, ..Default::default() },
        ] {
            let b = 10;
            let (tx, tl) = (z(&gpu, "x", b * c * h * w), Tensor::zeros(&gpu, "labels", &[b]).unwrap());
            let step = step_tensor(&gpu, st);
            gpu.run(&[augment::batch(&gpu, "aug", &dev, &aug, b, &tperm, &step, &tx, &tl)]);
            let (x, labels) = augment::cpu::batch(&d, &aug, b, &perm, &st);
            assert_close("augment x", &read(&gpu, &tx), &x, 1e-6, 1e-6);
            assert_eq!(pollster::block_on(read_u32(&gpu, &[&tl])).unwrap()[0], labels);
        }
    }
}
