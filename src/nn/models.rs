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
//! - `deit-tiny`: DeiT-Tiny (timm's `VisionTransformer`: embed 192, depth 12, 3 heads, MLP
//!   768, pre-norm, class token, LayerNorm ε 1e-6) on 32x32 images in 4x4 patches (65
//!   tokens): 5,362,762 parameters for 10 classes, under timm's names.
//! - `vit-mini`: the same design for 28x28 images in 7x7 patches (17 tokens), embed 64,
//!   depth 4, 4 heads, MLP 128: 139,018 parameters; trains on any adapter (CI, browser).

//! - `gpt-char`: nanoGPT's Shakespeare character model (6 layers, 6 heads, 384 wide,
//!   context 256, biases, no dropout, head tied to the token embedding) under nanoGPT's
//!   names: 10,745,088 parameters for 65 characters (nanoGPT prints 10.65M: it leaves out
//!   the position table).
//! - `gpt-mini`: the same design at 2 layers, 4 heads, 64 wide, context 64: 108,352
//!   parameters for 65 characters; trains on any adapter.

use super::graph::{ActId, Graph, Init, LinearInit, Shape};

/// The names `model_by_name` accepts.
pub const MODELS: &[&str] = &["resnet18", "resnet8", "resnet6", "vgg19", "cnn", "deit-tiny", "vit-mini"];

/// The names `language_model` accepts.
pub const LANGUAGE_MODELS: &[&str] = &["gpt-mini", "gpt-char"];

/// Builds a model for inputs of `input` = (C, H, W) and `classes` outputs.
pub fn model_by_name(name: &str, input: [usize; 3], classes: usize) -> Result<Graph, String> {
    let g = image_model(name, input, classes)?;
    let [c, h, w] = input;
    g.check_geometry().map_err(|e| format!("model {name} cannot read {c}x{h}x{w} images: {e}"))?;
    Ok(g)
}

fn image_model(name: &str, input: [usize; 3], classes: usize) -> Result<Graph, String> {
    match name {
        "resnet18" => Ok(resnet(name, input, classes, &[64, 128, 256, 512], 2, 64)),
        "resnet8" => Ok(resnet(name, input, classes, &[16, 32, 64], 1, 16)),
        "resnet6" => Ok(resnet6(input, classes)),
        "vgg19" => Ok(vgg19(input, classes)),
        "cnn" => Ok(cnn(input, classes)),
        "deit-tiny" => vit(name, input, classes, Vit { patch: 4, dim: 192, depth: 12, heads: 3, mlp: 768 }),
        "vit-mini" => vit(name, input, classes, Vit { patch: 7, dim: 64, depth: 4, heads: 4, mlp: 128 }),
        _ if is_language_model(name) => {
            Err(format!("{name} is a language model: it trains on text (--data builtin-text or text:FILE)"))
        }
        _ => Err(unknown(name)),
    }
}

fn unknown(name: &str) -> String {
    format!("unknown model {name:?}; known models: {}, {}", MODELS.join(", "), LANGUAGE_MODELS.join(", "))
}

/// A GPT's sizes.
#[derive(Clone, Copy, Debug)]
pub struct Gpt {
    pub layers: usize,
    pub heads: usize,
    pub dim: usize,
    /// The longest window it reads (the position table's rows).
    pub context: usize,
}

/// The sizes of a language model by name.
pub fn gpt_sizes(name: &str) -> Result<Gpt, String> {
    match name {
        "gpt-mini" => Ok(Gpt { layers: 2, heads: 4, dim: 64, context: 64 }),
        "gpt-char" => Ok(Gpt { layers: 6, heads: 6, dim: 384, context: 256 }),
        _ => Err(unknown(name)),
    }
}

/// A language model over `vocab` tokens reading windows of `context` tokens (at most the
/// model's own; None: the model's).
pub fn language_model(name: &str, context: Option<usize>, vocab: usize) -> Result<Graph, String> {
    let mut s = gpt_sizes(name)?;
    if let Some(c) = context {
        if c == 0 || c > s.context {
            return Err(format!("--context {c}: {name} reads 1 to {} tokens", s.context));
        }
        s.context = c;
    }
    if vocab == 0 {
        return Err(format!("{name}: an empty vocabulary"));
    }
    Ok(gpt(name, vocab, s))
}

/// nanoGPT's `GPT` (pre-norm blocks, LayerNorm ε 1e-5 with bias, exact GELU, causal
/// attention, `lm_head` tied to `transformer.wte`) with its initialisation: linear weights
/// and embeddings N(0, .02²), the two residual projections (`c_proj`) N(0, (.02/√(2L))²),
/// biases 0, LayerNorm 1/0. Inputs are `[context]` token ids; logits `[context, vocab]`.
pub fn gpt(name: &str, vocab: usize, s: Gpt) -> Graph {
    let mut g = Graph::with_input(name, Shape(vec![s.context]), vocab);
    let mut x = g.embed("transformer.wte.weight", "transformer.wpe.weight", Graph::INPUT, vocab, s.dim);
    let lin = |std: f32| LinearInit { weight: Init::Normal(std), bias: Some(Init::Const(0.0)), weight_shape: None };
    let proj = 0.02 / ((2 * s.layers) as f32).sqrt();
    for i in 0..s.layers {
        let b = format!("transformer.h.{i}");
        let h = g.layernorm(&format!("{b}.ln_1"), x, 1e-5);
        let h = g.linear_with(&format!("{b}.attn.c_attn"), h, 3 * s.dim, lin(0.02));
        let h = g.attention(&format!("{b}.attn"), h, s.heads, true);
        let h = g.linear_with(&format!("{b}.attn.c_proj"), h, s.dim, lin(proj));
        x = g.add(&format!("{b}.add1"), x, h);
        let h = g.layernorm(&format!("{b}.ln_2"), x, 1e-5);
        let h = g.linear_with(&format!("{b}.mlp.c_fc"), h, 4 * s.dim, lin(0.02));
        let h = g.gelu(&format!("{b}.mlp.gelu"), h);
        let h = g.linear_with(&format!("{b}.mlp.c_proj"), h, s.dim, lin(proj));
        x = g.add(&format!("{b}.add2"), x, h);
    }
    let x = g.layernorm("transformer.ln_f", x, 1e-5);
    let wte = g.param_named("transformer.wte.weight").expect("declared above");
    g.linear_tied("lm_head", x, wte);
    g
}

/// Whether `model` names a language model (a GPT): it trains on text, in steps.
pub fn is_language_model(model: &str) -> bool {
    model.starts_with("gpt")
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

/// A vision transformer's sizes.
#[derive(Clone, Copy, Debug)]
pub struct Vit {
    pub patch: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp: usize,
}

/// timm's `VisionTransformer` (as DeiT uses it) with its initialisation: linear weights
/// N(0, .02²) truncated, biases 0, the head all zeros, LayerNorm 1/0, the patch
/// embedding PyTorch's conv default. Images whose sides are not multiples of the patch
/// are refused with the reason.
pub fn vit(name: &str, input: [usize; 3], classes: usize, v: Vit) -> Result<Graph, String> {
    let [_, h, w] = input;
    if h % v.patch != 0 || w % v.patch != 0 {
        return Err(format!("{name} cuts images into {0}x{0} patches; {h}x{w} images do not divide", v.patch));
    }
    let mut g = Graph::new(name, input, classes);
    let x = g.patch_embed("patch_embed", Graph::INPUT, v.dim, v.patch);
    let mut x = g.class_token("embed", x);
    let lin = LinearInit { weight: Init::TruncNormal(0.02), bias: Some(Init::Const(0.0)), weight_shape: None };
    for i in 0..v.depth {
        let b = format!("blocks.{i}");
        let h = g.layernorm(&format!("{b}.norm1"), x, 1e-6);
        let h = g.linear_with(&format!("{b}.attn.qkv"), h, 3 * v.dim, lin.clone());
        let h = g.attention(&format!("{b}.attn"), h, v.heads, false);
        let h = g.linear_with(&format!("{b}.attn.proj"), h, v.dim, lin.clone());
        x = g.add(&format!("{b}.add1"), x, h);
        let h = g.layernorm(&format!("{b}.norm2"), x, 1e-6);
        let h = g.linear_with(&format!("{b}.mlp.fc1"), h, v.mlp, lin.clone());
        let h = g.gelu(&format!("{b}.mlp.act"), h);
        let h = g.linear_with(&format!("{b}.mlp.fc2"), h, v.dim, lin.clone());
        x = g.add(&format!("{b}.add2"), x, h);
    }
    let x = g.layernorm("norm", x, 1e-6);
    let x = g.first_token("cls", x);
    let zero = LinearInit { weight: Init::Const(0.0), bias: Some(Init::Const(0.0)), weight_shape: None };
    g.linear_with("head", x, classes, zero);
    Ok(g)
}

/// The image shape `cuttle info` describes a model at: 28x28 grayscale for `vit-mini`
/// (its patches divide nothing else of the built-in data), CIFAR's 32x32 RGB otherwise.
pub fn default_input(model: &str) -> [usize; 3] {
    if model == "vit-mini" {
        [1, 28, 28]
    } else {
        [3, 32, 32]
    }
}

/// Whether `model` names a transformer (ViT, DeiT, GPT): AdamW and a warmed-up cosine by
/// default (`train::ModelDefaults`), a rank floor of half the full rank under Cuttlefish.
pub fn is_transformer(model: &str) -> bool {
    model.starts_with("vit") || model.starts_with("deit") || is_language_model(model)
}
