//! The transformers end to end on real data. The character GPT: `gpt-mini` on the
//! built-in Tiny Shakespeare at CI size (a 32-character window, batch 16, 60 steps),
//! full-rank and with Cuttlefish, and a stopped-and-resumed text run against an
//! uninterrupted one. The vision transformer (the shipped Fashion-MNIST subset), at
//! CI size: `vit-mini` with the transformer defaults a user gets without flags (AdamW,
//! warm-up + cosine, label smoothing; `RunConfig::settings`) but a two-epoch warm-up, four epochs of 2,000
//! images, trained full-rank and with Cuttlefish from the same seed (the two share the
//! epochs before the switch). The full-rank run must learn, the Cuttlefish run must
//! switch (linear layers factorized, parameters down) and stay near it. The full-size figure (10,000 images, the default 8 epochs) is
//! in BENCHMARKS.md.

use cuttle::cuttlefish::FactorizeMode;
use cuttle::data::{load, load_text, DataSpec, TextData};
use cuttle::gpu::{test_gpu, Gpu};
use cuttle::session::Session;
use cuttle::train::RunConfig;

struct Outcome {
    test_acc: f32,
    params: usize,
    switched_after: Option<usize>,
    first_loss: f32,
    last_loss: f32,
}

/// Trains `s` to its end, after the epochs whose training losses are in `losses`.
fn finish(gpu: &Gpu, mut s: Session, mut losses: Vec<f32>) -> Outcome {
    while !s.done() {
        losses.push(epoch(gpu, &mut s));
    }
    let r = s.final_report();
    Outcome {
        test_acc: r.test_acc,
        params: r.params_final,
        switched_after: r.switch_epoch.map(|e| e - 1),
        first_loss: losses[0],
        last_loss: *losses.last().unwrap(),
    }
}

/// One epoch (the switch first, when due); its training loss.
fn epoch(gpu: &Gpu, s: &mut Session) -> f32 {
    let o = pollster::block_on(s.next_epoch(gpu, &mut |_, _, _| {}, &|| false)).unwrap().expect("never stopped");
    if let Some(sw) = &o.switch {
        eprintln!("switch after {} epochs: {} -> {} parameters", sw.epoch, sw.params_before, sw.params_after);
    }
    eprintln!(
        "epoch {}: train loss {:.4}, test acc {:.4}, {:.0} images/s",
        o.report.epoch, o.report.train_loss, o.report.test_acc, o.report.images_per_s
    );
    o.report.train_loss
}

/// The full-rank and the Cuttlefish run of vit-mini from one seed. Until the switch the
/// two are the same run (rank estimation only reads the weights; README: "its full-rank
/// epochs give the full-rank run's losses to the last digit"), so they share those
/// epochs: the Cuttlefish run trains up to its switch, and the full-rank run goes on
/// from its checkpoint there (resume is bit-exact: tests/resume.rs) without Cuttlefish.
fn vit_runs(gpu: &Gpu) -> (Outcome, Outcome) {
    let mut data = load(&DataSpec::Builtin).unwrap();
    data.train = data.train.subset(2000);
    data.test = data.test.subset(500);
    let rc = |cuttlefish| RunConfig {
        model: "vit-mini".into(),
        epochs: Some(4),
        batch: Some(50),
        // Half the run warming up (the default is one epoch of eight): no layer counts as
        // settled before the warm-up ends, and after one epoch of 40 steps the ranks have
        // barely left their initial values (the switch then came after one epoch, 55.8%
        // against 61.4% full-rank).
        warmup_epochs: Some(2.0),
        seed: 5,
        cuttlefish,
        // The reference choice (every block's qkv, fc1, fc2): `auto` may rightly keep
        // layers this small full-rank on a CPU adapter, and this test is about the switch.
        factorize: FactorizeMode::Reference,
        ..Default::default()
    };
    let (cfg, cf) = rc(true).settings(data.train.n).unwrap();
    let (full_cfg, none) = rc(false).settings(data.train.n).unwrap();
    assert!(cfg == full_cfg && none.is_none(), "Cuttlefish changes nothing but Cuttlefish");
    assert_eq!(cfg.optimizer.kind().to_string(), "adamw", "a transformer trains with AdamW by default");
    let mut s = pollster::block_on(Session::new(gpu, &data, cfg, cf)).unwrap();
    let mut losses = vec![];
    while !s.done() && !s.switch_due() {
        losses.push(epoch(gpu, &mut s));
    }
    let ck = pollster::block_on(s.checkpoint(gpu)).unwrap();
    let full =
        pollster::block_on(Session::resume(gpu, &data, full_cfg, None, &ck, std::path::Path::new("mem"))).unwrap();
    eprintln!("full-rank from epoch {}:", full.at.epochs_done + 1);
    let full = finish(gpu, full, losses.clone());
    eprintln!("Cuttlefish from epoch {}:", s.at.epochs_done + 1);
    (full, finish(gpu, s, losses))
}

#[test]
fn vit_mini_learns_and_cuttlefish_switches_on_its_linear_layers() {
    let Some(gpu) = test_gpu() else { return };
    let (full, cf) = vit_runs(&gpu);
    eprintln!(
        "full-rank: {:.4} with {} parameters; cuttlefish: {:.4} with {}",
        full.test_acc, full.params, cf.test_acc, cf.params
    );
    assert!(full.last_loss < full.first_loss, "loss must fall: {} -> {}", full.first_loss, full.last_loss);
    // 57.4% measured (chance is 10%).
    assert!(full.test_acc >= 0.55, "full-rank vit-mini too weak: {}", full.test_acc);
    // 40 steps per epoch, a check after each: the earliest stable check is 80, the end
    // of the warm-up, so the switch comes after two epochs at the earliest.
    let after = cf.switched_after.expect("the 4-epoch run switches");
    assert!((2..4).contains(&after), "switched after {after} epochs");
    assert!(cf.params < full.params, "parameters must drop: {} vs {}", cf.params, full.params);
    assert!((cf.test_acc - full.test_acc).abs() <= 0.05, "{} vs full-rank {}", cf.test_acc, full.test_acc);
}

// ---- The character GPT on the built-in Tiny Shakespeare, at CI size ----

/// gpt-mini's own defaults (AdamW, warm-up + cosine, clipping) at a CI-sized window and
/// batch: 60 steps of 16 windows of 32 characters, evaluated every 10 steps.
fn gpt_config(cuttlefish: bool, steps: usize) -> RunConfig {
    RunConfig {
        model: "gpt-mini".into(),
        context: Some(32),
        batch: Some(16),
        steps: Some(steps),
        eval_every: Some(10),
        eval_batches: Some(4),
        seed: 3,
        cuttlefish,
        factorize: FactorizeMode::Reference,
        ..Default::default()
    }
}

/// (validation loss per evaluation, final parameters, switch epoch).
fn gpt_run(gpu: &Gpu, text: &TextData, rc: RunConfig) -> (Vec<f32>, usize, Option<usize>) {
    let (cfg, cf) = rc.settings(text.train.len()).unwrap();
    assert!(cfg.clip_grad.is_some() && cfg.text.is_some(), "a GPT clips its gradient and trains on text");
    let mut s = pollster::block_on(Session::new(gpu, text, cfg, cf)).unwrap();
    let mut val = vec![];
    while !s.done() {
        let o = pollster::block_on(s.next_epoch(gpu, &mut |_, _, _| {}, &|| false)).unwrap().expect("never stopped");
        eprintln!(
            "step {}: train {:.4} val {:.4} nats/char, {:.0} tokens/s{}",
            o.report.epoch * 10,
            o.report.train_loss,
            o.report.test_loss,
            o.report.tokens_per_s.unwrap(),
            o.switch
                .as_ref()
                .map(|sw| format!(", switched: {} -> {} parameters", sw.params_before, sw.params_after))
                .unwrap_or_default()
        );
        val.push(o.report.test_loss);
    }
    let r = s.final_report();
    assert_eq!(r.val_loss, val.last().copied());
    (val, r.params_final, r.switch_epoch)
}

#[test]
fn gpt_mini_learns_shakespeare_and_cuttlefish_switches() {
    let Some(gpu) = test_gpu() else { return };
    let text = load_text(&DataSpec::BuiltinText).unwrap();
    let (full, full_params, _) = gpt_run(&gpu, &text, gpt_config(false, 60));
    let (cf, cf_params, switched) = gpt_run(&gpu, &text, gpt_config(true, 60));
    // ln 65 = 4.17 at the start; unigram statistics alone give about 3.3.
    assert!(full[0] < 3.8 && *full.last().unwrap() < 2.9, "full-rank gpt-mini did not learn: {full:?}");
    assert!(switched.is_some(), "the 6-evaluation detector switches");
    assert!(cf_params < full_params, "parameters must drop: {cf_params} vs {full_params}");
    let (a, b) = (full.last().unwrap(), cf.last().unwrap());
    assert!((a - b).abs() <= 0.15, "cuttlefish {b} vs full-rank {a} at the same steps");
}

/// A text run stopped after one evaluation and resumed from its checkpoint ends
/// bit-identical to an uninterrupted one: the windows come from (seed, epoch, step).
#[test]
fn gpt_resume_is_bit_identical() {
    let Some(gpu) = test_gpu() else { return };
    let text = load_text(&DataSpec::BuiltinText).unwrap();
    let rc = gpt_config(false, 20);
    let weights = |s: &Session| pollster::block_on(s.trainer.net.params.read(&gpu)).unwrap();
    let (cfg, cf) = rc.settings(text.train.len()).unwrap();
    let mut whole = pollster::block_on(Session::new(&gpu, &text, cfg.clone(), cf.clone())).unwrap();
    while !whole.done() {
        pollster::block_on(whole.next_epoch(&gpu, &mut |_, _, _| {}, &|| false)).unwrap();
    }
    let mut first = pollster::block_on(Session::new(&gpu, &text, cfg.clone(), cf.clone())).unwrap();
    // Stop mid-interval (before step 8 of the second), as Ctrl-C would: `stop()` is asked
    // once before the call does anything, then before each step from the second.
    pollster::block_on(first.next_epoch(&gpu, &mut |_, _, _| {}, &|| false)).unwrap();
    let steps = std::cell::Cell::new(0);
    let stop = || {
        steps.set(steps.get() + 1);
        steps.get() > 8
    };
    assert!(pollster::block_on(first.next_epoch(&gpu, &mut |_, _, _| {}, &stop)).unwrap().is_none());
    let ck = pollster::block_on(first.checkpoint(&gpu)).unwrap();
    let mut resumed =
        pollster::block_on(Session::resume(&gpu, &text, cfg, cf, &ck, std::path::Path::new("mem"))).unwrap();
    assert_eq!((resumed.at.epochs_done, resumed.at.step), (1, 8));
    while !resumed.done() {
        pollster::block_on(resumed.next_epoch(&gpu, &mut |_, _, _| {}, &|| false)).unwrap();
    }
    assert!(weights(&whole) == weights(&resumed), "resumed weights differ from the uninterrupted run's");
    assert_eq!(whole.last_test_loss.to_bits(), resumed.last_test_loss.to_bits());
}
