//! GEMM tiles chosen by measurement (`ops::tune`): every tile matches the CPU reference
//! bit for bit the same as the shape rule's tile, the choices persist per adapter, and a
//! damaged cache file costs a re-tune, not a run.

mod common;

use common::{assert_close, Rng};
use cuttle::gpu::{read_f32, Gpu, Tensor};
use cuttle::ops::gemm::{self, cpu, ConvShape, Layout, Tile};
use cuttle::ops::tune::{self, TileCache};

fn t(gpu: &Gpu, name: &str, v: &[f64]) -> Tensor {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_slice(gpu, name, &[v.len()], &f).unwrap()
}

/// Plans and runs a mix of GEMMs (three matmul layouts with bias and accumulation,
/// conv forward, data gradient under stride 2, weight gradient with split-K) and returns
/// every output's bits, with the f64 CPU reference of each.
fn outputs(gpu: &Gpu) -> (Vec<Vec<u32>>, Vec<Vec<f64>>) {
    let mut rng = Rng(5);
    let mut ds = Vec::new();
    let (mut outs, mut wants) = (Vec::new(), Vec::new());
    for (i, layout) in [Layout::AB, Layout::AtB, Layout::ABt].into_iter().enumerate() {
        let (m, k, n) = (37 + i, 300, 70 - i);
        let (a, b, bias, c0) = (rng.vec(m * k), rng.vec(k * n), rng.vec(n), rng.vec(m * n));
        let c = t(gpu, "c", &c0);
        let (ta, tb, tbias) = (t(gpu, "a", &a), t(gpu, "b", &b), t(gpu, "bias", &bias));
        ds.extend(gemm::matmul(gpu, "mm", layout, (m, k, n), &ta, &tb, Some(&tbias), &c, false).unwrap());
        let c2 = t(gpu, "c2", &c0);
        ds.extend(gemm::matmul(gpu, "mm-acc", layout, (m, k, n), &ta, &tb, None, &c2, true).unwrap());
        outs.extend([c, c2]);
        wants.push(cpu::matmul(layout, (m, k, n), &a, &b, Some(&bias)));
        let product = cpu::matmul(layout, (m, k, n), &a, &b, None);
        wants.push(product.iter().zip(&c0).map(|(p, c)| p + c).collect());
    }
    for s in [
        ConvShape { batch: 3, c_in: 5, h_in: 12, w_in: 11, c_out: 18, kh: 3, kw: 3, stride: 2, pad: 1 },
        ConvShape { batch: 8, c_in: 3, h_in: 24, w_in: 24, c_out: 6, kh: 3, kw: 3, stride: 1, pad: 1 },
    ] {
        let (xv, wv) = (rng.vec(s.input_shape().iter().product()), rng.vec(s.weight_shape().iter().product()));
        let dyv = rng.vec(s.output_shape().iter().product());
        let (x, w, dy) = (t(gpu, "x", &xv), t(gpu, "w", &wv), t(gpu, "dy", &dyv));
        let y = Tensor::zeros(gpu, "y", &s.output_shape()).unwrap();
        let dx = Tensor::zeros(gpu, "dx", &s.input_shape()).unwrap();
        let dw = Tensor::zeros(gpu, "dw", &s.weight_shape()).unwrap();
        ds.extend(gemm::conv_forward(gpu, "fwd", &s, &x, &w, &y).unwrap());
        ds.extend(gemm::conv_backward_data(gpu, "dx", &s, &dy, &w, &dx, false).unwrap());
        ds.extend(gemm::conv_backward_weight(gpu, "dw", &s, &dy, &x, &dw, false).unwrap());
        outs.extend([y, dx, dw]);
        let (dx_want, dw_want) = cpu::conv_backward(&s, &xv, &wv, &dyv);
        wants.extend([cpu::conv_forward(&s, &xv, &wv), dx_want, dw_want]);
    }
    gpu.run(&ds);
    let refs: Vec<&Tensor> = outs.iter().collect();
    let vals = pollster::block_on(read_f32(gpu, &refs)).unwrap();
    (vals.into_iter().map(|v| v.into_iter().map(f32::to_bits).collect()).collect(), wants)
}

fn bits(gpu: &Gpu) -> Vec<Vec<u32>> {
    outputs(gpu).0
}

#[test]
fn tiles_change_no_bit_and_choices_persist() {
    let Some(gpu) = cuttle::gpu::test_gpu() else { return };
    // The shape rule's tiles against the CPU (K up to 8*24*24 = 4608: error grows like √K).
    let (by_rule, wants) = outputs(&gpu);
    for (i, (got, want)) in by_rule.iter().zip(&wants).enumerate() {
        let got: Vec<f32> = got.iter().map(|&b| f32::from_bits(b)).collect();
        assert_close(&format!("output {i}"), &got, want, 1e-5 * 4608f64.sqrt(), 1e-4);
    }

    // Every tile the adapter can run gives the same bits as the shape rule's.
    let forced = tune::attach(&gpu, TileCache::default());
    for tile in Tile::ALL.into_iter().filter(|t| t.fits(gpu.adapter())) {
        forced.force(Some(tile));
        assert!(bits(&gpu) == by_rule, "tile {tile:?} changed a result");
    }
    forced.force(None);

    // Tuning measures each shape once, keeps the choice on disk, changes no bit.
    let dir = std::env::temp_dir().join(format!("cuttle-tiles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tiles = tune::attach(&gpu, TileCache::open_in(gpu.adapter(), Some(dir.clone())));
    assert!(bits(&gpu) == by_rule, "tuned tiles changed a result");
    let measured = tiles.measured();
    assert!(measured >= 8, "every GEMM shape measured: {measured}");
    let path = tiles.path().unwrap().to_path_buf();
    assert!(path.exists(), "cache written to {}", path.display());

    // A new run on the same adapter plans from the file without measuring.
    let tiles = tune::attach(&gpu, TileCache::open_in(gpu.adapter(), Some(dir.clone())));
    assert_eq!(tiles.len(), measured);
    assert!(bits(&gpu) == by_rule);
    assert_eq!(tiles.measured(), 0, "choices came from the file");

    // A tile this adapter cannot run (hand-edited file) is dropped, not dispatched.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let tiles = json["tiles"].as_object_mut().unwrap();
    let first = tiles.keys().next().unwrap().clone();
    tiles[&first] = serde_json::json!({"wg_m": 64, "wg_n": 64, "bk": 64});
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let tiles = tune::attach(&gpu, TileCache::open_in(gpu.adapter(), Some(dir.clone())));
    assert_eq!(tiles.len(), measured - 1);

    // A damaged file is set aside: the run re-tunes and still computes the same bits.
    std::fs::write(&path, "{ not json").unwrap();
    let tiles = tune::attach(&gpu, TileCache::open_in(gpu.adapter(), Some(dir.clone())));
    assert!(tiles.is_empty());
    assert!(bits(&gpu) == by_rule);
    assert_eq!(tiles.measured(), measured);
    let _ = std::fs::remove_dir_all(&dir);
}
