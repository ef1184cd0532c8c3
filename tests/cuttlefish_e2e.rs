//! Cuttlefish end to end on real data (the shipped Fashion-MNIST subset): with a short
//! schedule the switch must happen, the parameter count must drop, and test accuracy must
//! stay within 5 points of the same run trained full-rank (same seed).

use cuttle::cuttlefish::{CuttlefishConfig, FactorizeMode};
use cuttle::data::{load, DataSpec};
use cuttle::gpu::{test_gpu, Gpu};
use cuttle::session::Session;
use cuttle::train::{AugmentKind, Schedule, TrainConfig};

fn config() -> TrainConfig {
    TrainConfig {
        model: "cnn".into(),
        epochs: 4,
        batch: 50,
        lr: 0.05,
        schedule: Schedule::OneCycle,
        seed: 3,
        augment: AugmentKind::None,
        report_every: 20,
        ..Default::default()
    }
}

struct Outcome {
    test_acc: f32,
    params: usize,
    /// Epochs trained full-rank, if it switched.
    switched_after: Option<usize>,
    /// The detector's minimum epochs before a layer may be stable (Cuttlefish runs).
    p: Option<usize>,
    /// The epoch at which the last tracked layer became stable (Cuttlefish runs).
    last_stable: Option<usize>,
}

fn run(gpu: &Gpu, cuttlefish: bool) -> Outcome {
    let mut data = load(&DataSpec::Builtin).unwrap();
    data.train = data.train.subset(2000);
    data.test = data.test.subset(500);
    let cf = cuttlefish.then(|| {
        let mut c = CuttlefishConfig::for_schedule(4, Schedule::OneCycle);
        // The reference choice (conv2 for this model): `auto` may rightly keep it
        // full-rank on a CPU adapter, and this test is about the switch itself.
        c.factorize = FactorizeMode::Reference;
        c
    });
    let mut s = pollster::block_on(Session::new(gpu, &data, config(), cf)).unwrap();
    while !s.done() {
        let o = pollster::block_on(s.next_epoch(gpu, &mut |_, _, _| {}, &|| false)).unwrap().expect("never stopped");
        if let Some(sw) = &o.switch {
            eprintln!("switch after {} epochs: {:?}", sw.epoch, sw.decisions);
        }
        eprintln!("epoch {}: test acc {:.4}, stable ranks {:?}", o.report.epoch, o.report.test_acc, o.stable_ranks);
    }
    let r = s.final_report();
    let cf = s.cuttlefish.as_ref();
    Outcome {
        test_acc: r.test_acc,
        params: r.params_final,
        switched_after: r.switch_epoch.map(|e| e - 1),
        p: cf.map(|c| c.cfg.detector.p),
        last_stable: cf.and_then(|c| c.tracker.layers.iter().map(|l| l.stable_at).max().flatten()),
    }
}

#[test]
fn cuttlefish_switches_shrinks_and_keeps_accuracy() {
    let Some(gpu) = test_gpu() else { return };
    let full = run(&gpu, false);
    let cf = run(&gpu, true);
    let (acc_full, params_full, acc_cf, params_cf) = (full.test_acc, full.params, cf.test_acc, cf.params);
    eprintln!("full-rank: {acc_full:.4} with {params_full} parameters; cuttlefish: {acc_cf:.4} with {params_cf}");
    let epoch = cf.switched_after.expect("the switch must happen within a 4-epoch schedule");
    // The switch comes at the first epoch boundary after the last layer became stable...
    assert_eq!(Some(epoch), cf.last_stable, "switched after {epoch} epochs, not when the last layer became stable");
    // ...and no layer may be stable before P epochs. The 4-epoch detector has P = 3 (its
    // floor), the last boundary at which a switch can still happen: after exactly P epochs.
    let p = cf.p.expect("a Cuttlefish run");
    assert_eq!(p, 3, "the detector for 4 epochs");
    assert_eq!(epoch, p, "switched after {epoch} epochs; the detector allows a switch only after exactly {p}");
    assert!(params_cf < params_full, "parameters must drop: {params_cf} vs {params_full}");
    assert!(acc_full >= 0.7, "full-rank baseline too weak to compare: {acc_full}");
    assert!((acc_cf - acc_full).abs() <= 0.05, "accuracy {acc_cf} vs full-rank {acc_full}: more than 5 points apart");
}
