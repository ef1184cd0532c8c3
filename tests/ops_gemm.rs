//! GPU matmul and implicit-GEMM convolution against the f64 references, on hand-checkable
//! cases and on seeded shapes that are not multiples of the 64x64x16 tile.

mod common;
use common::*;
use cuttle::gpu::{read_f32, test_gpu, Gpu, Tensor};
use cuttle::ops::gemm::{self, cpu, ConvShape, Layout, Tile};

fn t(gpu: &Gpu, name: &str, v: &[f64]) -> Tensor {
    Tensor::from_slice(gpu, name, &[v.len()], &f32s(v)).unwrap()
}

fn read(gpu: &Gpu, x: &Tensor) -> Vec<f32> {
    pollster::block_on(read_f32(gpu, &[x])).unwrap().remove(0)
}

#[test]
fn matmul_hand_checked() {
    let Some(gpu) = test_gpu() else { return };
    // [1 2 3; 4 5 6] · [1 0; 0 1; 1 1] + [10, 20] = [14 25; 20 31]
    let a = t(&gpu, "a", &[1., 2., 3., 4., 5., 6.]);
    let b = t(&gpu, "b", &[1., 0., 0., 1., 1., 1.]);
    let bias = t(&gpu, "bias", &[10., 20.]);
    let c = Tensor::zeros(&gpu, "c", &[4]).unwrap();
    gpu.run(&gemm::matmul(&gpu, "mm", Layout::AB, (2, 3, 2), &a, &b, Some(&bias), &c, false).unwrap());
    assert_eq!(read(&gpu, &c), vec![14., 25., 20., 31.]);
}

#[test]
fn matmul_layouts_random() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(7);
    // Covers every tile shape (square, wide 16x256, medium 32x128, tall 256x16) and split-K
    // (few tiles, K >= 2048), each with ragged edges.
    for &(m, k, n) in &[
        (1, 1, 1),
        (5, 3, 7),
        (67, 33, 70),
        (130, 17, 9),
        (3, 300, 5),
        (65, 129, 66),
        (13, 37, 300),
        (30, 20, 200),
        (300, 19, 10),
        (20, 2100, 30),
    ] {
        for layout in [Layout::AB, Layout::AtB, Layout::ABt] {
            let a = rng.vec(m * k);
            let b = rng.vec(k * n);
            let bias = rng.vec(n);
            let use_bias = layout == Layout::ABt;
            let want = cpu::matmul(layout, (m, k, n), &a, &b, use_bias.then_some(&bias[..]));
            let (ta, tb, tbias) = (t(&gpu, "a", &a), t(&gpu, "b", &b), t(&gpu, "bias", &bias));
            let c = Tensor::zeros(&gpu, "c", &[m * n]).unwrap();
            gpu.run(
                &gemm::matmul(&gpu, "mm", layout, (m, k, n), &ta, &tb, use_bias.then_some(&tbias), &c, false).unwrap(),
            );
            // K-long f32 dot products: error grows like sqrt(K)·eps.
            assert_close(&format!("{layout:?} {m}x{k}x{n}"), &read(&gpu, &c), &want, 1e-5 * (k as f64).sqrt(), 1e-4);
        }
    }
}

#[test]
fn matmul_accumulates() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(3);
    let (m, k, n) = (9, 20, 11);
    let (a, b, c0) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
    let mut want = cpu::matmul(Layout::AB, (m, k, n), &a, &b, None);
    want.iter_mut().zip(&c0).for_each(|(w, c)| *w += c);
    let c = t(&gpu, "c", &c0);
    gpu.run(
        &gemm::matmul(&gpu, "mm", Layout::AB, (m, k, n), &t(&gpu, "a", &a), &t(&gpu, "b", &b), None, &c, true).unwrap(),
    );
    assert_close("accumulate", &read(&gpu, &c), &want, 1e-5, 1e-4);
}

fn check_conv(gpu: &Gpu, s: ConvShape, seed: u64) {
    let mut rng = Rng(seed);
    let x = rng.vec(s.input_shape().iter().product());
    let w = rng.vec(s.weight_shape().iter().product());
    let y_len: usize = s.output_shape().iter().product();
    let dy = rng.vec(y_len);
    let y_want = cpu::conv_forward(&s, &x, &w);
    let (dx_want, dw_want) = cpu::conv_backward(&s, &x, &w, &dy);
    let (tx, tw, tdy) = (t(gpu, "x", &x), t(gpu, "w", &w), t(gpu, "dy", &dy));
    let ty = Tensor::zeros(gpu, "y", &[y_len]).unwrap();
    // NaN until written: every element of dx must be written, also pixels that no kernel
    // tap reaches (a 1x1 kernel under stride 2).
    let tdx = t(gpu, "dx", &vec![f64::NAN; x.len()]);
    let tdw = Tensor::zeros(gpu, "dw", &[w.len()]).unwrap();
    let mut ds = gemm::conv_forward(gpu, "fwd", &s, &tx, &tw, &ty).unwrap();
    ds.extend(gemm::conv_backward_data(gpu, "bwd-data", &s, &tdy, &tw, &tdx, false).unwrap());
    ds.extend(gemm::conv_backward_weight(gpu, "bwd-weight", &s, &tdy, &tx, &tdw, false).unwrap());
    gpu.run(&ds);
    let k_fwd = (s.c_in * s.kh * s.kw) as f64;
    let k_w = (s.batch * s.h_out() * s.w_out()) as f64;
    assert_close(&format!("conv fwd {s:?}"), &read(gpu, &ty), &y_want, 1e-5 * k_fwd.sqrt(), 1e-4);
    assert_close(&format!("conv dx {s:?}"), &read(gpu, &tdx), &dx_want, 1e-5 * k_fwd.sqrt() * 2.0, 1e-4);
    assert_close(&format!("conv dw {s:?}"), &read(gpu, &tdw), &dw_want, 1e-5 * k_w.sqrt(), 1e-4);
}

/// The data gradient accumulates into dx under stride: every phase adds, and the pixels
/// no tap reaches keep their value.
#[test]
fn conv_data_grad_accumulates_under_stride() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(77);
    for s in [
        ConvShape { batch: 2, c_in: 3, h_in: 9, w_in: 8, c_out: 4, kh: 3, kw: 3, stride: 2, pad: 1 },
        ConvShape { batch: 2, c_in: 3, h_in: 7, w_in: 7, c_out: 4, kh: 1, kw: 1, stride: 2, pad: 0 },
    ] {
        let x = rng.vec(s.input_shape().iter().product());
        let w = rng.vec(s.weight_shape().iter().product());
        let dy = rng.vec(s.output_shape().iter().product());
        let dx0 = rng.vec(x.len());
        let (mut want, _) = cpu::conv_backward(&s, &x, &w, &dy);
        want.iter_mut().zip(&dx0).for_each(|(w, d)| *w += d);
        let tdx = t(&gpu, "dx", &dx0);
        gpu.run(&gemm::conv_backward_data(&gpu, "dx", &s, &t(&gpu, "dy", &dy), &t(&gpu, "w", &w), &tdx, true).unwrap());
        assert_close(&format!("accumulated dx {s:?}"), &read(&gpu, &tdx), &want, 1e-5, 1e-4);
    }
}

#[test]
fn conv_hand_checked() {
    let Some(gpu) = test_gpu() else { return };
    // 1x1 image 3x3, 3x3 kernel of ones, pad 1: each output is the sum of its neighbourhood.
    let s = ConvShape { batch: 1, c_in: 1, h_in: 3, w_in: 3, c_out: 1, kh: 3, kw: 3, stride: 1, pad: 1 };
    let x = t(&gpu, "x", &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    let w = t(&gpu, "w", &[1.0; 9]);
    let y = Tensor::zeros(&gpu, "y", &[9]).unwrap();
    gpu.run(&gemm::conv_forward(&gpu, "c", &s, &x, &w, &y).unwrap());
    assert_eq!(read(&gpu, &y), vec![12., 21., 16., 27., 45., 33., 24., 39., 28.]);
}

#[test]
fn conv_random_shapes() {
    let Some(gpu) = test_gpu() else { return };
    let shapes = [
        ConvShape { batch: 2, c_in: 3, h_in: 7, w_in: 6, c_out: 5, kh: 3, kw: 3, stride: 1, pad: 1 },
        ConvShape { batch: 3, c_in: 4, h_in: 9, w_in: 9, c_out: 6, kh: 3, kw: 3, stride: 2, pad: 1 },
        ConvShape { batch: 2, c_in: 5, h_in: 8, w_in: 7, c_out: 3, kh: 1, kw: 1, stride: 2, pad: 0 },
        ConvShape { batch: 1, c_in: 2, h_in: 5, w_in: 5, c_out: 70, kh: 1, kw: 1, stride: 1, pad: 0 },
        ConvShape { batch: 2, c_in: 3, h_in: 6, w_in: 5, c_out: 4, kh: 2, kw: 3, stride: 1, pad: 0 },
        ConvShape { batch: 1, c_in: 17, h_in: 4, w_in: 4, c_out: 9, kh: 3, kw: 3, stride: 1, pad: 1 },
        // 16 and 32 output channels over many pixels: the wide and medium tiles; the weight
        // gradient's K = 2*15*15 = 450 per output.
        ConvShape { batch: 2, c_in: 3, h_in: 15, w_in: 15, c_out: 16, kh: 3, kw: 3, stride: 1, pad: 1 },
        ConvShape { batch: 2, c_in: 16, h_in: 13, w_in: 11, c_out: 29, kh: 3, kw: 3, stride: 1, pad: 1 },
        // A long weight-gradient K (4*24*24 = 2304) with few output tiles: split-K.
        ConvShape { batch: 4, c_in: 2, h_in: 24, w_in: 24, c_out: 5, kh: 3, kw: 3, stride: 1, pad: 1 },
        // Stride phases of the data gradient: ResNet's 3x3/2 on even sizes, taps that do
        // not divide by the stride (3x3/3, 2x2/2, 5x5/2 pad 2), phases no tap reaches
        // (1x1/3), a non-square kernel and odd sizes, more channels than one tile.
        ConvShape { batch: 2, c_in: 6, h_in: 8, w_in: 8, c_out: 7, kh: 3, kw: 3, stride: 2, pad: 1 },
        ConvShape { batch: 2, c_in: 3, h_in: 10, w_in: 11, c_out: 4, kh: 3, kw: 3, stride: 3, pad: 0 },
        ConvShape { batch: 1, c_in: 2, h_in: 9, w_in: 8, c_out: 3, kh: 2, kw: 2, stride: 2, pad: 0 },
        ConvShape { batch: 2, c_in: 3, h_in: 9, w_in: 10, c_out: 5, kh: 5, kw: 5, stride: 2, pad: 2 },
        ConvShape { batch: 2, c_in: 4, h_in: 7, w_in: 8, c_out: 6, kh: 1, kw: 1, stride: 3, pad: 0 },
        ConvShape { batch: 3, c_in: 5, h_in: 11, w_in: 7, c_out: 4, kh: 3, kw: 2, stride: 2, pad: 1 },
        ConvShape { batch: 2, c_in: 70, h_in: 6, w_in: 6, c_out: 33, kh: 3, kw: 3, stride: 2, pad: 1 },
    ];
    for (i, s) in shapes.into_iter().enumerate() {
        check_conv(&gpu, s, 100 + i as u64);
    }
}

/// One batched case: its layout, (G, M, K, N), strides, alpha, accumulate.
type Batched = (Layout, (usize, usize, usize, usize), gemm::Strides, f32, bool);

/// The batched cases: G = 1, 3, 7 over shapes that are no multiple of any tile, every
/// layout, dense and gapped strides, operands at odd first offsets, a shared A (one
/// weight for all) and a shared B, alpha (attention's 1/sqrt(d)) and accumulation.
fn batched_cases() -> Vec<Batched> {
    let mut v = Vec::new();
    for &(g, m, k, n) in &[(1, 1, 1, 1), (7, 1, 1, 1), (1, 5, 17, 9), (3, 5, 17, 9), (7, 5, 17, 9), (3, 33, 64, 65)] {
        for layout in [Layout::AB, Layout::AtB, Layout::ABt] {
            let dense = gemm::Strides::dense((m, k, n));
            let gapped = gemm::Strides { a: m * k + 3, b: k * n + 1, c: m * n + 2, first: [0; 3] };
            // Operands starting at odd elements of their buffers (attention's Q, K, V).
            let offset = gemm::Strides { first: [5, 3, 7], ..gapped };
            v.push((layout, (g, m, k, n), dense, 1.0, false));
            v.push((layout, (g, m, k, n), gemm::Strides { a: 0, ..dense }, 0.125, true));
            v.push((layout, (g, m, k, n), gemm::Strides { b: 0, ..dense }, 1.0, true));
            v.push((layout, (g, m, k, n), gapped, 1.0 / (k as f32).sqrt(), false));
            v.push((layout, (g, m, k, n), offset, 1.0, true));
        }
    }
    v
}

/// What `run_batched` returns for each case.
struct BatchedRun {
    /// The whole C buffer, gaps between products included.
    got: Vec<Vec<f32>>,
    /// Its f64 reference.
    wants: Vec<Vec<f64>>,
    /// (case, g, product g as `matmul` computes it alone), for the plain cases (alpha 1,
    /// overwriting).
    singles: Vec<(usize, usize, Vec<f32>)>,
}

/// Plans and runs every batched case in one submit.
fn run_batched(gpu: &Gpu, cases: &[Batched]) -> BatchedRun {
    let mut rng = Rng(11);
    let (mut ds, mut outs, mut wants, mut singles) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, &(layout, (g, m, k, n), st, alpha, acc)) in cases.iter().enumerate() {
        let a = rng.vec(st.first[0] + (g - 1) * st.a + m * k);
        let b = rng.vec(st.first[1] + (g - 1) * st.b + k * n);
        let c0 = rng.vec(st.first[2] + (g - 1) * st.c + m * n);
        let mut want = c0.clone();
        cpu::matmul_batched(layout, (g, m, k, n), st, alpha as f64, &a, &b, &mut want, acc);
        let (ta, tb, tc) = (t(gpu, "a", &a), t(gpu, "b", &b), t(gpu, "c", &c0));
        ds.extend(gemm::matmul_batched(gpu, "bmm", layout, (g, m, k, n), st, alpha, &ta, &tb, &tc, acc).unwrap());
        outs.push(tc);
        wants.push(want);
        if alpha == 1.0 && !acc {
            for gi in 0..g {
                let ag = t(gpu, "a1", &a[gi * st.a..][..m * k]);
                let bg = t(gpu, "b1", &b[gi * st.b..][..k * n]);
                let cg = Tensor::zeros(gpu, "c1", &[m * n]).unwrap();
                ds.extend(gemm::matmul(gpu, "mm", layout, (m, k, n), &ag, &bg, None, &cg, false).unwrap());
                singles.push((i, gi, cg));
            }
        }
    }
    gpu.run(&ds);
    let got = outs.iter().map(|c| read(gpu, c)).collect();
    let singles = singles.into_iter().map(|(i, gi, c)| (i, gi, read(gpu, &c))).collect();
    BatchedRun { got, wants, singles }
}

#[test]
fn matmul_batched_against_cpu_and_every_tile() {
    let Some(gpu) = test_gpu() else { return };
    let cases = batched_cases();
    let BatchedRun { got: by_rule, wants, singles } = run_batched(&gpu, &cases);
    for ((case, got), want) in cases.iter().zip(&by_rule).zip(&wants) {
        let k = (case.1).2 as f64;
        // K-long f32 dot products: error grows like sqrt(K)·eps.
        assert_close(&format!("batched {case:?}"), got, want, 1e-5 * k.sqrt().max(1.0), 1e-4);
    }
    // Each product sums its K as the unbatched matmul does: the same bits.
    for (i, gi, single) in &singles {
        let (_, (_, m, _, n), st, _, _) = cases[*i];
        let got = &by_rule[*i][gi * st.c..][..m * n];
        assert!(bits(got) == bits(single), "batched {:?} product {gi} differs from matmul", cases[*i]);
    }
    // Every tile the adapter runs gives the same bits as the shape rule's.
    let forced = cuttle::ops::tune::attach(&gpu, cuttle::ops::tune::TileCache::default());
    for tile in Tile::ALL.into_iter().filter(|t| t.fits(gpu.adapter())) {
        forced.force(Some(tile));
        let got = run_batched(&gpu, &cases).got;
        for (i, (g, r)) in got.iter().zip(&by_rule).enumerate() {
            assert!(bits(g) == bits(r), "tile {tile:?} changed batched {:?}", cases[i]);
        }
    }
    forced.force(None);
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
