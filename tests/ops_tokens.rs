//! The transformer data-movement kernels (`ops::tokens`) against their f64 references, and
//! the references against their definitions: each backward is checked to be the adjoint
//! of its forward (⟨dy, F(x)⟩ = ⟨F*(dy), x⟩, all these maps are linear), and patchify to
//! be the unfold of a stride-p convolution.
//!
//! Pure data movement (permute, patchify, taking rows) and single f32 adds (embed, lookup,
//! accumulation into a prefilled output) are compared BIT FOR BIT with the reference
//! rounded to f32: inputs are f32 values, the sum of two f32 values is exact in f64, so its
//! rounding to f32 is the correctly rounded f32 sum the GPU computes. Only the Σ-reductions
//! (over the batch, over equal ids) have an f32 tolerance.

mod common;
use common::*;
use cuttle::gpu::{read_f32, test_gpu, Gpu, Tensor};
use cuttle::ops::tokens::{self, cpu};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn t(gpu: &Gpu, name: &str, v: &[f64]) -> Tensor {
    Tensor::from_slice(gpu, name, &[v.len()], &f32s(v)).unwrap()
}
fn z(gpu: &Gpu, name: &str, n: usize) -> Tensor {
    Tensor::zeros(gpu, name, &[n]).unwrap()
}
fn read(gpu: &Gpu, x: &Tensor) -> Vec<f32> {
    pollster::block_on(read_f32(gpu, &[x])).unwrap().remove(0)
}
/// Values exactly representable in f32, so the f64 references see what the GPU sees.
fn vals(rng: &mut Rng, n: usize) -> Vec<f64> {
    rng.vec(n).iter().map(|&v| v as f32 as f64).collect()
}
fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Bit-for-bit equality with the reference rounded to f32 (finite values only: NaN fails).
fn assert_bits(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let w = w as f32;
        assert!(
            g.is_finite() && g.to_bits() == w.to_bits(),
            "{what}: index {i}: got {g:e} ({:#010x}), want {w:e} ({:#010x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

/// The message of the panic `f` raises (fails if it returns).
fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>().cloned().or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string())).unwrap()
}

/// (dims, perm) cases: the two attention permutes at the brief's shapes, size-1 axes,
/// 6 axes, identities, a plain transpose, a tensor of one element.
fn permute_cases() -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![3, 7, 3, 3, 5], vec![2, 0, 3, 1, 4]),  // qkv split, dh 5: scalar kernel
        (vec![2, 65, 3, 3, 8], vec![2, 0, 3, 1, 4]), // qkv split, dh 8: vec4 kernel
        (vec![3, 3, 7, 5], vec![0, 2, 1, 3]),        // head merge
        (vec![2, 3, 65, 8], vec![0, 2, 1, 3]),
        (vec![1, 4, 1, 3, 5], vec![4, 2, 0, 3, 1]),
        (vec![2, 1, 3, 1, 5], vec![3, 1, 4, 0, 2]),
        (vec![1, 1, 7, 1, 1], vec![4, 3, 2, 1, 0]),
        (vec![2, 3, 1, 2, 5, 3], vec![5, 1, 3, 0, 4, 2]),
        (vec![7, 9], vec![0, 1]),
        (vec![257], vec![0]),
        (vec![17, 30], vec![1, 0]),
        (vec![3, 1, 4], vec![2, 1, 0]),
        (vec![1, 1, 1], vec![2, 0, 1]),
    ];
    // Seeded random shapes of 1-6 axes, dims 1-6.
    let mut rng = Rng(41);
    for _ in 0..8 {
        let n = 1 + rng.below(6);
        let dims: Vec<usize> = (0..n).map(|_| 1 + rng.below(6)).collect();
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            perm.swap(i, rng.below(i + 1));
        }
        cases.push((dims, perm));
    }
    cases
}

#[test]
fn permute_hand_checked() {
    let Some(gpu) = test_gpu() else { return };
    // [[0 1 2] [3 4 5]] transposed.
    let x = t(&gpu, "x", &[0., 1., 2., 3., 4., 5.]);
    let y = z(&gpu, "y", 6);
    gpu.run(&[tokens::permute(&gpu, "transpose", &[2, 3], &[1, 0], &x, &y, false)]);
    assert_eq!(read(&gpu, &y), vec![0., 3., 1., 4., 2., 5.]);
    assert_eq!(cpu::permute(&[2, 3], &[1, 0], &[0., 1., 2., 3., 4., 5.]), vec![0., 3., 1., 4., 2., 5.]);
}

#[test]
fn permute_matches_reference_bit_for_bit() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(42);
    for (dims, perm) in permute_cases() {
        let n: usize = dims.iter().product();
        let (x, prior) = (vals(&mut rng, n), vals(&mut rng, n));
        let want = cpu::permute(&dims, &perm, &x);
        let (tx, ty, tacc) = (t(&gpu, "x", &x), z(&gpu, "y", n), t(&gpu, "y-prior", &prior));
        let d = tokens::permute(&gpu, "permute", &dims, &perm, &tx, &ty, false);
        let dacc = tokens::permute(&gpu, "permute-acc", &dims, &perm, &tx, &tacc, true);
        gpu.run(&[d, dacc]);
        let what = format!("permute {dims:?} by {perm:?}");
        assert_bits(&what, &read(&gpu, &ty), &want);
        let want_acc: Vec<f64> = prior.iter().zip(&want).map(|(&a, &b)| (a as f32 + b as f32) as f64).collect();
        assert_bits(&format!("{what}, accumulated"), &read(&gpu, &tacc), &want_acc);
    }
}

#[test]
fn attention_permutes_take_the_vec4_kernel_when_dh_allows() {
    let Some(gpu) = test_gpu() else { return };
    let kind = |dims: &[usize], perm: &[usize]| {
        let n = dims.iter().product();
        let (x, y) = (z(&gpu, "x", n), z(&gpu, "y", n));
        tokens::permute(&gpu, "p", dims, perm, &x, &y, false).kind
    };
    assert_eq!(kind(&[2, 65, 3, 3, 8], &[2, 0, 3, 1, 4]), "tokens.permute4");
    assert_eq!(kind(&[2, 3, 65, 8], &[0, 2, 1, 3]), "tokens.permute4");
    assert_eq!(kind(&[3, 7, 3, 3, 5], &[2, 0, 3, 1, 4]), "tokens.permute");
    assert_eq!(kind(&[17, 30], &[1, 0]), "tokens.permute");
}

#[test]
fn canonical_shapes_drop_unit_axes_and_merge_contiguous_ones() {
    // qkv (B, T, 3, H, dh): no two neighbouring output axes are neighbours in the input.
    assert_eq!(tokens::canonical(&[2, 5, 3, 4, 8], &[2, 0, 3, 1, 4]).len(), 5);
    // Identity: one contiguous axis. Size-1 axes vanish, then (3)(4) merge.
    assert_eq!(tokens::canonical(&[2, 3, 4], &[0, 1, 2]), vec![(24, 1)]);
    assert_eq!(tokens::canonical(&[3, 1, 4, 2], &[3, 1, 0, 2]), vec![(2, 1), (12, 2)]);
    assert_eq!(tokens::canonical(&[1, 1], &[1, 0]), vec![]);
}

#[test]
fn permute_then_inverse_is_the_identity_bit_for_bit() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(43);
    // Values a lossy path would change: signed zero, infinities, extremes, a subnormal.
    let special = [-0.0, f64::INFINITY, f64::NEG_INFINITY, f32::MAX as f64, f32::MIN_POSITIVE as f64, 1e-40];
    for (dims, perm) in permute_cases() {
        let n: usize = dims.iter().product();
        let mut x = f32s(&rng.vec(n));
        for (i, &s) in special.iter().enumerate().take(n) {
            x[(i * 7) % n] = s as f32;
        }
        let out_dims: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
        let tx = Tensor::from_slice(&gpu, "x", &[n], &x).unwrap();
        let (ty, tx2) = (z(&gpu, "y", n), z(&gpu, "x2", n));
        let inv = tokens::inverse(&perm);
        gpu.run(&[
            tokens::permute(&gpu, "fwd", &dims, &perm, &tx, &ty, false),
            tokens::permute(&gpu, "back", &out_dims, &inv, &ty, &tx2, false),
        ]);
        let back = read(&gpu, &tx2);
        for i in 0..n {
            assert_eq!(
                back[i].to_bits(),
                x[i].to_bits(),
                "round trip {dims:?} by {perm:?} at {i}: {} vs {}",
                back[i],
                x[i]
            );
        }
    }
}

#[test]
fn permute_backward_is_the_adjoint() {
    // ⟨dy, P x⟩ = ⟨P⁻¹ dy, x⟩: the inverse permute (over the output dims) is the backward.
    let mut rng = Rng(44);
    for (dims, perm) in permute_cases() {
        let n: usize = dims.iter().product();
        let (x, dy) = (rng.vec(n), rng.vec(n));
        let out_dims: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
        let dx = cpu::permute(&out_dims, &tokens::inverse(&perm), &dy);
        let (l, r) = (dot(&dy, &cpu::permute(&dims, &perm, &x)), dot(&dx, &x));
        assert!((l - r).abs() <= 1e-12 * (1.0 + l.abs()), "{dims:?} by {perm:?}: {l} vs {r}");
    }
    assert_eq!(tokens::inverse(&[2, 0, 3, 1, 4]), vec![1, 3, 0, 2, 4]);
}

#[test]
fn patchify_matches_reference() {
    let Some(gpu) = test_gpu() else { return };
    // Hand-checked: one 4x4 image 0..16 in 2x2 patches.
    let x: Vec<f64> = (0..16).map(|v| v as f64).collect();
    let want = [0., 1., 4., 5., 2., 3., 6., 7., 8., 9., 12., 13., 10., 11., 14., 15.];
    assert_eq!(cpu::patchify((1, 1, 4, 4), 2, &x), want);
    let (tx, ty) = (t(&gpu, "x", &x), z(&gpu, "y", 16));
    gpu.run(&[tokens::patchify(&gpu, "patchify", (1, 1, 4, 4), 2, &tx, &ty)]);
    assert_bits("patchify 4x4 by 2", &read(&gpu, &ty), &want);

    let mut rng = Rng(45);
    for (shape, p) in
        [((1, 3, 4, 6), 2), ((2, 3, 12, 9), 3), ((3, 2, 5, 5), 5), ((2, 1, 3, 7), 1), ((1, 3, 32, 32), 16)]
    {
        let (b, c, h, w) = shape;
        let x = vals(&mut rng, b * c * h * w);
        let (tx, ty) = (t(&gpu, "x", &x), z(&gpu, "y", x.len()));
        gpu.run(&[tokens::patchify(&gpu, "patchify", shape, p, &tx, &ty)]);
        assert_bits(&format!("patchify {shape:?} by {p}"), &read(&gpu, &ty), &cpu::patchify(shape, p, &x));
    }
}

#[test]
fn patch_rows_times_a_conv_weight_are_the_strided_convolution() {
    // The row order (c, ky, kx) is the flattening of a Conv2d(C, D, p, stride p) weight:
    // rows · Wᵀ equals the convolution, computed here straight from its definition.
    let mut rng = Rng(46);
    let ((b, c, h, w), p, d) = ((2, 3, 6, 9), 3, 4);
    let (x, wt) = (rng.vec(b * c * h * w), rng.vec(d * c * p * p));
    let rows = cpu::patchify((b, c, h, w), p, &x);
    let (ho, wo, k) = (h / p, w / p, c * p * p);
    for n in 0..b {
        for oy in 0..ho {
            for ox in 0..wo {
                for o in 0..d {
                    let mut conv = 0.0;
                    for ch in 0..c {
                        for ky in 0..p {
                            for kx in 0..p {
                                conv += wt[((o * c + ch) * p + ky) * p + kx]
                                    * x[((n * c + ch) * h + oy * p + ky) * w + ox * p + kx];
                            }
                        }
                    }
                    let row = &rows[((n * ho + oy) * wo + ox) * k..][..k];
                    let lin = dot(row, &wt[o * k..(o + 1) * k]);
                    assert!((conv - lin).abs() < 1e-12, "sample {n} patch ({oy}, {ox}) out {o}: {conv} vs {lin}");
                }
            }
        }
    }
}

#[test]
fn embed_and_backward_match_reference() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(47);
    for shape in [(1, 1, 1), (2, 4, 5), (3, 7, 13), (1, 65, 3), (4, 2, 1)] {
        let (b, np, d) = shape;
        let tt = np + 1;
        let (x, cls, pos, dy, prior) = (
            vals(&mut rng, b * np * d),
            vals(&mut rng, d),
            vals(&mut rng, tt * d),
            vals(&mut rng, b * tt * d),
            vals(&mut rng, b * np * d),
        );
        let (tx, tcls, tpos, tdy) = (t(&gpu, "x", &x), t(&gpu, "cls", &cls), t(&gpu, "pos", &pos), t(&gpu, "dy", &dy));
        let (ty, tdx, tdx_acc) = (z(&gpu, "y", b * tt * d), z(&gpu, "dx", b * np * d), t(&gpu, "dx-prior", &prior));
        let (tdcls, tdpos, tdcls2, tdpos2) =
            (z(&gpu, "dcls", d), z(&gpu, "dpos", tt * d), z(&gpu, "dcls2", d), z(&gpu, "dpos2", tt * d));
        let mut ds = vec![tokens::embed(&gpu, "embed", shape, &tx, &tcls, &tpos, &ty)];
        ds.extend(tokens::embed_backward(&gpu, "embed-b", shape, &tdy, Some((&tdx, false)), &tdcls, &tdpos));
        let acc = tokens::embed_backward(&gpu, "embed-b-acc", shape, &tdy, Some((&tdx_acc, true)), &tdcls2, &tdpos2);
        assert_eq!(acc.len(), 2);
        ds.extend(acc);
        gpu.run(&ds);
        let what = format!("embed {shape:?}");
        assert_bits(&what, &read(&gpu, &ty), &cpu::embed(shape, &x, &cls, &pos));
        let (dx, dcls, dpos) = cpu::embed_backward(shape, &dy);
        assert_bits(&format!("{what} dx"), &read(&gpu, &tdx), &dx);
        let dx_acc: Vec<f64> = prior.iter().zip(&dx).map(|(&a, &g)| (a as f32 + g as f32) as f64).collect();
        assert_bits(&format!("{what} dx accumulated"), &read(&gpu, &tdx_acc), &dx_acc);
        // Sums of B ≤ 4 terms in f32.
        for (name, tdc, tdp) in [("", &tdcls, &tdpos), (" (second run)", &tdcls2, &tdpos2)] {
            assert_close(&format!("{what} dcls{name}"), &read(&gpu, tdc), &dcls, 1e-6, 1e-5);
            assert_close(&format!("{what} dpos{name}"), &read(&gpu, tdp), &dpos, 1e-6, 1e-5);
        }
    }
}

#[test]
fn embed_on_views_of_flat_buffers() {
    // Parameters and their gradients live in flat buffers: cls and pos are views of one,
    // dcls and dpos of another (two writable views of one buffer in one dispatch), and
    // dx = None gives the parameter gradients alone. dcls/dpos overwrite stale values.
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(48);
    let (b, np, d): (usize, usize, usize) = (3, 5, 7);
    let tt = np + 1;
    let align = gpu.storage_offset_alignment() as usize / 4;
    let pos_at = d.div_ceil(align) * align;
    let flat = vals(&mut rng, pos_at + tt * d);
    let (x, dy) = (vals(&mut rng, b * np * d), vals(&mut rng, b * tt * d));
    let params = t(&gpu, "params", &flat);
    let grads = t(&gpu, "grads", &vec![9.0; pos_at + tt * d]);
    let (cls, pos) = (params.slice("cls", &[d], 0), params.slice("pos", &[tt, d], pos_at));
    let (dcls, dpos) = (grads.slice("dcls", &[d], 0), grads.slice("dpos", &[tt, d], pos_at));
    let (tx, tdy, ty) = (t(&gpu, "x", &x), t(&gpu, "dy", &dy), z(&gpu, "y", b * tt * d));
    let mut ds = vec![tokens::embed(&gpu, "embed", (b, np, d), &tx, &cls, &pos, &ty)];
    let bwd = tokens::embed_backward(&gpu, "embed-b", (b, np, d), &tdy, None, &dcls, &dpos);
    assert_eq!(bwd.len(), 1, "without dx only the parameter gradients");
    ds.extend(bwd);
    gpu.run(&ds);
    assert_bits("embed on views", &read(&gpu, &ty), &cpu::embed((b, np, d), &x, &flat[..d], &flat[pos_at..]));
    let (_, want_cls, want_pos) = cpu::embed_backward((b, np, d), &dy);
    assert_close("dcls view", &read(&gpu, &dcls), &want_cls, 1e-6, 1e-5);
    assert_close("dpos view", &read(&gpu, &dpos), &want_pos, 1e-6, 1e-5);
    let g = read(&gpu, &grads);
    assert!(g[d..pos_at].iter().all(|&v| v == 9.0), "the gap between the views is untouched");
}

#[test]
fn first_token_and_backward_match_reference() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(49);
    for shape in [(1, 1, 1), (3, 7, 5), (2, 65, 3), (4, 1, 6), (1, 17, 1)] {
        let (b, tt, d) = shape;
        let (x, dy, prior) = (vals(&mut rng, b * tt * d), vals(&mut rng, b * d), vals(&mut rng, b * tt * d));
        let (tx, tdy, ty) = (t(&gpu, "x", &x), t(&gpu, "dy", &dy), z(&gpu, "y", b * d));
        // Stale values in dx: overwriting must zero rows 1.., accumulating must keep them.
        let (tdx, tdx_acc) = (t(&gpu, "dx", &vec![5.0; b * tt * d]), t(&gpu, "dx-prior", &prior));
        gpu.run(&[
            tokens::first_token(&gpu, "first", shape, &tx, &ty),
            tokens::first_token_backward(&gpu, "first-b", shape, &tdy, &tdx, false),
            tokens::first_token_backward(&gpu, "first-b-acc", shape, &tdy, &tdx_acc, true),
        ]);
        let what = format!("first token {shape:?}");
        assert_bits(&what, &read(&gpu, &ty), &cpu::first_token(shape, &x));
        let dx = cpu::first_token_backward(shape, &dy);
        assert_bits(&format!("{what} dx"), &read(&gpu, &tdx), &dx);
        let dx_acc: Vec<f64> = prior.iter().zip(&dx).map(|(&a, &g)| (a as f32 + g as f32) as f64).collect();
        assert_bits(&format!("{what} dx accumulated"), &read(&gpu, &tdx_acc), &dx_acc);
    }
}

#[test]
fn lookup_and_backward_match_reference() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(50);
    // (B, T, D, vocab), T_max = T + extra rows of pos the kernels must not touch.
    for (shape, extra) in
        [((1, 1, 1, 1), 0), ((2, 5, 3, 7), 2), ((3, 17, 9, 5), 0), ((4, 33, 2, 65), 31), ((1, 3, 1, 300), 1)]
    {
        let (b, tt, d, v) = shape;
        let tmax = tt + extra;
        // Some ids out of range (clamped to vocab - 1, forward and backward alike).
        let ids: Vec<u32> =
            (0..b * tt).map(|i| if i % 11 == 5 { (v + i) as u32 } else { rng.below(v) as u32 }).collect();
        let (table, pos, dy) = (vals(&mut rng, v * d), vals(&mut rng, tmax * d), vals(&mut rng, b * tt * d));
        let tids = Tensor::from_slice(&gpu, "ids", &[b * tt], &ids).unwrap();
        let (ttab, tpos, tdy, ty) =
            (t(&gpu, "table", &table), t(&gpu, "pos", &pos), t(&gpu, "dy", &dy), z(&gpu, "y", b * tt * d));
        let (tdtab, tdpos) = (t(&gpu, "dtable", &vec![7.0; v * d]), t(&gpu, "dpos", &vec![7.0; tmax * d]));
        // And an accumulating table gradient (the tied head wrote it first).
        let tdtab_acc = t(&gpu, "dtable-acc", &vec![7.0; v * d]);
        let mut ds = vec![tokens::lookup(&gpu, "lookup", shape, &tids, &ttab, &tpos, &ty)];
        ds.extend(tokens::lookup_backward(&gpu, "lookup-b", shape, &tids, &tdy, &tdtab, false, &tdpos));
        ds.extend(tokens::lookup_backward(&gpu, "lookup-acc", shape, &tids, &tdy, &tdtab_acc, true, &tdpos));
        gpu.run(&ds);
        let what = format!("lookup {shape:?}");
        assert_bits(&what, &read(&gpu, &ty), &cpu::lookup(shape, &ids, &table, &pos));
        let (dtable, dpos) = cpu::lookup_backward(shape, &ids, &dy);
        // Sums over up to B·T = 132 tokens in f32.
        assert_close(&format!("{what} dtable"), &read(&gpu, &tdtab), &dtable, 1e-5, 1e-4);
        let plus7: Vec<f64> = dtable.iter().map(|g| g + 7.0).collect();
        assert_close(&format!("{what} dtable accumulated"), &read(&gpu, &tdtab_acc), &plus7, 1e-5, 1e-4);
        let got_pos = read(&gpu, &tdpos);
        assert_close(&format!("{what} dpos"), &got_pos[..tt * d], &dpos, 1e-6, 1e-5);
        assert!(got_pos[tt * d..].iter().all(|&g| g == 7.0), "{what}: dpos rows T.. untouched");
    }
}

#[test]
fn backward_references_are_adjoints_of_the_forwards() {
    let mut rng = Rng(51);
    let close = |what: &str, l: f64, r: f64| assert!((l - r).abs() <= 1e-12 * (1.0 + l.abs()), "{what}: {l} vs {r}");
    // embed: (x, cls, pos) -> y is linear.
    for shape in [(1, 1, 1), (3, 4, 5), (2, 9, 2)] {
        let (b, np, d) = shape;
        let (x, cls, pos, dy) = (rng.vec(b * np * d), rng.vec(d), rng.vec((np + 1) * d), rng.vec(b * (np + 1) * d));
        let (dx, dcls, dpos) = cpu::embed_backward(shape, &dy);
        let l = dot(&dy, &cpu::embed(shape, &x, &cls, &pos));
        close(&format!("embed {shape:?}"), l, dot(&dx, &x) + dot(&dcls, &cls) + dot(&dpos, &pos));
    }
    // first token.
    for shape in [(1, 1, 1), (3, 7, 5), (2, 1, 4)] {
        let (b, tt, d) = shape;
        let (x, dy) = (rng.vec(b * tt * d), rng.vec(b * d));
        let l = dot(&dy, &cpu::first_token(shape, &x));
        close(&format!("first token {shape:?}"), l, dot(&cpu::first_token_backward(shape, &dy), &x));
    }
    // lookup: (table, pos) -> y is linear for fixed ids (out-of-range ones included); pos
    // longer than T: its rows T.. do not reach y and get no gradient.
    for shape in [(1, 1, 1, 1), (2, 5, 3, 7), (3, 6, 2, 4)] {
        let (b, tt, d, v) = shape;
        let ids: Vec<u32> = (0..b * tt).map(|_| rng.below(v + 2) as u32).collect();
        let (table, pos, dy) = (rng.vec(v * d), rng.vec((tt + 2) * d), rng.vec(b * tt * d));
        let (dtable, dpos) = cpu::lookup_backward(shape, &ids, &dy);
        let l = dot(&dy, &cpu::lookup(shape, &ids, &table, &pos));
        close(&format!("lookup {shape:?}"), l, dot(&dtable, &table) + dot(&dpos, &pos[..tt * d]));
    }
    // The same identities through central differences on one coordinate each, so the
    // adjoint test is not fooled by a forward and backward that are wrong together.
    let shape = (2, 3, 4);
    let (x, cls, pos, dy) = (rng.vec(24), rng.vec(4), rng.vec(16), rng.vec(32));
    let loss = |x: &[f64], cls: &[f64], pos: &[f64]| dot(&dy, &cpu::embed(shape, x, cls, pos));
    let (dx, dcls, dpos) = cpu::embed_backward(shape, &dy);
    let h = 1e-3;
    for i in [0, 5, 23] {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[i] += h;
        xm[i] -= h;
        close("embed fd dx", (loss(&xp, &cls, &pos) - loss(&xm, &cls, &pos)) / (2.0 * h), dx[i]);
    }
    for i in [0, 3] {
        let (mut cp, mut cm) = (cls.clone(), cls.clone());
        cp[i] += h;
        cm[i] -= h;
        close("embed fd dcls", (loss(&x, &cp, &pos) - loss(&x, &cm, &pos)) / (2.0 * h), dcls[i]);
    }
    for i in [0, 7, 15] {
        let (mut pp, mut pm) = (pos.clone(), pos.clone());
        pp[i] += h;
        pm[i] -= h;
        close("embed fd dpos", (loss(&x, &cls, &pp) - loss(&x, &cls, &pm)) / (2.0 * h), dpos[i]);
    }
}

#[test]
fn nan_and_inf_propagate() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(52);
    // permute (vec4 and scalar kernels): a NaN and an Inf land where the reference says.
    for (dims, perm) in [(vec![2, 3, 4, 8], vec![0, 2, 1, 3]), (vec![3, 5, 2], vec![2, 0, 1])] {
        let n: usize = dims.iter().product();
        let mut x = vals(&mut rng, n);
        x[1] = f64::NAN;
        x[n - 2] = f64::INFINITY;
        let want = cpu::permute(&dims, &perm, &x);
        let (tx, ty) = (t(&gpu, "x", &x), z(&gpu, "y", n));
        gpu.run(&[tokens::permute(&gpu, "p", &dims, &perm, &tx, &ty, false)]);
        let got = read(&gpu, &ty);
        for i in 0..n {
            assert!(
                got[i].is_nan() == want[i].is_nan() && (want[i].is_nan() || got[i] as f64 == want[i]),
                "{dims:?} at {i}"
            );
        }
        assert!(catch_unwind(|| assert_close("permute with NaN", &got, &want, 1e-5, 1e-4)).is_err());
    }
    // embed with an Inf in pos, lookup with a NaN in the table, first token with a NaN.
    let (b, np, d) = (2, 3, 4);
    let (x, cls, mut pos) = (vals(&mut rng, b * np * d), vals(&mut rng, d), vals(&mut rng, (np + 1) * d));
    pos[d + 1] = f64::INFINITY;
    let (tx, tc, tp, ty) =
        (t(&gpu, "x", &x), t(&gpu, "cls", &cls), t(&gpu, "pos", &pos), z(&gpu, "y", b * (np + 1) * d));
    let mut table = vals(&mut rng, 3 * d);
    table[d + 2] = f64::NAN;
    let ids = [1u32, 0, 2, 1];
    let tids = Tensor::from_slice(&gpu, "ids", &[4], &ids).unwrap();
    let lpos = vals(&mut rng, 4 * d);
    let (ttab, tlp, tl) = (t(&gpu, "table", &table), t(&gpu, "lpos", &lpos), z(&gpu, "yl", 4 * d));
    let tf = z(&gpu, "first", b * d);
    gpu.run(&[
        tokens::embed(&gpu, "embed", (b, np, d), &tx, &tc, &tp, &ty),
        tokens::lookup(&gpu, "lookup", (1, 4, d, 3), &tids, &ttab, &tlp, &tl),
        tokens::first_token(&gpu, "first", (b, np + 1, d), &ty, &tf),
    ]);
    let y = read(&gpu, &ty);
    assert!(y[d + 1].is_infinite() && y[(np + 1) * d + d + 1].is_infinite(), "Inf in pos reaches every sample");
    assert!(catch_unwind(|| assert_close("embed with Inf", &y, &cpu::embed((b, np, d), &x, &cls, &pos), 1e-5, 1e-4))
        .is_err());
    let yl = read(&gpu, &tl);
    assert!(yl[2].is_nan() && yl[3 * d + 2].is_nan(), "NaN row reaches both tokens with id 1");
    assert_eq!(yl.iter().filter(|v| v.is_nan()).count(), 2);
    let want_l = cpu::lookup((1, 4, d, 3), &ids, &table, &lpos);
    assert!(catch_unwind(|| assert_close("lookup with NaN", &yl, &want_l, 1e-5, 1e-4)).is_err());
    let mut y_nan = y.clone();
    y_nan[0] = f32::NAN;
    let tyn = Tensor::from_slice(&gpu, "y-nan", &[y.len()], &y_nan).unwrap();
    gpu.run(&[tokens::first_token(&gpu, "first-nan", (b, np + 1, d), &tyn, &tf)]);
    assert!(read(&gpu, &tf)[0].is_nan());
}

#[test]
fn bad_shapes_panic_at_plan_time_naming_the_problem() {
    // The checks the builders run first, without a device.
    let msg = panic_message(|| {
        tokens::patch_grid("stem", (5, 8), 2);
    });
    assert!(msg.contains("stem") && msg.contains("5x8") && msg.contains("multiples of p"), "{msg}");
    for (dims, perm, says) in [
        (vec![2, 3, 4], vec![0, 0, 1], "twice"),
        (vec![2, 3, 4], vec![0, 1], "has 2 entries"),
        (vec![2, 3], vec![0, 2], "names axis 2"),
        (vec![1; 7], (0..7).collect(), "1 to 6"),
    ] {
        let msg = panic_message(|| tokens::check_perm("heads", &dims, &perm));
        assert!(msg.contains("heads") && msg.contains(says), "{dims:?} by {perm:?}: {msg}");
    }
    let msg = panic_message(|| {
        tokens::inverse(&[1, 1]);
    });
    assert!(msg.contains("not a permutation"), "{msg}");
    // The builders themselves, with a device.
    let Some(gpu) = test_gpu() else { return };
    let (x, y) = (z(&gpu, "x", 40), z(&gpu, "y", 40));
    let msg = panic_message(|| {
        tokens::patchify(&gpu, "stem", (1, 1, 5, 8), 2, &x, &y);
    });
    assert!(msg.contains("multiples of p"), "{msg}");
    let msg = panic_message(|| {
        tokens::permute(&gpu, "heads", &[5, 8], &[1, 1], &x, &y, false);
    });
    assert!(msg.contains("not a permutation"), "{msg}");
    let msg = panic_message(|| {
        tokens::permute(&gpu, "heads", &[5, 9], &[1, 0], &x, &y, false);
    });
    assert!(msg.contains("`x` has 40 elements") && msg.contains("45"), "{msg}");
}
