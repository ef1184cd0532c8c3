//! A graph planned on the GPU for one batch size: the nodes grouped into layers
//! (`nn::layers`), every activation, gradient and scratch buffer allocated once, and three
//! dispatch lists (training forward, eval forward, backward) built once. A training step
//! replays them; nothing is created in the loop.
//!
//! Backward is the layers in reverse. An activation's gradient is overwritten by the
//! first layer that writes it in that order and accumulated into by the rest (a residual
//! block's input has two consumers); which is which is decided here, before any layer is
//! planned, and handed to each layer in its `Io`.

use super::graph::{ActId, Graph, Op, ParamId};
use super::layers::batchnorm::BnState;
use super::layers::{Epilogue, GradOut, Io, Layer, Steps};
use super::params::ParamStore;
use crate::gpu::{Dispatch, Gpu, GpuError, Tensor};

/// A group of graph nodes planned as one layer: `node`'s op with `epilogue` fused in,
/// reading `inputs` and writing `output` (the output of the group's last node).
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    pub node: usize,
    pub inputs: Vec<ActId>,
    pub output: ActId,
    pub epilogue: Epilogue,
}

/// Groups nodes into layers: a BatchNorm whose output only an `Add` reads takes the add's
/// other input as its residual, and a BatchNorm (or that add) whose output only a `Relu`
/// reads takes the ReLU: `relu(bn(x) + r)` is one pass forward and two backward (the
/// fused kernel ends every ResNet block). Everything else is a layer of its own.
pub fn units(g: &Graph) -> Vec<Unit> {
    let only_reader = |a: ActId, i: usize| {
        let mut c = g.consumers(a);
        c.next() == Some(i) && c.next().is_none()
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < g.nodes.len() {
        let n = &g.nodes[i];
        let mut unit = Unit { node: i, inputs: n.inputs.clone(), output: n.output, epilogue: Epilogue::default() };
        if let Op::BatchNorm(_) = n.op {
            let next = |j: usize| g.nodes.get(j).filter(|_| only_reader(unit.output, j)).map(|m| (j, m));
            if let Some((j, add)) = next(i + 1).filter(|(_, m)| m.op == Op::Add) {
                let other: Vec<ActId> = add.inputs.iter().copied().filter(|&a| a != unit.output).collect();
                if let [r] = other[..] {
                    unit.inputs.push(r);
                    unit.output = add.output;
                    unit.epilogue.residual = true;
                    i = j;
                }
            }
            let next = |j: usize| g.nodes.get(j).filter(|_| only_reader(unit.output, j));
            if let Some(relu) = next(i + 1).filter(|m| m.op == Op::Relu) {
                unit.output = relu.output;
                unit.epilogue.relu = true;
                i += 1;
            }
        }
        out.push(unit);
        i += 1;
    }
    out
}

pub struct Net {
    pub graph: Graph,
    pub batch: usize,
    pub params: ParamStore,
    /// The layers, in forward order, with the node groups they came from.
    pub layers: Vec<(Unit, Layer)>,
    /// (batch, per-sample shape) per graph activation; `None` for the activations inside
    /// a fused layer, which never exist in memory.
    acts: Vec<Option<Tensor>>,
    /// Gradient of each materialised activation but the input (sharing buffers).
    grads: Vec<Option<Tensor>>,
    /// (batch · targets per sample,) u32 labels of the current batch: one per image, or one
    /// next token per position of a language model.
    pub labels: Tensor,
    pub forward_train: Vec<Dispatch>,
    pub forward_eval: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
}

/// Gradient tensors for every activation layers read, sharing buffers where their
/// lifetimes in the backward pass do not overlap (so the memory plan holds about as many
/// gradients as are live at once, not one per activation).
///
/// Backward visits layers in reverse; at layer i it reads the gradient of i's output and
/// writes (or accumulates into) the gradients of its inputs. An activation's gradient is
/// therefore live from its first write (its consumer with the highest index) to the visit
/// of its producer, inclusive at both ends so that a layer never reads and writes the
/// same buffer. The logits' gradient is written by the loss before backward starts.
/// Greedy by start time: each gradient takes the free buffer whose size is closest to its
/// own (growing it if needed).
fn shared_gradients(gpu: &Gpu, units: &[Unit], acts: &[Option<Tensor>]) -> Result<Vec<Option<Tensor>>, GpuError> {
    let n = units.len() as i64;
    let step = |u: usize| n - 1 - u as i64; // backward time of unit u
    let mut start = vec![i64::MAX; acts.len()];
    let mut end = vec![i64::MIN; acts.len()];
    if let Some(last) = units.last() {
        start[last.output] = -1;
    }
    for (i, u) in units.iter().enumerate() {
        end[u.output] = step(i);
        for &a in &u.inputs {
            start[a] = start[a].min(step(i));
        }
    }
    let mut order: Vec<usize> = (1..acts.len()).filter(|&a| acts[a].is_some()).collect();
    for &a in &order {
        // An activation nobody consumes (none in our models) still gets its own interval.
        start[a] = start[a].min(end[a]);
    }
    order.sort_by_key(|&a| (start[a], a));
    // (size in elements, last step in use) per buffer, and each gradient's buffer.
    let mut pool: Vec<(usize, i64)> = Vec::new();
    let mut assigned = vec![usize::MAX; acts.len()];
    for &a in &order {
        let len = acts[a].as_ref().map_or(0, Tensor::len);
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
    Ok((0..acts.len())
        .map(|a| match &acts[a] {
            Some(t) if a != Graph::INPUT => Some(buffers[assigned[a]].slice(&format!("{}.grad", t.name), &t.shape, 0)),
            _ => None,
        })
        .collect())
}

/// Whether each unit's input gradients accumulate: in backward order, the first write
/// to an activation's gradient overwrites it and later ones add to it; the loss writes
/// the logits' gradient first.
fn accumulate_flags(g: &Graph, units: &[Unit]) -> Vec<Vec<bool>> {
    let mut written = vec![false; g.acts.len()];
    written[g.output()] = true;
    let mut flags = vec![vec![]; units.len()];
    for (i, u) in units.iter().enumerate().rev() {
        for &a in &u.inputs {
            flags[i].push(written[a]);
            written[a] = true;
        }
    }
    flags
}

/// Per unit, its parameters whose gradient a unit later in the graph (so earlier in the
/// backward pass) also writes: those accumulate, the first writer overwrites. Only a tied
/// embedding and head share a parameter in our models.
fn accumulate_params(g: &Graph, units: &[Unit]) -> Vec<Vec<ParamId>> {
    let mut written = std::collections::HashSet::new();
    let mut out = vec![vec![]; units.len()];
    for (i, u) in units.iter().enumerate().rev() {
        for p in g.nodes[u.node].op.params() {
            if !written.insert(p) {
                out[i].push(p);
            }
        }
    }
    out
}

impl Net {
    pub fn new(gpu: &Gpu, graph: Graph, batch: usize) -> Result<Net, GpuError> {
        assert!(batch > 0, "batch size must be positive");
        let params = ParamStore::new(gpu, &graph.params)?;
        let units = units(&graph);
        let mut acts: Vec<Option<Tensor>> = vec![None; graph.acts.len()];
        let mut materialise = |a: ActId, name: &str| -> Result<(), GpuError> {
            let shape: Vec<usize> = std::iter::once(batch).chain(graph.acts[a].0.iter().copied()).collect();
            acts[a] = Some(Tensor::zeros(gpu, name, &shape)?);
            Ok(())
        };
        materialise(Graph::INPUT, "input")?;
        for u in &units {
            materialise(u.output, &graph.nodes[u.node].name)?;
        }
        let grads = shared_gradients(gpu, &units, &acts)?;
        let labels = Tensor::zeros(gpu, "labels", &[batch * graph.targets_per_sample()])?;
        let mut net = Net {
            graph,
            batch,
            params,
            layers: vec![],
            acts,
            grads,
            labels,
            forward_train: vec![],
            forward_eval: vec![],
            backward: vec![],
        };
        net.plan(gpu, units)?;
        Ok(net)
    }

    /// One `Layer::plan` per unit; the step lists are their dispatches concatenated.
    fn plan(&mut self, gpu: &Gpu, units: Vec<Unit>) -> Result<(), GpuError> {
        let acc = accumulate_flags(&self.graph, &units);
        let acc_params = accumulate_params(&self.graph, &units);
        let mut backward: Vec<Vec<Dispatch>> = Vec::new();
        for ((u, acc), accumulate_params) in units.into_iter().zip(acc).zip(acc_params) {
            let node = &self.graph.nodes[u.node];
            let act = |a: ActId| self.acts[a].as_ref().expect("a layer reads only materialised activations");
            let dx = u.inputs.iter().zip(&acc);
            let io = Io {
                gpu,
                name: &node.name,
                batch: self.batch,
                params: &self.params,
                x: u.inputs.iter().map(|&a| (act(a), &self.graph.acts[a])).collect(),
                y: act(u.output),
                dy: self.grads[u.output].as_ref().expect("every layer output has a gradient"),
                dx: dx.map(|(&a, &accumulate)| self.grads[a].as_ref().map(|t| GradOut { t, accumulate })).collect(),
                accumulate_params,
            };
            let mut steps = Steps::default();
            let layer = Layer::plan(&io, &node.op, u.epilogue, &mut steps)?;
            self.forward_train.extend(steps.train);
            self.forward_eval.extend(steps.eval);
            backward.push(steps.backward);
            self.layers.push((u, layer));
        }
        self.backward = backward.into_iter().rev().flatten().collect();
        Ok(())
    }

    /// The input batch (batch, C, H, W), or (batch, T) token ids (u32 bits).
    pub fn input(&self) -> &Tensor {
        self.acts[Graph::INPUT].as_ref().expect("the input is materialised")
    }

    /// The logits (batch, classes) after a forward pass.
    pub fn logits(&self) -> &Tensor {
        self.acts[self.graph.output()].as_ref().expect("the output is materialised")
    }

    /// Where the loss writes d loss / d logits.
    pub fn dlogits(&self) -> &Tensor {
        self.grads[self.graph.output()].as_ref().expect("the output has a gradient")
    }

    /// The gradient tensors of every activation that has one (views of shared buffers).
    pub fn activation_gradients(&self) -> impl Iterator<Item = &Tensor> {
        self.grads.iter().flatten()
    }

    /// Every BatchNorm's running statistics, in layer order.
    pub fn bn_states(&self) -> impl Iterator<Item = &BnState> {
        self.layers.iter().filter_map(|(_, l)| match l {
            Layer::BatchNorm(b) => Some(&b.state),
            _ => None,
        })
    }
}
