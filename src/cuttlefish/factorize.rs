//! The switch to low rank: which layers, the graph rewrite, and the SVD initialisation.
//!
//! A linear layer W (out, in) = U S Vᵀ becomes `NAME.0`, a linear layer in → r without bias
//! and weight S_r^½ V_rᵀ, then `NAME.1`, r → out with weight U_r S_r^½ and the original
//! bias (the reference's `fc_u`/`fc_v`, with the bias on the second only).
//!
//! A k x k convolution W (c_out, c_in, k, k), unfolded as c_out x c_in·k·k = U S Vᵀ, becomes
//! `NAME.0`: a k x k convolution c_in → r (same stride and padding) with weight
//! S_r^½ V_rᵀ, then `NAME.1`: a 1x1 convolution r → c_out with weight U_r S_r^½
//! (with an extra BatchNorm(r) between them, the factors are `NAME.0`, `NAME.1` (the BN)
//! and `NAME.2`). At full rank the pair computes exactly the original layer. The truncated
//! SVD runs on the CPU in f64 (faer), once.

use crate::nn::graph::{ActId, Graph, Init, LinearInit, Op, ParamId};
use std::collections::HashMap;

/// A layer chosen for factorization and its rank.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Factor {
    /// The original conv's name (module path), e.g. `layer2.0.conv1`.
    pub layer: String,
    pub rank: usize,
    pub full_rank: usize,
}

/// Names of the conv factors of a factorized layer: (first, second).
pub fn factor_names(layer: &str, extra_bn: bool) -> (String, String) {
    (format!("{layer}.0"), format!("{layer}.{}", if extra_bn { 2 } else { 1 }))
}

/// A layer whose weight Cuttlefish sees as a matrix: rows x cols = c_out x c_in·k·k for a
/// conv, out x in for a linear layer (as stored).
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub weight: ParamId,
    pub rows: usize,
    pub cols: usize,
    /// Index of its node in the graph.
    pub node: usize,
}

impl Matrix {
    pub fn full_rank(&self) -> usize {
        self.rows.min(self.cols)
    }
}

/// Every conv and linear layer of `g` by name, with its weight as a matrix.
pub fn matrices(g: &Graph) -> HashMap<String, Matrix> {
    g.nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let (weight, rows, cols) = match &n.op {
                Op::Conv(c) => (c.weight, c.c_out, c.c_in * c.k * c.k),
                Op::Linear(l) => (l.weight, l.outputs, l.inputs),
                _ => return None,
            };
            Some((n.name.clone(), Matrix { weight, rows, cols, node: i }))
        })
        .collect()
}

/// Whether parameter `p` is read by more than one node (a head tied to the embedding).
fn tied(g: &Graph, p: ParamId) -> bool {
    g.users(p).nth(1).is_some()
}

/// Layers Cuttlefish may factorize: every k x k conv (k > 1) except the stem (the conv that
/// reads the input image), and every linear layer over tokens except the patch embedding
/// and a tied head (the attention projections and MLPs of a transformer). 1x1 convs
/// (shortcuts) and linear heads stay full-rank, as in the reference.
pub fn candidates(g: &Graph) -> Vec<String> {
    let reads_patches =
        |n: &crate::nn::graph::Node| g.nodes.iter().any(|m| m.output == n.inputs[0] && matches!(m.op, Op::Patchify(_)));
    g.nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv(c) if c.k > 1 && n.inputs[0] != Graph::INPUT => Some(n.name.clone()),
            Op::Linear(l) if g.shape(n.inputs[0]).tokens().is_some() && !reads_patches(n) && !tied(g, l.weight) => {
                Some(n.name.clone())
            }
            _ => None,
        })
        .collect()
}

/// The reference's hard-coded choice (shared/cuttlefish-spec.md §1.5): ResNet-18 keeps the
/// stem and stage 1 full-rank and factorizes both 3x3 convs of every later block; VGG-19
/// keeps conv1-conv4 and factorizes conv5-conv16. For the small models the same idea: the
/// first stage stays full-rank. DeiT: every block's `attn.qkv`, `mlp.fc1` and `mlp.fc2`
/// (`AdaptAttention`, `AdaptMlp`); `attn.proj` stays full-rank.
pub fn reference_layers(g: &Graph) -> Result<Vec<String>, String> {
    let c = candidates(g);
    match g.name.as_str() {
        "resnet18" | "resnet8" | "resnet6" => Ok(c.into_iter().filter(|n| !n.starts_with("layer1.")).collect()),
        // candidates() already drops the stem (conv1 of 16): conv5.. is the 4th candidate on.
        "vgg19" => Ok(c.into_iter().skip(3).collect()),
        "cnn" => Ok(c),
        // No reference for a GPT: every block's c_attn, attn.c_proj, c_fc and mlp.c_proj.
        name if crate::nn::models::is_language_model(name) => Ok(c),
        name if crate::nn::models::is_transformer(name) => Ok(c
            .into_iter()
            .filter(|n| n.ends_with(".attn.qkv") || n.ends_with(".mlp.fc1") || n.ends_with(".mlp.fc2"))
            .collect()),
        other => Err(format!("no reference layer choice for model {other:?}; use --factorize auto or a list")),
    }
}

/// The graph with each layer of `factors` replaced by its factor pair. With `frobenius_decay`
/// the factors are exempt from weight decay (the regulariser replaces it, as in the
/// reference); with `extra_bn` a BatchNorm sits between them.
pub fn factorized_graph(g: &Graph, factors: &[Factor], extra_bn: bool, frobenius_decay: bool) -> Graph {
    let ranks: HashMap<&str, usize> = factors.iter().map(|f| (f.layer.as_str(), f.rank)).collect();
    let mut out = Graph::with_input(&g.name, g.shape(Graph::INPUT).clone(), g.classes);
    let mut map: Vec<ActId> = vec![0; g.acts.len()];
    let last_weight = |out: &Graph| out.param_named(&format!("{}.weight", out.nodes.last().expect("just built").name));
    for n in &g.nodes {
        let x: Vec<ActId> = n.inputs.iter().map(|&a| map[a]).collect();
        let y = match &n.op {
            Op::Conv(c) => match ranks.get(n.name.as_str()) {
                Some(&r) => {
                    let (first, second) = factor_names(&n.name, extra_bn);
                    let mut h = out.conv(&first, x[0], r, c.k, c.stride, c.pad);
                    let u = last_weight(&out).expect("conv declared a weight");
                    if extra_bn {
                        h = out.batchnorm(&format!("{}.1", n.name), h);
                    }
                    let y = out.conv(&second, h, c.c_out, 1, 1, 0);
                    let v = last_weight(&out).expect("conv declared a weight");
                    if frobenius_decay {
                        out.exempt_from_decay(u);
                        out.exempt_from_decay(v);
                    }
                    y
                }
                None => out.conv(&n.name, x[0], c.c_out, c.k, c.stride, c.pad),
            },
            Op::Linear(l) => match ranks.get(n.name.as_str()) {
                Some(&r) => {
                    assert!(!extra_bn, "{}: extra BatchNorms are for convolutions", n.name);
                    let (first, second) = factor_names(&n.name, false);
                    let init = Init::TruncNormal(0.02);
                    let h =
                        out.linear_with(&first, x[0], r, LinearInit { weight: init, bias: None, weight_shape: None });
                    let u = last_weight(&out).expect("linear declared a weight");
                    let bias = l.bias.map(|b| g.param(b).init);
                    let y =
                        out.linear_with(&second, h, l.outputs, LinearInit { weight: init, bias, weight_shape: None });
                    let v = last_weight(&out).expect("linear declared a weight");
                    if frobenius_decay {
                        out.exempt_from_decay(u);
                        out.exempt_from_decay(v);
                    }
                    y
                }
                // A tied head reads the (already rebuilt) embedding table by name.
                None if tied(g, l.weight) => {
                    let w = out.param_named(&g.param(l.weight).name).expect("the embedding is built before the head");
                    out.linear_tied(&n.name, x[0], w)
                }
                None => {
                    let w = g.param(l.weight);
                    let init = LinearInit {
                        weight: w.init,
                        bias: l.bias.map(|b| g.param(b).init),
                        weight_shape: Some(w.shape.clone()),
                    };
                    out.linear_with(&n.name, x[0], l.outputs, init)
                }
            },
            Op::BatchNorm(_) => out.batchnorm(&n.name, x[0]),
            Op::Relu => out.relu(&n.name, x[0]),
            Op::Add => out.add(&n.name, x[0], x[1]),
            Op::MaxPool2 => out.max_pool2(&n.name, x[0]),
            Op::GlobalAvgPool => out.global_avg_pool(&n.name, x[0]),
            Op::LayerNorm(l) => out.layernorm(&n.name, x[0], l.eps),
            Op::Gelu => out.gelu(&n.name, x[0]),
            Op::Attention(a) => out.attention(&n.name, x[0], a.heads, a.causal),
            Op::Patchify(p) => out.patchify(&n.name, x[0], *p),
            Op::ClassToken(_) => out.class_token(&n.name, x[0]),
            Op::FirstToken => out.first_token(&n.name, x[0]),
            Op::Embed(e) => {
                let (table, pos) = (&g.param(e.table).name, &g.param(e.pos).name);
                out.embed(table, pos, x[0], e.vocab, e.dim)
            }
        };
        map[n.output] = y;
    }
    out
}

/// The model with a fixed rank instead of Cuttlefish's: every layer of the reference's
/// choice factorized at c_out/`div` (at least 1), no BatchNorm between the factors. With
/// `div` = 4 on ResNet-18 this is `torch_baseline.py`'s low-rank model (3,389,514
/// parameters), the one the benchmarks compare.
pub fn fixed_lowrank(g: &Graph, div: usize) -> Result<Graph, String> {
    if div < 2 {
        return Err(format!("the rank divisor must be at least 2, not {div}"));
    }
    let layers = reference_layers(g)?;
    let mats = matrices(g);
    let factors: Vec<Factor> = layers
        .iter()
        .map(|name| {
            let m = &mats[name];
            Factor { layer: name.clone(), rank: (m.rows / div).max(1), full_rank: m.full_rank() }
        })
        .collect();
    Ok(factorized_graph(g, &factors, false, false))
}

/// Truncated SVD factors of W (rows x cols, row-major) at rank r:
/// (first = S_r^½ V_rᵀ (r x cols), second = U_r S_r^½ (rows x r)).
pub fn svd_factors(w: &[f32], rows: usize, cols: usize, r: usize) -> Result<(Vec<f32>, Vec<f32>), String> {
    assert_eq!(w.len(), rows * cols);
    let m = faer::Mat::<f64>::from_fn(rows, cols, |i, j| w[i * cols + j] as f64);
    let svd = m.thin_svd().map_err(|e| format!("SVD did not converge: {e:?}"))?;
    let (u, v) = (svd.U(), svd.V());
    let s = svd.S().column_vector();
    let r = r.min(rows.min(cols));
    let mut first = vec![0.0f32; r * cols];
    let mut second = vec![0.0f32; rows * r];
    for k in 0..r {
        let root = s[k].max(0.0).sqrt();
        for j in 0..cols {
            first[k * cols + j] = (root * v[(j, k)]) as f32;
        }
        for i in 0..rows {
            second[i * r + k] = (u[(i, k)] * root) as f32;
        }
    }
    Ok((first, second))
}

/// Singular values of W (rows x cols), largest first (for tests and reports).
pub fn singular_values(w: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let m = faer::Mat::<f64>::from_fn(rows, cols, |i, j| w[i * cols + j] as f64);
    m.singular_values().unwrap_or_default()
}
