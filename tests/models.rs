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
