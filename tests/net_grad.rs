//! Whole-network gradient check on the GPU: for every parameter tensor of a small network
//! that uses every op (conv with stride and padding, BatchNorm with ReLU, a residual block
//! with a projection and one with identity, max-pool, global average pool, linear), the
//! backward pass's gradient along a random direction must match the central difference of
//! the GPU forward loss. Directional derivatives of the scalar loss keep f32 noise small.

mod common;
use common::{check_net_gradients, Rng};
use cuttle::gpu::{test_gpu, Gpu};
use cuttle::nn::{Graph, Net};

fn tiny_graph() -> Graph {
    let mut g = Graph::new("tiny", [3, 8, 8], 5);
    let x = g.conv("conv1", Graph::INPUT, 4, 3, 1, 1);
    let x = g.batchnorm_relu("bn1", x);
    // A downsampling block with a projection shortcut: bn2 + add + relu fuse.
    let h = g.conv("b1.conv1", x, 6, 3, 2, 1);
    let h = g.batchnorm_relu("b1.bn1", h);
    let h = g.conv("b1.conv2", h, 6, 3, 1, 1);
    let s = g.conv("b1.shortcut.0", x, 6, 1, 2, 0);
    let s = g.batchnorm("b1.shortcut.1", s);
    let h = g.batchnorm("b1.bn2", h);
    let h = g.add("b1.add", h, s);
    let x = g.relu("b1.relu", h);
    // An identity block.
    let h = g.conv("b2.conv1", x, 6, 3, 1, 1);
    let h = g.batchnorm_relu("b2.bn1", h);
    let h = g.conv("b2.conv2", h, 6, 3, 1, 1);
    let h = g.batchnorm("b2.bn2", h);
    let h = g.add("b2.add", h, x);
    let x = g.relu("b2.relu", h);
    let x = g.max_pool2("pool", x);
    // BatchNorm + add without a ReLU (fused residual only).
    let h = g.conv("b3.conv", x, 6, 3, 1, 1);
    let h = g.batchnorm("b3.bn", h);
    let x = g.add("b3.add", h, x);
    let x = g.global_avg_pool("gap", x);
    // A standalone ReLU and add: fc1's output has two readers, so nothing fuses.
    let a = g.linear("fc1", x, 7);
    let r = g.relu("relu2", a);
    let x = g.add("skip", a, r);
    g.linear("fc2", x, 5);
    g
}

/// The planner fuses exactly the BatchNorm + add + ReLU patterns of `tiny_graph`.
#[test]
fn planner_fuses_batchnorm_epilogues() {
    use cuttle::nn::layers::Epilogue;
    let g = tiny_graph();
    let units = cuttle::nn::net::units(&g);
    let fused: Vec<(&str, Epilogue)> = units
        .iter()
        .filter(|u| u.epilogue != Epilogue::default())
        .map(|u| (g.nodes[u.node].name.as_str(), u.epilogue))
        .collect();
    let (relu, both, residual) = (
        Epilogue { residual: false, relu: true },
        Epilogue { residual: true, relu: true },
        Epilogue { residual: true, relu: false },
    );
    assert_eq!(
        fused,
        vec![
            ("bn1", relu),
            ("b1.bn1", relu),
            ("b1.bn2", both),
            ("b2.bn1", relu),
            ("b2.bn2", both),
            ("b3.bn", residual)
        ]
    );
    // 28 nodes: 8 absorbed by fusion (5 ReLUs, 3 adds).
    assert_eq!((g.nodes.len(), units.len()), (28, 20));
}

fn check_graph(gpu: &Gpu, graph: Graph, batch: usize, seed: u64) {
    let mut rng = Rng(seed);
    let classes = graph.classes;
    let net = Net::new(gpu, graph, batch).unwrap();
    net.params.initialise(gpu, seed);
    check_net_gradients(gpu, net, classes, &mut rng, 3e-4);
}

#[test]
fn every_parameter_gradient_matches_finite_differences() {
    let Some(gpu) = test_gpu() else { return };
    check_graph(&gpu, tiny_graph(), 3, 21);
}

#[test]
fn small_cnn_gradient_matches_finite_differences() {
    let Some(gpu) = test_gpu() else { return };
    let g = cuttle::nn::models::model_by_name("cnn", [1, 12, 12], 10).unwrap();
    check_graph(&gpu, g, 4, 22);
}
