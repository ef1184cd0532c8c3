//! The vision transformer end to end on real data (the shipped Fashion-MNIST subset), at
//! CI size: `vit-mini` with the transformer defaults a user gets without flags (AdamW,
//! warm-up + cosine, label smoothing; `RunConfig::settings`), four epochs of 2,000
//! images, trained full-rank and with Cuttlefish from the same seed. The full-rank run
//! must learn, the Cuttlefish run must switch (linear layers factorized, parameters
//! down) and stay near it. The full-size figure (10,000 images, the default 8 epochs) is
//! in BENCHMARKS.md.

use cuttle::cuttlefish::FactorizeMode;
use cuttle::data::{load, DataSpec};
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

fn run(gpu: &Gpu, cuttlefish: bool) -> Outcome {
    let mut data = load(&DataSpec::Builtin).unwrap();
    data.train = data.train.subset(2000);
    data.test = data.test.subset(500);
    let rc = RunConfig {
        model: "vit-mini".into(),
        epochs: Some(4),
        batch: Some(50),
        seed: 5,
        cuttlefish,
        // The reference choice (every block's qkv, fc1, fc2): `auto` may rightly keep
        // layers this small full-rank on a CPU adapter, and this test is about the switch.
        factorize: FactorizeMode::Reference,
        ..Default::default()
    };
    let (cfg, cf) = rc.settings(data.train.n).unwrap();
    assert_eq!(cfg.optimizer.kind().to_string(), "adamw", "a transformer trains with AdamW by default");
    let mut s = pollster::block_on(Session::new(gpu, &data, cfg, cf)).unwrap();
    let mut losses = vec![];
    while !s.done() {
        let o = pollster::block_on(s.next_epoch(gpu, &mut |_, _, _| {}, &|| false)).unwrap().expect("never stopped");
        if let Some(sw) = &o.switch {
            eprintln!("switch after {} epochs: {} -> {} parameters", sw.epoch, sw.params_before, sw.params_after);
        }
        eprintln!(
            "epoch {}: train loss {:.4}, test acc {:.4}, {:.0} images/s",
            o.report.epoch, o.report.train_loss, o.report.test_acc, o.report.images_per_s
        );
        losses.push(o.report.train_loss);
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

#[test]
fn vit_mini_learns_and_cuttlefish_switches_on_its_linear_layers() {
    let Some(gpu) = test_gpu() else { return };
    let full = run(&gpu, false);
    let cf = run(&gpu, true);
    eprintln!(
        "full-rank: {:.4} with {} parameters; cuttlefish: {:.4} with {}",
        full.test_acc, full.params, cf.test_acc, cf.params
    );
    assert!(full.last_loss < full.first_loss, "loss must fall: {} -> {}", full.first_loss, full.last_loss);
    assert!(full.test_acc >= 0.60, "full-rank vit-mini too weak: {}", full.test_acc);
    assert_eq!(cf.switched_after, Some(3), "the 4-epoch detector (P = 3) switches after 3 epochs");
    assert!(cf.params < full.params, "parameters must drop: {} vs {}", cf.params, full.params);
    assert!((cf.test_acc - full.test_acc).abs() <= 0.05, "{} vs full-rank {}", cf.test_acc, full.test_acc);
}
