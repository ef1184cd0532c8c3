//! Transformers end to end below the trainer: the model zoo's ViTs and GPTs (parameter
//! counts, timm's and nanoGPT's names, no GPU needed), attention forward against the f64
//! reference at the sequence lengths real models use, whole-network finite-difference
//! checks of a 2-block ViT and a 1-layer GPT (every parameter tensor, the tied head
//! included), causality of the GPT's logits, its text windows against the host reference,
//! sampling, and the Cuttlefish rewrite of linear layers (full-rank factors reproduce the
//! network; a factorized GPT keeps its tie).

mod common;
use common::*;
use cuttle::cuttlefish::factorize::{candidates, factorized_graph, reference_layers, svd_factors, Factor};
use cuttle::gpu::{read_f32, test_gpu, Gpu, Tensor};
use cuttle::nn::graph::{Attention, Op, Shape};
use cuttle::nn::layers::{attention, Epilogue, Io, Layer, Steps};
use cuttle::nn::models::{gpt, language_model, model_by_name, vit, Gpt, Vit};
use cuttle::nn::params::ParamStore;
use cuttle::nn::{Graph, Net};
use cuttle::sample::Sampler;
use std::collections::HashMap;

#[test]
fn vit_parameter_counts_and_timm_names() {
    let g = model_by_name("deit-tiny", [3, 32, 32], 10).unwrap();
    assert_eq!(g.param_count(), 5_362_762);
    let names: Vec<&str> = g.params.iter().map(|p| p.name.as_str()).collect();
    for n in [
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "cls_token",
        "pos_embed",
        "blocks.0.norm1.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.qkv.bias",
        "blocks.11.attn.proj.weight",
        "blocks.5.norm2.bias",
        "blocks.11.mlp.fc1.weight",
        "blocks.11.mlp.fc2.bias",
        "norm.weight",
        "head.weight",
        "head.bias",
    ] {
        assert!(names.contains(&n), "missing {n}");
    }
    let shape = |n: &str| g.param(g.param_named(n).unwrap()).shape.clone();
    assert_eq!(shape("patch_embed.proj.weight"), vec![192, 3, 4, 4]);
    assert_eq!(shape("pos_embed"), vec![1, 65, 192]);
    assert_eq!(shape("cls_token"), vec![1, 1, 192]);
    // Decay: linear and patch weights only (timm's DeiT recipe: no decay on 1-D params,
    // pos_embed and cls_token).
    for p in &g.params {
        let decays = p.name.ends_with(".weight") && p.shape.len() >= 2;
        assert_eq!(p.decay, decays, "{}", p.name);
    }
    assert_eq!(model_by_name("vit-mini", [1, 28, 28], 10).unwrap().param_count(), 139_018);
    let err = model_by_name("vit-mini", [3, 32, 32], 10).unwrap_err();
    assert!(err.contains("7x7 patches"), "{err}");
}

/// The state-dict keys and shapes of timm's `VisionTransformer(img_size=32, patch_size=4,
/// embed_dim=192, depth=12, num_heads=3, mlp_ratio=4, num_classes=10)`, so that an
/// exported full-rank `deit-tiny` loads into it with `load_state_dict(strict=True)`.
#[test]
fn deit_tiny_has_exactly_timms_state_dict() {
    let (d, t, mlp) = (192, 65, 768);
    let mut want: Vec<(String, Vec<usize>)> = vec![
        ("cls_token".into(), vec![1, 1, d]),
        ("pos_embed".into(), vec![1, t, d]),
        ("patch_embed.proj.weight".into(), vec![d, 3, 4, 4]),
        ("patch_embed.proj.bias".into(), vec![d]),
    ];
    for i in 0..12 {
        for (n, s) in [
            ("norm1.weight", vec![d]),
            ("norm1.bias", vec![d]),
            ("attn.qkv.weight", vec![3 * d, d]),
            ("attn.qkv.bias", vec![3 * d]),
            ("attn.proj.weight", vec![d, d]),
            ("attn.proj.bias", vec![d]),
            ("norm2.weight", vec![d]),
            ("norm2.bias", vec![d]),
            ("mlp.fc1.weight", vec![mlp, d]),
            ("mlp.fc1.bias", vec![mlp]),
            ("mlp.fc2.weight", vec![d, mlp]),
            ("mlp.fc2.bias", vec![d]),
        ] {
            want.push((format!("blocks.{i}.{n}"), s));
        }
    }
    for (n, s) in
        [("norm.weight", vec![d]), ("norm.bias", vec![d]), ("head.weight", vec![10, d]), ("head.bias", vec![10])]
    {
        want.push((n.into(), s));
    }
    let g = model_by_name("deit-tiny", [3, 32, 32], 10).unwrap();
    let mut got: Vec<(String, Vec<usize>)> = g.params.iter().map(|p| (p.name.clone(), p.shape.clone())).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn cuttlefish_candidates_of_a_vit_are_its_block_linears() {
    let g = model_by_name("vit-mini", [1, 28, 28], 10).unwrap();
    let c = candidates(&g);
    assert_eq!(c.len(), 16, "{c:?}");
    assert_eq!(&c[..4], ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"]);
    let r = reference_layers(&g).unwrap();
    assert_eq!(r.len(), 12);
    assert!(r.iter().all(|n| !n.ends_with("attn.proj")));
}

fn tiny_vit() -> Graph {
    vit("vit-test", [2, 8, 8], 5, Vit { patch: 4, dim: 12, depth: 2, heads: 3, mlp: 10 }).unwrap()
}

/// Attention forward on the GPU against the f64 reference: T = 1, 7, 65 (DeiT-Tiny on
/// CIFAR) and 197 (ViT on 224² images), 1 and 3 heads, causal and not, on both paths (the
/// GEMM chain from T·d = 4096: 65 x 64 and 197 x 24).
#[test]
fn attention_forward_matches_f64_reference() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(5);
    let params = ParamStore::new(&gpu, &[]).unwrap();
    for (b, t, heads, dh, causal) in [
        (2, 1, 1, 4, false),
        (3, 7, 3, 5, false),
        (2, 7, 3, 5, true),
        (2, 65, 3, 8, false),
        (2, 65, 2, 64, false),
        (1, 65, 1, 64, true),
        (1, 197, 1, 6, false),
        (1, 197, 2, 24, true),
        (1, 197, 3, 4, true),
    ] {
        let d = heads * dh;
        let qkv = rng.vec(b * t * 3 * d).iter().map(|v| 1.5 * v).collect::<Vec<f64>>();
        let x = Tensor::from_slice(&gpu, "qkv", &[b, t, 3 * d], &f32s(&qkv)).unwrap();
        let y = Tensor::zeros(&gpu, "y", &[b, t, d]).unwrap();
        let dy = Tensor::zeros(&gpu, "dy", &[b, t, d]).unwrap();
        let shape = Shape(vec![t, 3 * d]);
        let io = Io {
            gpu: &gpu,
            name: "attn",
            batch: b,
            params: &params,
            x: vec![(&x, &shape)],
            y: &y,
            dy: &dy,
            dx: vec![None],
            accumulate_params: vec![],
        };
        let mut steps = Steps::default();
        Layer::plan(&io, &Op::Attention(Attention { heads, causal }), Epilogue::default(), &mut steps).unwrap();
        gpu.run(&steps.eval);
        let got = pollster::block_on(read_f32(&gpu, &[&y])).unwrap().remove(0);
        let want = attention::cpu::forward(b, t, heads, dh, causal, &qkv);
        assert_close(&format!("attention b{b} t{t} h{heads} causal {causal}"), &got, &want, 2e-5, 1e-4);
    }
}

/// Sets every parameter to a random value near its initial one (the head starts at zero,
/// which would make every other gradient zero and the check vacuous).
fn perturb(gpu: &Gpu, net: &Net, rng: &mut Rng, seed: u64) {
    let mut w = net.params.initial_values(seed);
    for p in net.params.all() {
        for v in &mut w[p.offset..p.offset + p.spec.len()] {
            *v += 0.3 * rng.uniform() as f32;
        }
    }
    net.params.weights.write(gpu, &w);
}

/// Every parameter tensor of a 2-block ViT: the backward's directional derivative against
/// the central difference of the GPU forward loss.
#[test]
fn vit_gradient_matches_finite_differences() {
    let Some(gpu) = test_gpu() else { return };
    let (batch, seed) = (3, 31);
    let mut rng = Rng(seed);
    let g = tiny_vit();
    let classes = g.classes;
    let net = Net::new(&gpu, g, batch).unwrap();
    perturb(&gpu, &net, &mut rng, seed);
    // GELU, softmax and LayerNorm are smooth: a step of 2e-3 keeps the f32 rounding of
    // the quotient near 4e-5 (at 3e-4 it was 4e-4, as large as some derivatives).
    common::check_net_gradients(&gpu, net, classes, &mut rng, 2e-3);
}

/// The same check on 65 tokens of 64 features per head (1x1 patches of 8x8 images), where
/// attention takes the batched-GEMM path instead of the fused kernels.
#[test]
fn vit_gradient_matches_finite_differences_on_the_gemm_attention_path() {
    let Some(gpu) = test_gpu() else { return };
    let (batch, seed) = (2, 32);
    let mut rng = Rng(seed);
    let g = vit("vit-test", [1, 8, 8], 4, Vit { patch: 1, dim: 64, depth: 2, heads: 1, mlp: 16 }).unwrap();
    let s = cuttle::ops::attention::AttnShape { batch, tokens: 65, heads: 1, head_dim: 64, causal: false };
    assert!(!attention::uses_fused(s), "the GEMM path");
    let classes = g.classes;
    let net = Net::new(&gpu, g, batch).unwrap();
    perturb(&gpu, &net, &mut rng, seed);
    common::check_net_gradients(&gpu, net, classes, &mut rng, 2e-3);
}

/// Factorizing linear layers at full rank (SVD factors, bias on the second factor) leaves
/// the network's output unchanged.
#[test]
fn full_rank_linear_factors_reproduce_the_vit() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(8);
    let g = tiny_vit();
    let batch = 2;
    let net = Net::new(&gpu, g.clone(), batch).unwrap();
    perturb(&gpu, &net, &mut rng, 3);
    let input: Vec<f32> = (0..net.input().len()).map(|_| rng.uniform() as f32).collect();
    net.input().write(&gpu, &input);
    gpu.run(&net.forward_eval);
    let want = pollster::block_on(read_f32(&gpu, &[net.logits()])).unwrap().remove(0);

    let layers = reference_layers(&g).unwrap();
    let mats = cuttle::cuttlefish::factorize::matrices(&g);
    let factors: Vec<Factor> = layers
        .iter()
        .map(|l| Factor { layer: l.clone(), rank: mats[l].full_rank(), full_rank: mats[l].full_rank() })
        .collect();
    let fg = factorized_graph(&g, &factors, false, true);
    assert!(
        fg.param_named("blocks.0.attn.qkv.0.bias").is_none() && fg.param_named("blocks.0.attn.qkv.1.bias").is_some()
    );
    let old: HashMap<String, Vec<f32>> =
        pollster::block_on(net.params.read(&gpu)).unwrap().into_iter().map(|(n, _, v)| (n, v)).collect();
    let low = Net::new(&gpu, fg, batch).unwrap();
    let mut flat = vec![0.0f32; low.params.weights.len()];
    let mut values = old.clone();
    for f in &factors {
        let m = &mats[&f.layer];
        let (u, v) = svd_factors(&old[&format!("{}.weight", f.layer)], m.rows, m.cols, f.rank).unwrap();
        values.insert(format!("{}.0.weight", f.layer), u);
        values.insert(format!("{}.1.weight", f.layer), v);
        values.insert(format!("{}.1.bias", f.layer), old[&format!("{}.bias", f.layer)].clone());
    }
    for p in low.params.all() {
        flat[p.offset..p.offset + p.spec.len()].copy_from_slice(&values[&p.spec.name]);
    }
    low.params.weights.write(&gpu, &flat);
    low.input().write(&gpu, &input);
    gpu.run(&low.forward_eval);
    let got = pollster::block_on(read_f32(&gpu, &[low.logits()])).unwrap().remove(0);
    assert_close("factorized logits", &got, &f64s(&want), 1e-4, 1e-3);
}

// ---- The character GPT (nanoGPT's layout) ----

fn tiny_gpt() -> Graph {
    gpt("gpt-test", 7, Gpt { layers: 1, heads: 2, dim: 8, context: 5 })
}

#[test]
fn gpt_parameter_counts_and_nanogpt_names() {
    let mini = language_model("gpt-mini", None, 65).unwrap();
    assert_eq!(mini.param_count(), 108_352);
    let char_model = language_model("gpt-char", None, 65).unwrap();
    // nanoGPT's `get_num_params()` prints this less the 98,304 of wpe: 10.67M.
    assert_eq!(char_model.param_count(), 10_770_816);
    // nanoGPT's state dict (bias=True, flash attention: no mask buffer), lm_head included:
    // `cuttle export` writes the tied table under both names.
    let mut want = vec!["transformer.wte.weight".to_string(), "transformer.wpe.weight".to_string()];
    for i in 0..6 {
        for m in ["ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"] {
            want.push(format!("transformer.h.{i}.{m}.weight"));
            want.push(format!("transformer.h.{i}.{m}.bias"));
        }
    }
    want.extend(["transformer.ln_f.weight".into(), "transformer.ln_f.bias".into(), "lm_head.weight".into()]);
    let mut ck = cuttle::train::checkpoint::Checkpoint::default();
    for p in &char_model.params {
        ck.tensors.insert(p.name.clone(), (p.shape.clone(), vec![]));
    }
    let mut got: Vec<String> = ck.model_only().tensors.keys().cloned().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let shape = |n: &str| char_model.param(char_model.param_named(n).unwrap()).shape.clone();
    assert_eq!(shape("transformer.wte.weight"), [65, 384]);
    assert_eq!(shape("transformer.wpe.weight"), [256, 384]);
    assert_eq!(shape("transformer.h.0.attn.c_attn.weight"), [1152, 384]);
    assert_eq!(shape("transformer.h.5.mlp.c_proj.weight"), [384, 1536]);
    // A shorter context shrinks the position table; a longer one is refused.
    assert_eq!(language_model("gpt-mini", Some(32), 65).unwrap().param_count(), 108_352 - 32 * 64);
    assert!(language_model("gpt-mini", Some(65), 65).unwrap_err().contains("1 to 64"));
    assert!(model_by_name("gpt-mini", [1, 28, 28], 10).unwrap_err().contains("language model"));
}

/// Cuttlefish tracks each block's four linear layers; the tied head and the embeddings
/// stay full-rank, and a factorized GPT keeps its head tied to the (rebuilt) table.
#[test]
fn gpt_candidates_and_factorized_graph_keep_the_tie() {
    let g = language_model("gpt-mini", None, 65).unwrap();
    let c = candidates(&g);
    assert_eq!(c.len(), 8, "{c:?}");
    for m in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"] {
        assert!(c.contains(&format!("transformer.h.1.{m}")), "{m} in {c:?}");
    }
    assert_eq!(reference_layers(&g).unwrap(), c);
    let factors: Vec<Factor> = c.iter().map(|l| Factor { layer: l.clone(), rank: 8, full_rank: 64 }).collect();
    let f = factorized_graph(&g, &factors, false, true);
    let wte = f.param_named("transformer.wte.weight").unwrap();
    assert_eq!(f.users(wte).count(), 2, "embedding and head share the table");
    assert!(f.param_named("lm_head.weight").is_none());
    assert!(f.param_count() < g.param_count());
}

/// Every parameter tensor of a 1-layer GPT, the tied table included (its gradient is the
/// head's plus the embedding's), through the causal attention.
#[test]
fn gpt_gradient_matches_finite_differences() {
    let Some(gpu) = test_gpu() else { return };
    let (batch, seed) = (2, 41);
    let mut rng = Rng(seed);
    let g = tiny_gpt();
    let classes = g.classes;
    let net = Net::new(&gpu, g, batch).unwrap();
    perturb(&gpu, &net, &mut rng, seed);
    common::check_net_gradients(&gpu, net, classes, &mut rng, 2e-3);
}

/// The logits of position t depend on tokens 0..=t only: changing token k leaves every
/// earlier position's logits bit-identical and changes the later ones.
#[test]
fn gpt_logits_do_not_see_the_future() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(9);
    let g = tiny_gpt();
    let (t, v) = (5, g.classes);
    let net = Net::new(&gpu, g, 1).unwrap();
    perturb(&gpu, &net, &mut rng, 2);
    let logits = |ids: &[u32]| {
        net.input().write(&gpu, ids);
        gpu.run(&net.forward_eval);
        pollster::block_on(read_f32(&gpu, &[net.logits()])).unwrap().remove(0)
    };
    let ids: Vec<u32> = vec![1, 4, 2, 6, 0];
    let base = logits(&ids);
    for k in 0..t {
        let mut changed = ids.clone();
        changed[k] = (ids[k] + 3) % v as u32;
        let l = logits(&changed);
        for pos in 0..t {
            let (a, b) = (&base[pos * v..(pos + 1) * v], &l[pos * v..(pos + 1) * v]);
            if pos < k {
                assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "token {k} reached position {pos}");
            } else {
                assert!(a != b, "token {k} did not reach position {pos}");
            }
        }
    }
}

/// The training windows the GPU draws are `data::text::window_start`'s, and the
/// evaluation windows are evenly spaced; targets are the next tokens.
#[test]
fn text_windows_match_the_host_reference() {
    use cuttle::data::text::{eval_stride, window_start};
    use cuttle::ops::{tokens, StepState};
    let Some(gpu) = test_gpu() else { return };
    let n = 1000;
    let stream: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % 65).collect();
    let ts = Tensor::from_slice(&gpu, "stream", &[n], &stream).unwrap();
    for (b, t, seed, epoch, step) in [(3, 5, 0u64, 0u32, 0u32), (4, 17, 1 << 40 | 9, 3, 11), (1, 1, 5, 1, 2)] {
        let st = StepState { step, epoch, seed_lo: seed as u32, seed_hi: (seed >> 32) as u32, ..Default::default() };
        let tst = Tensor::from_slice(&gpu, "step", &[8], bytemuck::cast_slice::<_, u32>(&[st])).unwrap();
        let (ids, labels) =
            (Tensor::zeros(&gpu, "ids", &[b * t]).unwrap(), Tensor::zeros(&gpu, "labels", &[b * t]).unwrap());
        for stride in [None, Some(eval_stride(n, t, 8))] {
            gpu.run(&[tokens::text_windows(&gpu, "w", (b, t), stride, &ts, &tst, &ids, &labels)]);
            let got = pollster::block_on(cuttle::gpu::read_u32(&gpu, &[&ids, &labels])).unwrap();
            for r in 0..b {
                let w = step * b as u32 + r as u32;
                let start = match stride {
                    None => window_start(seed, epoch, w, (n - t) as u32) as usize,
                    Some(s) => (w as usize * s).min(n - t - 1),
                };
                assert_eq!(&got[0][r * t..(r + 1) * t], &stream[start..start + t], "ids {b} {t} {stride:?} row {r}");
                assert_eq!(&got[1][r * t..(r + 1) * t], &stream[start + 1..start + t + 1], "labels row {r}");
            }
        }
    }
}

/// Sampling is deterministic for a seed, temperature 0 is the arg-max, and a run's
/// weights reach the batch-1 sampler.
#[test]
fn sampling_is_deterministic_for_a_seed() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(4);
    let g = tiny_gpt();
    let train_net = Net::new(&gpu, g.clone(), 3).unwrap();
    perturb(&gpu, &train_net, &mut rng, 6);
    let mut s = Sampler::new(&gpu, &g).unwrap();
    s.load_weights(&gpu, &train_net);
    let gen = |s: &mut Sampler, t: f32, seed: u64| pollster::block_on(s.generate(&gpu, &[1, 2], 9, t, seed)).unwrap();
    let a = gen(&mut s, 1.0, 7);
    assert_eq!(a.len(), 9);
    assert!(a.iter().all(|&i| i < 7));
    assert_eq!(a, gen(&mut s, 1.0, 7));
    assert_ne!(a, gen(&mut s, 1.0, 8), "another seed, another text (9 draws over 7 tokens)");
    let greedy = gen(&mut s, 0.0, 1);
    assert_eq!(greedy, gen(&mut s, 0.0, 2), "temperature 0 ignores the seed");
    // The first greedy token is the arg-max of position 1's logits of the batch-1 net.
    let mut r = cuttle::rng::SplitMix64::new(0);
    assert_eq!(cuttle::sample::draw(&[0.1, 2.0, -1.0, 2.0], 0.0, &mut r), 1, "ties go to the lowest id");
    assert!(pollster::block_on(s.generate(&gpu, &[1], 1, f32::NAN, 0)).is_err());
}
