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
    /// The detector's minimum checks before a layer may be stable, and the checks per
    /// epoch (Cuttlefish runs).
    p: Option<usize>,
    per_epoch: Option<usize>,
    /// Each tracked layer's check of becoming stable (Cuttlefish runs).
    stable_at: Vec<Option<usize>>,
}

fn run(gpu: &Gpu, cuttlefish: bool) -> Outcome {
    let mut data = load(&DataSpec::Builtin).unwrap();
    data.train = data.train.subset(2000);
    data.test = data.test.subset(500);
    let cf = cuttlefish.then(|| {
        let mut c = CuttlefishConfig::for_schedule(Schedule::OneCycle);
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
        p: cf.map(|c| c.detector.p),
        per_epoch: cf.map(|c| c.checks.per_epoch),
        stable_at: cf.map(|c| c.tracker.layers.iter().map(|l| l.stable_at).collect()).unwrap_or_default(),
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
    // 40 steps per epoch: a check after every step, 160 in the run, so the detector's
    // minimum is P = round(15·160/300) = 8 checks.
    let (p, per_epoch) = (cf.p.expect("a Cuttlefish run"), cf.per_epoch.unwrap());
    assert_eq!((p, per_epoch), (8, 40), "the detector for 4 epochs of 40 steps");
    let at: Vec<usize> = cf.stable_at.iter().map(|a| a.expect("every layer stable before the switch")).collect();
    eprintln!("stable at checks {at:?}; switched after {epoch} epochs");
    // No layer is stable before P checks, and the switch comes at the first epoch
    // boundary after the last layer became stable.
    assert!(at.iter().all(|&c| c >= p), "a layer stable before check {p}: {at:?}");
    let last = *at.iter().max().unwrap();
    assert_eq!(epoch, last.div_ceil(per_epoch), "switched after {epoch} epochs, the last layer stable at check {last}");
    assert!(params_cf < params_full, "parameters must drop: {params_cf} vs {params_full}");
    assert!(acc_full >= 0.7, "full-rank baseline too weak to compare: {acc_full}");
    assert!((acc_cf - acc_full).abs() <= 0.05, "accuracy {acc_cf} vs full-rank {acc_full}: more than 5 points apart");
}

/// The page's pause: a stop asked before an epoch begins (during the previous evaluation
/// or rank estimate) acts before its first step, trains nothing and moves nothing; a stop
/// that arrives during the switch keeps the switch (in `pending_switch`), and the run
/// goes on from there to the same end as one never paused. The `test` preset, the page's
/// own short schedule that reaches the switch.
#[test]
fn a_pause_at_the_boundary_or_in_the_switch_loses_nothing() {
    let Some(gpu) = test_gpu() else { return };
    let presets: serde_json::Value = serde_json::from_str(cuttle::train::config::PRESETS).unwrap();
    let rc = cuttle::train::RunConfig::from_json(&presets["test"].to_string()).unwrap();
    let mut data = load(&DataSpec::Builtin).unwrap();
    data.train = data.train.subset(rc.train_subset.unwrap());
    data.test = data.test.subset(rc.test_subset.unwrap());
    let (cfg, cf) = rc.settings(data.train.n).unwrap();
    let never = || false;
    let mut whole = pollster::block_on(Session::new(&gpu, &data, cfg.clone(), cf.clone())).unwrap();
    while !whole.done() {
        pollster::block_on(whole.next_epoch(&gpu, &mut |_, _, _| {}, &never)).unwrap().expect("never stopped");
    }
    let mut s = pollster::block_on(Session::new(&gpu, &data, cfg, cf)).unwrap();
    let (mut paused_in_switch, mut switches) = (false, 0);
    while !s.done() {
        // At the boundary: nothing runs.
        let (at, steps) = (s.at, s.trainer.optimizer_steps);
        assert!(pollster::block_on(s.next_epoch(&gpu, &mut |_, _, _| {}, &|| true)).unwrap().is_none());
        assert_eq!((s.at.epochs_done, s.at.step, s.trainer.optimizer_steps), (at.epochs_done, at.step, steps));
        if s.cuttlefish.as_ref().unwrap().ready() {
            // The switch comes next: the stop arrives while it runs (asked after it).
            let asked = std::cell::Cell::new(0);
            let stop = || {
                asked.set(asked.get() + 1);
                asked.get() > 1
            };
            assert!(pollster::block_on(s.next_epoch(&gpu, &mut |_, _, _| {}, &stop)).unwrap().is_none());
            assert!(s.switched() && s.pending_switch.is_some(), "the switch happened and is kept");
            // (The switch builds a new optimizer for the factorized net: its step count restarts.)
            assert_eq!((s.at.epochs_done, s.at.step), (at.epochs_done, 0), "no step after the pause");
            paused_in_switch = true;
        }
        let o = pollster::block_on(s.next_epoch(&gpu, &mut |_, _, _| {}, &never)).unwrap().expect("not stopped");
        switches += o.switch.is_some() as usize;
    }
    assert!(paused_in_switch, "the test preset reaches the switch");
    assert_eq!(switches, 1, "the switch is reported once, with its epoch");
    assert!(s.pending_switch.is_none());
    let (a, b) = (whole.final_report(), s.final_report());
    assert_eq!((a.switch_epoch, a.params_final), (b.switch_epoch, b.params_final));
    assert_eq!(whole.last_test_acc.to_bits(), s.last_test_acc.to_bits(), "the same end as a run never paused");
}
