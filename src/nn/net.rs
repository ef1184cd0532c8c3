//! A graph planned on the GPU for one batch size: every activation, gradient and scratch
//! buffer allocated once, and three dispatch lists (training forward, eval forward,
//! backward) built once. A training step replays them; nothing is created in the loop.
//!
//! Backward is the forward list in reverse, written out per op. An activation's gradient is
//! overwritten by the first consumer visited in reverse order and accumulated into by the
//! rest (a residual block's input has two consumers).

use super::graph::{Graph, Op};
use super::params::ParamStore;
use crate::gpu::{Dispatch, Gpu, GpuError, Tensor};
use crate::ops::batchnorm::{self as bn, BnShape};
use crate::ops::gemm::{self, Layout};
use crate::ops::{elementwise, pool};

/// Per-BatchNorm state kept between steps and saved with checkpoints.
pub struct BnState {
    pub prefix: String,
    /// (2C,): running mean then running variance.
    pub running: Tensor,
}

pub struct Net {
    pub graph: Graph,
    pub batch: usize,
    pub params: ParamStore,
    /// (batch, C, H, W) per graph activation; 0 is the input batch.
    pub acts: Vec<Tensor>,
    /// Gradient of each activation (the input's is never computed).
    pub grads: Vec<Tensor>,
    /// (batch,) u32 labels of the current batch.
    pub labels: Tensor,
    pub bn_states: Vec<BnState>,
    pub forward_train: Vec<Dispatch>,
    pub forward_eval: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
}

/// Gradient tensors for every activation, sharing buffers where their lifetimes in the
/// backward pass do not overlap (so the memory plan holds about as many gradients as are
/// live at once, not one per activation).
///
/// Backward visits nodes in reverse; at node i it reads the gradient of i's output and
/// writes (or accumulates into) the gradients of its input and residual input. An
/// activation's gradient is therefore live from its first write (its consumer with the
/// highest index) to the visit of its producer, inclusive at both ends so that a node never
/// reads and writes the same buffer. The logits' gradient is written by the loss before
/// backward starts. Greedy by start time: each gradient takes the free buffer whose size
/// is closest to its own (growing it if needed).
fn shared_gradients(gpu: &Gpu, g: &Graph, acts: &[Tensor]) -> Result<Vec<Tensor>, GpuError> {
    let n = g.nodes.len() as i64;
    let step = |node: usize| n - 1 - node as i64; // backward time of node `node`
    let mut start = vec![i64::MAX; g.acts.len()];
    let mut end = vec![i64::MIN; g.acts.len()];
    start[g.output()] = -1;
    for (i, node) in g.nodes.iter().enumerate() {
        end[node.output] = step(i);
        let mut first_write = |a: usize| start[a] = start[a].min(step(i));
        first_write(node.input);
        if let Op::BatchNorm(p) = &node.op {
            if let Some(r) = p.residual {
                first_write(r);
            }
        }
    }
    let mut order: Vec<usize> = (1..g.acts.len()).collect();
    for &a in &order {
        // An activation nobody consumes (none in our models) still gets its own interval.
        start[a] = start[a].min(end[a]);
    }
    order.sort_by_key(|&a| (start[a], a));
    // (size in elements, last step in use) per buffer, and each gradient's buffer.
    let mut pool: Vec<(usize, i64)> = Vec::new();
    let mut assigned = vec![usize::MAX; g.acts.len()];
    for &a in &order {
        let len = acts[a].len();
        let free =
            (0..pool.len()).filter(|&b| pool[b].1 < start[a]).min_by_key(|&b| (pool[b].0 as i64 - len as i64).abs());
        let b = free.unwrap_or_else(|| {
            pool.push((0, i64::MIN));
            pool.len() - 1
        });
        pool[b] = (pool[b].0.max(len), end[a]);
        assigned[a] = b;
    }
    let buffers: Vec<Tensor> = pool
        .iter()
        .enumerate()
        .map(|(i, &(len, _))| Tensor::zeros(gpu, &format!("gradients.{i}"), &[len]))
        .collect::<Result<_, _>>()?;
    let mut grads = vec![Tensor::zeros(gpu, "input.grad", &[1])?];
    for a in 1..g.acts.len() {
        let buf = &buffers[assigned[a]];
        grads.push(Tensor::view(&format!("{}.grad", acts[a].name), &acts[a].shape, &buf.buf, 0));
    }
    Ok(grads)
}

impl Net {
    pub fn new(gpu: &Gpu, graph: Graph, batch: usize) -> Result<Net, GpuError> {
        assert!(batch > 0, "batch size must be positive");
        let params = ParamStore::new(gpu, &graph.params)?;
        let mut acts = Vec::with_capacity(graph.acts.len());
        for (i, s) in graph.acts.iter().enumerate() {
            let shape = [batch, s[0], s[1], s[2]];
            let name = if i == 0 { "input".to_string() } else { graph.nodes[i - 1].name.clone() };
            acts.push(Tensor::zeros(gpu, &name, &shape)?);
        }
        let grads = shared_gradients(gpu, &graph, &acts)?;
        let labels = Tensor::zeros(gpu, "labels", &[batch])?;
        let mut net = Net {
            graph,
            batch,
            params,
            acts,
            grads,
            labels,
            bn_states: vec![],
            forward_train: vec![],
            forward_eval: vec![],
            backward: vec![],
        };
        net.plan(gpu)?;
        Ok(net)
    }

    fn plan(&mut self, gpu: &Gpu) -> Result<(), GpuError> {
        let b = self.batch;
        let g = &self.graph;
        // Scratch per BatchNorm: batch statistics, and the gradient before its ReLU.
        let mut bn_stats = Vec::new();
        let mut bn_pre = Vec::new();
        for n in &g.nodes {
            if let Op::BatchNorm(p) = &n.op {
                let mut running0 = vec![0.0f32; p.channels];
                running0.extend(vec![1.0f32; p.channels]);
                self.bn_states.push(BnState {
                    prefix: p.prefix.clone(),
                    running: Tensor::from_slice(gpu, &format!("{}.running", p.prefix), &[2 * p.channels], &running0)?,
                });
                bn_stats.push(Tensor::zeros(gpu, &format!("{}.stats", p.prefix), &[2 * p.channels])?);
                let pre = if p.relu || p.residual.is_some() {
                    Some(Tensor::zeros(gpu, &format!("{}.pre-grad", p.prefix), &self.acts[n.output].shape)?)
                } else {
                    None
                };
                bn_pre.push(pre);
            }
        }

        // Forward, in graph order. Only BatchNorm differs between training and eval.
        let mut bn_i = 0;
        for n in &g.nodes {
            let (x, y) = (&self.acts[n.input], &self.acts[n.output]);
            let [c, h, w] = g.shape(n.input);
            let shared: Vec<Dispatch> = match &n.op {
                Op::Conv(cv) => {
                    let s = cv.shape(b, g.shape(n.input));
                    gemm::conv_forward(gpu, &n.name, &s, x, &self.params.weight(&cv.weight), y)?
                }
                Op::BatchNorm(p) => {
                    let s = BnShape { batch: b, channels: c, hw: h * w };
                    let flags =
                        (if p.relu { bn::RELU } else { 0 }) | (if p.residual.is_some() { bn::RESIDUAL } else { 0 });
                    let gamma = self.params.weight(&format!("{}.weight", p.prefix));
                    let beta = self.params.weight(&format!("{}.bias", p.prefix));
                    let res = p.residual.map(|r| &self.acts[r]);
                    let (stats, running) = (&bn_stats[bn_i], &self.bn_states[bn_i].running);
                    self.forward_train.push(bn::stats(gpu, &n.name, s, x, stats, running));
                    self.forward_eval.push(bn::eval_stats(gpu, &n.name, s, running, stats));
                    bn_i += 1;
                    vec![bn::apply(gpu, &n.name, s, flags, x, stats, &gamma, &beta, res, y)]
                }
                Op::Relu => vec![elementwise::relu(gpu, &n.name, x, y)],
                Op::MaxPool2 => vec![pool::max_forward(gpu, &n.name, (b * c, h, w), x, y)],
                Op::GlobalAvgPool => vec![pool::avg_forward(gpu, &n.name, (b * c, h, w), x, y)],
                Op::Linear(l) => {
                    let wt = self.params.weight(&format!("{}.weight", l.prefix));
                    let bias = self.params.weight(&format!("{}.bias", l.prefix));
                    gemm::matmul(gpu, &n.name, Layout::ABt, (b, l.inputs, l.outputs), x, &wt, Some(&bias), y, false)?
                }
            };
            self.forward_eval.extend(shared.iter().cloned());
            self.forward_train.extend(shared);
        }

        // Backward, in reverse. The loss writes the logits' gradient.
        let mut written = vec![false; g.acts.len()];
        written[g.output()] = true;
        for n in g.nodes.iter().rev() {
            let (x, y, dy, dx) =
                (&self.acts[n.input], &self.acts[n.output], &self.grads[n.output], &self.grads[n.input]);
            let need_dx = n.input != Graph::INPUT;
            let acc = written[n.input];
            let [c, h, w] = g.shape(n.input);
            let name = format!("{}.backward", n.name);
            match &n.op {
                Op::Conv(cv) => {
                    let s = cv.shape(b, g.shape(n.input));
                    let wt = self.params.weight(&cv.weight);
                    self.backward.extend(gemm::conv_backward_weight(
                        gpu,
                        &name,
                        &s,
                        dy,
                        x,
                        &self.params.grad(&cv.weight),
                        false,
                    )?);
                    if need_dx {
                        self.backward.extend(gemm::conv_backward_data(gpu, &name, &s, dy, &wt, dx, acc)?);
                    }
                }
                Op::BatchNorm(p) => {
                    bn_i -= 1;
                    let s = BnShape { batch: b, channels: c, hw: h * w };
                    let pre = bn_pre[bn_i].as_ref();
                    // The gradient at the sum before the ReLU: dy masked by the output.
                    let g_pre = match pre {
                        Some(t) if p.relu => {
                            self.backward.push(elementwise::relu_backward(gpu, &name, y, dy, t, false));
                            t
                        }
                        _ => dy,
                    };
                    if let Some(r) = p.residual {
                        self.backward.push(elementwise::add(gpu, &name, g_pre, &self.grads[r], written[r]));
                        written[r] = true;
                    }
                    let gamma = self.params.weight(&format!("{}.weight", p.prefix));
                    let (dgamma, dbeta) = (
                        self.params.grad(&format!("{}.weight", p.prefix)),
                        self.params.grad(&format!("{}.bias", p.prefix)),
                    );
                    let acc = written[n.input];
                    self.backward.extend(bn::backward(
                        gpu,
                        &name,
                        s,
                        x,
                        &bn_stats[bn_i],
                        &gamma,
                        g_pre,
                        &dgamma,
                        &dbeta,
                        dx,
                        acc,
                    ));
                }
                Op::Relu => {
                    if need_dx {
                        self.backward.push(elementwise::relu_backward(gpu, &name, y, dy, dx, acc));
                    }
                }
                Op::MaxPool2 => {
                    if need_dx {
                        self.backward.push(pool::max_backward(gpu, &name, (b * c, h, w), x, dy, dx, acc));
                    }
                }
                Op::GlobalAvgPool => {
                    if need_dx {
                        self.backward.push(pool::avg_backward(gpu, &name, (b * c, h, w), dy, dx, acc));
                    }
                }
                Op::Linear(l) => {
                    let wname = format!("{}.weight", l.prefix);
                    let (dw, db) = (self.params.grad(&wname), self.params.grad(&format!("{}.bias", l.prefix)));
                    // dW (out, in) = dyᵀ (out, B) · x (B, in); db = Σ_rows dy; dx (B, in) = dy · W.
                    self.backward.extend(gemm::matmul(
                        gpu,
                        &name,
                        Layout::AtB,
                        (l.outputs, b, l.inputs),
                        dy,
                        x,
                        None,
                        &dw,
                        false,
                    )?);
                    self.backward.push(gemm::bias_grad(gpu, &name, b, dy, &db, false));
                    if need_dx {
                        let wt = self.params.weight(&wname);
                        self.backward.extend(gemm::matmul(
                            gpu,
                            &name,
                            Layout::AB,
                            (b, l.outputs, l.inputs),
                            dy,
                            &wt,
                            None,
                            dx,
                            acc,
                        )?);
                    }
                }
            }
            if need_dx {
                written[n.input] = true;
            }
        }
        Ok(())
    }

    /// The logits (batch, classes) after a forward pass.
    pub fn logits(&self) -> &Tensor {
        &self.acts[self.graph.output()]
    }

    /// Where the loss writes d loss / d logits.
    pub fn dlogits(&self) -> &Tensor {
        &self.grads[self.graph.output()]
    }
}
