//! The model zoo, built as graphs with the PyTorch reference models' parameter names.
//!
//! - `resnet18`: the CIFAR ResNet-18 of the Cuttlefish reference (kuangliu layout: 3x3
//!   stem, no max-pool, stages 64/128/256/512 of two BasicBlocks, 1x1 projection
//!   shortcuts, `linear` head): 11,173,962 parameters for 10 classes.
//! - `vgg19`: VGG-19 with BatchNorm, CIFAR variant (convs without bias, one linear head):
//!   20,035,018 parameters for 10 classes.
//! - `resnet8`: the same design with stages 16/32/64 of one block each, for fast runs.
//! - `resnet6`: the smallest ResNet, for 28x28 images on any adapter: 3x3 stem of 16,
//!   2x2 max-pool, one BasicBlock of 16 and one of 32 (stride 2, projection), global
//!   average pool, linear: 20k parameters, 1.7M multiply-adds per 28x28 image. The main
//!   job's model.
//! - `cnn`: a small conv net for MNIST-sized images (conv 16, pool, conv 32, pool, conv 64,
//!   pool, linear over the 64x3x3 features): 29k parameters, most of them in the two 3x3
//!   convs Cuttlefish may factorize, so the main job shows the method on a CPU adapter.

use super::graph::{ActId, Graph};

/// The names `model_by_name` accepts.
pub const MODELS: &[&str] = &["resnet18", "resnet8", "resnet6", "vgg19", "cnn"];

/// Builds a model for inputs of `input` = (C, H, W) and `classes` outputs.
pub fn model_by_name(name: &str, input: [usize; 3], classes: usize) -> Result<Graph, String> {
    match name {
        "resnet18" => Ok(resnet(name, input, classes, &[64, 128, 256, 512], 2, 64)),
        "resnet8" => Ok(resnet(name, input, classes, &[16, 32, 64], 1, 16)),
        "resnet6" => Ok(resnet6(input, classes)),
        "vgg19" => Ok(vgg19(input, classes)),
        "cnn" => Ok(cnn(input, classes)),
        _ => Err(format!("unknown model {name:?}; known models: {}", MODELS.join(", "))),
    }
}

/// BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)). The shortcut is built
/// before bn2 so that parameters are declared (and initialised) in PyTorch's module
/// order; the planner fuses bn2, the add and the ReLU into one pass.
fn basic_block(g: &mut Graph, name: &str, x: ActId, planes: usize, stride: usize) -> ActId {
    let c_in = g.shape(x).0[0];
    let h = g.conv(&format!("{name}.conv1"), x, planes, 3, stride, 1);
    let h = g.batchnorm_relu(&format!("{name}.bn1"), h);
    let h = g.conv(&format!("{name}.conv2"), h, planes, 3, 1, 1);
    let shortcut = if stride != 1 || c_in != planes {
        let s = g.conv(&format!("{name}.shortcut.0"), x, planes, 1, stride, 0);
        g.batchnorm(&format!("{name}.shortcut.1"), s)
    } else {
        x
    };
    let h = g.batchnorm(&format!("{name}.bn2"), h);
    let h = g.add(&format!("{name}.add"), h, shortcut);
    g.relu(&format!("{name}.relu"), h)
}

fn resnet(name: &str, input: [usize; 3], classes: usize, stages: &[usize], blocks: usize, stem: usize) -> Graph {
    let mut g = Graph::new(name, input, classes);
    let x = g.conv("conv1", Graph::INPUT, stem, 3, 1, 1);
    let mut x = g.batchnorm_relu("bn1", x);
    for (i, &planes) in stages.iter().enumerate() {
        for j in 0..blocks {
            let stride = if i > 0 && j == 0 { 2 } else { 1 };
            x = basic_block(&mut g, &format!("layer{}.{j}", i + 1), x, planes, stride);
        }
    }
    let x = g.global_avg_pool("avgpool", x);
    g.linear("linear", x, classes);
    g
}

fn resnet6(input: [usize; 3], classes: usize) -> Graph {
    let mut g = Graph::new("resnet6", input, classes);
    let x = g.conv("conv1", Graph::INPUT, 16, 3, 1, 1);
    let x = g.batchnorm_relu("bn1", x);
    // Pooling before the blocks keeps the cost at a small CNN's on CPU adapters.
    let x = g.max_pool2("pool", x);
    let x = basic_block(&mut g, "layer1.0", x, 16, 1);
    let x = basic_block(&mut g, "layer2.0", x, 32, 2);
    let x = g.global_avg_pool("avgpool", x);
    g.linear("linear", x, classes);
    g
}

fn vgg19(input: [usize; 3], classes: usize) -> Graph {
    const CFG: &[usize] =
        &[64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0];
    let mut g = Graph::new("vgg19", input, classes);
    let mut x = Graph::INPUT;
    // PyTorch's nn.Sequential numbering: conv i, bn i+1, relu i+2, pools take one index.
    let mut idx = 0;
    for &c in CFG {
        if c == 0 {
            if g.shape(x).0[1] >= 2 {
                x = g.max_pool2(&format!("features.{idx}"), x);
            }
            idx += 1;
        } else {
            x = g.conv(&format!("features.{idx}"), x, c, 3, 1, 1);
            x = g.batchnorm_relu(&format!("features.{}", idx + 1), x);
            idx += 3;
        }
    }
    let x = g.global_avg_pool("pool", x);
    g.linear("classifier", x, classes);
    g
}

fn cnn(input: [usize; 3], classes: usize) -> Graph {
    let mut g = Graph::new("cnn", input, classes);
    let x = g.conv("conv1", Graph::INPUT, 16, 3, 1, 1);
    let x = g.batchnorm_relu("bn1", x);
    let x = g.max_pool2("pool1", x);
    let x = g.conv("conv2", x, 32, 3, 1, 1);
    let x = g.batchnorm_relu("bn2", x);
    let x = g.max_pool2("pool2", x);
    let x = g.conv("conv3", x, 64, 3, 1, 1);
    let x = g.batchnorm_relu("bn3", x);
    let x = g.max_pool2("pool3", x);
    g.linear("fc", x, classes);
    g
}

/// Whether `model` names a vision transformer (ViT, DeiT): its runs take the transformer
/// defaults (AdamW, cosine with warm-up, label smoothing; `train::ModelDefaults`).
pub fn is_transformer(model: &str) -> bool {
    model.starts_with("vit") || model.starts_with("deit")
}
