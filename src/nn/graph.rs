//! A model as data: a list of nodes in execution order over named activations, with the
//! parameters each node declares. Building a graph touches no GPU, so parameter counts,
//! shapes and FLOPs are known on any machine (`cuttle info --model NAME`); `nn::Net`
//! turns a graph into buffers and dispatches for a batch size.
//!
//! Activations are (C, H, W) per sample; the batch dimension is added by `Net`. A residual
//! connection is a BatchNorm node that adds another activation before its ReLU, so a
//! ResNet is still a straight list: the graph is a DAG in topological order.

use crate::ops::gemm::ConvShape;

/// Index of an activation in `Graph::acts`.
pub type ActId = usize;

/// A trained tensor. Names follow the PyTorch reference models (`layer2.0.conv1.weight`).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// Takes weight decay (conv and linear weights); BatchNorm γ/β and biases do not.
    pub decay: bool,
    pub init: Init,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// PyTorch's default initialisations, so a run starts where the reference's would.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// U(-1/√fan_in, 1/√fan_in): `kaiming_uniform_(a=√5)` for conv/linear weights, and the
    /// default bias init.
    UniformFanIn(usize),
    Const(f32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub weight: String,
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv {
    /// The convolution's full geometry for a batch over an input of per-sample shape
    /// (C, H, W).
    pub fn shape(&self, batch: usize, [c_in, h, w]: [usize; 3]) -> ConvShape {
        ConvShape {
            batch,
            c_in,
            h_in: h,
            w_in: w,
            c_out: self.c_out,
            kh: self.k,
            kw: self.k,
            stride: self.stride,
            pad: self.pad,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub prefix: String,
    pub channels: usize,
    pub relu: bool,
    /// Added after normalisation, before the ReLU (the end of a residual block).
    pub residual: Option<ActId>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub prefix: String,
    pub inputs: usize,
    pub outputs: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv(Conv),
    BatchNorm(BatchNorm),
    Relu,
    MaxPool2,
    GlobalAvgPool,
    Linear(Linear),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub input: ActId,
    pub output: ActId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub name: String,
    /// Per-sample shape (C, H, W) of every activation; 0 is the input.
    pub acts: Vec<[usize; 3]>,
    pub nodes: Vec<Node>,
    pub params: Vec<ParamSpec>,
    pub classes: usize,
}

impl Graph {
    pub fn new(name: &str, input: [usize; 3], classes: usize) -> Graph {
        Graph { name: name.to_string(), acts: vec![input], nodes: vec![], params: vec![], classes }
    }

    pub const INPUT: ActId = 0;

    pub fn shape(&self, a: ActId) -> [usize; 3] {
        self.acts[a]
    }

    /// The activation holding the logits: the last node's output.
    pub fn output(&self) -> ActId {
        self.nodes.last().map_or(0, |n| n.output)
    }

    fn push(&mut self, name: &str, op: Op, input: ActId, out: [usize; 3]) -> ActId {
        self.acts.push(out);
        let output = self.acts.len() - 1;
        self.nodes.push(Node { name: name.to_string(), op, input, output });
        output
    }

    fn param(&mut self, name: String, shape: Vec<usize>, decay: bool, init: Init) {
        assert!(self.params.iter().all(|p| p.name != name), "duplicate parameter {name}");
        self.params.push(ParamSpec { name, shape, decay, init });
    }

    /// k x k convolution without bias (a BatchNorm follows). `name` is the module path,
    /// e.g. `layer1.0.conv1`.
    pub fn conv(&mut self, name: &str, x: ActId, c_out: usize, k: usize, stride: usize, pad: usize) -> ActId {
        let [c_in, h, w] = self.shape(x);
        assert!(h + 2 * pad >= k && w + 2 * pad >= k, "{name}: kernel {k} larger than input {h}x{w}");
        let weight = format!("{name}.weight");
        self.param(weight.clone(), vec![c_out, c_in, k, k], true, Init::UniformFanIn(c_in * k * k));
        let out = [c_out, (h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1];
        self.push(name, Op::Conv(Conv { weight, c_in, c_out, k, stride, pad }), x, out)
    }

    pub fn batchnorm(&mut self, name: &str, x: ActId, relu: bool, residual: Option<ActId>) -> ActId {
        let shape = self.shape(x);
        if let Some(r) = residual {
            assert_eq!(self.shape(r), shape, "{name}: residual shape");
        }
        self.param(format!("{name}.weight"), vec![shape[0]], false, Init::Const(1.0));
        self.param(format!("{name}.bias"), vec![shape[0]], false, Init::Const(0.0));
        let bn = BatchNorm { prefix: name.to_string(), channels: shape[0], relu, residual };
        self.push(name, Op::BatchNorm(bn), x, shape)
    }

    pub fn relu(&mut self, name: &str, x: ActId) -> ActId {
        let s = self.shape(x);
        self.push(name, Op::Relu, x, s)
    }

    pub fn max_pool2(&mut self, name: &str, x: ActId) -> ActId {
        let [c, h, w] = self.shape(x);
        self.push(name, Op::MaxPool2, x, [c, h / 2, w / 2])
    }

    pub fn global_avg_pool(&mut self, name: &str, x: ActId) -> ActId {
        let [c, _, _] = self.shape(x);
        self.push(name, Op::GlobalAvgPool, x, [c, 1, 1])
    }

    /// y = x·Wᵀ + b over the flattened activation.
    pub fn linear(&mut self, name: &str, x: ActId, outputs: usize) -> ActId {
        let inputs: usize = self.shape(x).iter().product();
        self.param(format!("{name}.weight"), vec![outputs, inputs], true, Init::UniformFanIn(inputs));
        self.param(format!("{name}.bias"), vec![outputs], false, Init::UniformFanIn(inputs));
        self.push(name, Op::Linear(Linear { prefix: name.to_string(), inputs, outputs }), x, [outputs, 1, 1])
    }

    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.len()).sum()
    }

    /// Multiply-adds of one sample's forward pass (conv and linear layers).
    pub fn macs(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match &n.op {
                Op::Conv(c) => {
                    let [co, h, w] = self.acts[n.output];
                    co * h * w * c.c_in * c.k * c.k
                }
                Op::Linear(l) => l.inputs * l.outputs,
                _ => 0,
            })
            .sum()
    }
}
