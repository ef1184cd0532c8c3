//! Model graphs: parameter counts of the reference architectures (no GPU needed), and a
//! whole-network gradient check on the GPU against finite differences of the GPU forward.

mod common;
use cuttle::nn::models::model_by_name;

#[test]
fn reference_parameter_counts() {
    let count = |m: &str, classes| model_by_name(m, [3, 32, 32], classes).unwrap().param_count();
    // The Cuttlefish reference repository's models (shared/cuttlefish-spec.md §3).
    assert_eq!(count("resnet18", 10), 11_173_962);
    assert_eq!(count("resnet18", 100), 11_220_132);
    assert_eq!(count("vgg19", 10), 20_035_018);
    assert!(count("resnet8", 10) < 100_000);
    // resnet6 on 28x28 grayscale (the main job): stem 144 + BN 32, layer1 2x(2304 + 32),
    // layer2 4608 + 64 + 9216 + 64 + projection 512 + 64, linear 330.
    assert_eq!(model_by_name("resnet6", [1, 28, 28], 10).unwrap().param_count(), 19_706);
    assert!(model_by_name("resnet19", [3, 32, 32], 10).unwrap_err().contains("known models"));
}

#[test]
fn resnet18_names_follow_pytorch() {
    let g = model_by_name("resnet18", [3, 32, 32], 10).unwrap();
    let names: Vec<&str> = g.params.iter().map(|p| p.name.as_str()).collect();
    for n in [
        "conv1.weight",
        "bn1.weight",
        "layer1.0.conv1.weight",
        "layer2.0.shortcut.0.weight",
        "layer2.0.shortcut.1.bias",
        "layer4.1.bn2.weight",
        "linear.weight",
        "linear.bias",
    ] {
        assert!(names.contains(&n), "missing {n}");
    }
    // ResNet-18 forward: about 0.56 GMAC per 32x32 image.
    assert!((550_000_000..570_000_000).contains(&g.macs()), "{}", g.macs());
}

/// One full training step of each reference model at batch 2 on CIFAR-shaped data: the
/// big graphs plan, run and give a finite loss (their kernels are checked elsewhere).
#[test]
fn every_model_takes_a_training_step() {
    use cuttle::data::{Dataset, Splits};
    use cuttle::train::{Schedule, TrainConfig, Trainer};
    let Some(gpu) = cuttle::gpu::test_gpu() else { return };
    let make = |seed: u64| {
        let mut rng = common::Rng(seed);
        Dataset {
            name: "synthetic".into(),
            images: (0..4 * 3 * 32 * 32).map(|_| rng.below(256) as u8).collect(),
            labels: vec![0, 1, 2, 3],
            n: 4,
            channels: 3,
            height: 32,
            width: 32,
            classes: 10,
            class_names: (0..10).map(|i| i.to_string()).collect(),
        }
    };
    let data = Splits { train: make(1), test: make(2) };
    for model in ["resnet18", "vgg19", "resnet8", "resnet6", "cnn"] {
        let cfg = TrainConfig {
            model: model.into(),
            epochs: 1,
            batch: 2,
            lr: 0.01,
            schedule: Schedule::Constant,
            report_every: 1,
            ..Default::default()
        };
        let mut t = Trainer::new(&gpu, &data, cfg).unwrap();
        let totals = pollster::block_on(t.bench_steps(&gpu, 1)).unwrap();
        assert!(totals.mean_loss().is_finite() && totals.mean_loss() > 0.0, "{model}: loss {}", totals.mean_loss());
    }
}

/// Activation gradients share buffers when their backward lifetimes do not overlap: a
/// ResNet-18 plan holds a handful of gradient buffers, not one per activation (the
/// gradient checks in net_grad.rs cover the correctness of the sharing).
#[test]
fn activation_gradients_share_buffers() {
    let Some(gpu) = cuttle::gpu::test_gpu() else { return };
    let g = model_by_name("resnet18", [3, 32, 32], 10).unwrap();
    let acts = g.acts.len();
    let net = cuttle::nn::Net::new(&gpu, g, 2).unwrap();
    let mut buffers: Vec<&cuttle::gpu::Tensor> = Vec::new();
    for t in net.activation_gradients() {
        if !buffers.iter().any(|b| b.same_buffer(t)) {
            buffers.push(t);
        }
    }
    eprintln!("{acts} activations, {} gradient buffers", buffers.len());
    assert!(buffers.len() * 4 <= acts, "{} gradient buffers for {acts} activations", buffers.len());
}
