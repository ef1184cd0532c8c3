//! End-to-end training on real data: two runs of the small CNN with the same seed end
//! with bit-identical weights, and another seed gives other weights. (That the small CNN
//! learns, 75% test accuracy on Fashion-MNIST, is checked by the full-rank run of
//! tests/cuttlefish_e2e.rs, which also compares Cuttlefish against it.) The data is the
//! Fashion-MNIST subset that ships inside cuttle (taken from Debian's
//! `dataset-fashion-mnist`), so the test never lacks it.

use cuttle::data::{load, DataSpec, Splits};
use cuttle::gpu::{read_f32, test_gpu, Gpu};
use cuttle::train::trainer::{EpochEnd, Position};
use cuttle::train::{AugmentKind, Schedule, TrainConfig, Trainer};

fn fashion(train: usize, test: usize) -> Splits {
    let mut s = load(&DataSpec::Builtin).expect("the built-in Fashion-MNIST subset loads");
    s.train = s.train.subset(train);
    s.test = s.test.subset(test);
    s
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        model: "cnn".into(),
        epochs,
        batch: 50,
        lr: 0.05,
        schedule: Schedule::OneCycle,
        seed: 7,
        augment: AugmentKind::None,
        report_every: 20,
        ..Default::default()
    }
}

fn train(gpu: &Gpu, data: &Splits, cfg: TrainConfig) -> Trainer {
    let mut t = Trainer::new(gpu, data, cfg).unwrap();
    for e in 0..t.cfg.epochs {
        let at = Position { epochs_done: e, ..Default::default() };
        let EpochEnd::Done(r) = pollster::block_on(t.run_epoch(gpu, at, &mut |_, _, _| {}, &|| false)).unwrap() else {
            panic!("stopped without being asked")
        };
        eprintln!(
            "epoch {}: train loss {:.4}, test acc {:.4}, {:.0} images/s",
            r.epoch, r.train_loss, r.test_acc, r.images_per_s
        );
    }
    t
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let Some(gpu) = test_gpu() else { return };
    let data = fashion(300, 100);
    let a = train(&gpu, &data, config(1));
    let b = train(&gpu, &data, config(1));
    let wa = pollster::block_on(read_f32(&gpu, &[&a.net.params.weights])).unwrap().remove(0);
    let wb = pollster::block_on(read_f32(&gpu, &[&b.net.params.weights])).unwrap().remove(0);
    assert!(wa.iter().zip(&wb).all(|(x, y)| x.to_bits() == y.to_bits()), "weights differ between identical runs");
    let mut other = config(1);
    other.seed = 8;
    let c = train(&gpu, &data, other);
    let wc = pollster::block_on(read_f32(&gpu, &[&c.net.params.weights])).unwrap().remove(0);
    assert!(wa != wc, "a different seed must give different weights");
}

/// Counts its calls, and with `zero` overwrites the gradients with zeros after reading
/// that backward left some that are not.
struct Hook {
    calls: std::rc::Rc<std::cell::Cell<usize>>,
    zero: bool,
}

impl cuttle::train::step::GradientHook for Hook {
    fn after_backward(&mut self, gpu: &Gpu, grads: &cuttle::gpu::Tensor) -> cuttle::Result<()> {
        self.calls.set(self.calls.get() + 1);
        if self.zero {
            let g = pollster::block_on(read_f32(gpu, &[grads]))?.remove(0);
            assert!(g.iter().any(|&x| x != 0.0), "the hook runs after backward has written the gradients");
            grads.write(gpu, &vec![0.0f32; g.len()]);
        }
        Ok(())
    }
}

/// The gradient hook (where a gradient all-reduce goes) runs once per training step
/// between backward and the update: a hook that changes nothing leaves training
/// bit-identical to no hook (the step split in two submits), and one that zeroes the
/// gradients leaves SGD without momentum or decay nothing to apply.
#[test]
fn the_gradient_hook_sits_between_backward_and_the_update() {
    let Some(gpu) = test_gpu() else { return };
    let data = fashion(200, 50);
    let plain = train(&gpu, &data, config(1));
    let run_with = |cfg: TrainConfig, zero: bool| {
        let calls = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut t = Trainer::new(&gpu, &data, cfg).unwrap();
        let before = pollster::block_on(read_f32(&gpu, &[&t.net.params.weights])).unwrap().remove(0);
        t.set_gradient_hook(Some(Box::new(Hook { calls: calls.clone(), zero })));
        let at = Position::default();
        let end = pollster::block_on(t.run_epoch(&gpu, at, &mut |_, _, _| {}, &|| false)).unwrap();
        assert!(matches!(end, EpochEnd::Done(_)));
        assert_eq!(calls.get(), t.steps_per_epoch, "once per step");
        let after = pollster::block_on(read_f32(&gpu, &[&t.net.params.weights])).unwrap().remove(0);
        (before, after)
    };
    let (_, hooked) = run_with(config(1), false);
    let want = pollster::block_on(read_f32(&gpu, &[&plain.net.params.weights])).unwrap().remove(0);
    assert!(hooked.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "a no-op hook changed training");
    let sgd = cuttle::ops::sgd::SgdConfig { momentum: 0.0, weight_decay: 0.0, nesterov: false };
    let still = TrainConfig { optimizer: cuttle::train::Optimizer::Sgd(sgd), clip_grad: None, ..config(1) };
    let (before, after) = run_with(still, true);
    assert!(before == after, "zeroed gradients moved the weights");
}
