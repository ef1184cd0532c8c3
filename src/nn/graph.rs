//! A model as data: a list of nodes in execution order over activations, with the
//! parameters each node declares. Building a graph touches no GPU, so parameter counts,
//! shapes and FLOPs are known on any machine (`cuttle info --model NAME`); `nn::Net`
//! turns a graph into planned layers (`nn::layers`) for a batch size.
//!
//! Activations have any per-sample shape: `[C, H, W]` for images, `[T, D]` for token
//! matrices, `[N]` for a flat vector; the batch dimension is added by `Net`. A node reads
//! one or more activations (an `Add` reads two) and writes one, so a residual connection
//! is an `Add` node; the list is a DAG in topological order. Parameters are declared once,
//! with their PyTorch names, and referred to by `ParamId` from then on: names are for
//! files (checkpoints, exports), ids for everything else.

use crate::ops::gemm::ConvShape;

/// Index of an activation in `Graph::acts`.
pub type ActId = usize;

/// A parameter of this graph: its index in `Graph::params`, fixed when the node that
/// owns it is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(usize);

impl ParamId {
    pub fn index(self) -> usize {
        self.0
    }
}

/// The per-sample shape of an activation (no batch dimension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    pub fn len(&self) -> usize {
        self.0.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `[C, H, W]` when this is an image-shaped activation.
    pub fn image(&self) -> Option<[usize; 3]> {
        <[usize; 3]>::try_from(self.0.as_slice()).ok()
    }
    /// `[T, D]` when this is a token matrix.
    pub fn tokens(&self) -> Option<[usize; 2]> {
        <[usize; 2]>::try_from(self.0.as_slice()).ok()
    }
    fn expect_image(&self, node: &str) -> [usize; 3] {
        self.image().unwrap_or_else(|| panic!("{node}: needs a [C, H, W] input, not {:?}", self.0))
    }
}

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
    /// N(0, std²) truncated to ±2·std (resampled): timm's `trunc_normal_(std=.02)` for
    /// transformer linear weights, position embeddings and the class token.
    TruncNormal(f32),
    /// N(0, std²): nanoGPT's `normal_(std=0.02)` for its linear weights and embeddings.
    Normal(f32),
}

/// A k x k convolution without bias over `[C, H, W]` activations.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// (c_out, c_in, k, k)
    pub weight: ParamId,
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

/// BatchNorm2d over the channels of a `[C, H, W]` activation.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// The module path, which also names its running statistics in checkpoints.
    pub prefix: String,
    pub channels: usize,
    /// γ and β, (C,) each.
    pub gamma: ParamId,
    pub beta: ParamId,
}

/// y = x·Wᵀ + b, applied to each of `rows` rows of `inputs` features per sample: one row
/// per token of a `[T, D]` activation, or one row holding a whole flattened image.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub prefix: String,
    /// (outputs, inputs), or any shape of that many elements in that order (the patch
    /// embedding's (D, C, p, p) conv weight).
    pub weight: ParamId,
    /// (outputs,); none on the first factor of a factorized layer.
    pub bias: Option<ParamId>,
    pub rows: usize,
    pub inputs: usize,
    pub outputs: usize,
}

/// LayerNorm over the last axis (`dim` features) of every row: each token of a `[T, D]`
/// activation, or a whole `[D]` vector.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    /// The module path, e.g. `blocks.0.norm1`.
    pub prefix: String,
    pub dim: usize,
    /// γ and β, (dim,) each.
    pub gamma: ParamId,
    pub beta: ParamId,
    pub eps: f32,
}

/// Multi-head self-attention on a fused `[T, 3·D]` q/k/v activation (timm's `qkv` output,
/// laid out (T, 3, heads, D/heads)), giving the heads' outputs concatenated, `[T, D]`:
/// per head softmax(Q Kᵀ / √d) V. Parameter-free: the projections are linear layers.
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub heads: usize,
    /// Token i attends to tokens j ≤ i only (a language model).
    pub causal: bool,
}

/// The class token and the learned position embedding: `[P, D]` patch embeddings become
/// `[P + 1, D]` tokens, the class token first, each plus its position's embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassToken {
    /// (1, 1, D)
    pub cls: ParamId,
    /// (1, P + 1, D)
    pub pos: ParamId,
}

/// A language model's input: token ids `[T]` (u32 in the input buffer) into
/// `[T, D]` rows `table[id] + pos[t]` (nanoGPT's `wte(idx) + wpe(pos)`).
#[derive(Clone, Debug, PartialEq)]
pub struct Embed {
    /// (vocab, D); a tied head reads it too.
    pub table: ParamId,
    /// (T, D)
    pub pos: ParamId,
    pub vocab: usize,
    pub dim: usize,
}

/// How `Graph::linear_with` initialises and shapes a linear layer's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearInit {
    pub weight: Init,
    /// None: no bias.
    pub bias: Option<Init>,
    pub weight_shape: Option<Vec<usize>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv(Conv),
    BatchNorm(BatchNorm),
    Relu,
    MaxPool2,
    GlobalAvgPool,
    Linear(Linear),
    /// The sum of its two inputs (of the same shape).
    Add,
    LayerNorm(LayerNorm),
    /// GELU, the exact erf form.
    Gelu,
    Attention(Attention),
    /// `[C, H, W]` image into `[P, C·p·p]` rows of non-overlapping p x p patches (the
    /// network input only: it has no backward).
    Patchify(usize),
    ClassToken(ClassToken),
    /// `[T, D]` into its first token, `[D]` (the class token, for the head).
    FirstToken,
    Embed(Embed),
}

impl Op {
    /// The parameters this op reads (and whose gradients its backward writes).
    pub fn params(&self) -> Vec<ParamId> {
        match self {
            Op::Conv(c) => vec![c.weight],
            Op::BatchNorm(b) => vec![b.gamma, b.beta],
            Op::Linear(l) => std::iter::once(l.weight).chain(l.bias).collect(),
            Op::LayerNorm(l) => vec![l.gamma, l.beta],
            Op::ClassToken(c) => vec![c.cls, c.pos],
            Op::Embed(e) => vec![e.table, e.pos],
            Op::Relu
            | Op::MaxPool2
            | Op::GlobalAvgPool
            | Op::Add
            | Op::Gelu
            | Op::Attention(_)
            | Op::Patchify(_)
            | Op::FirstToken => vec![],
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ActId>,
    pub output: ActId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub name: String,
    /// Per-sample shape of every activation; 0 is the input.
    pub acts: Vec<Shape>,
    pub nodes: Vec<Node>,
    /// Indexed by `ParamId`, in declaration order.
    pub params: Vec<ParamSpec>,
    pub classes: usize,
    /// The first layer the input was too small for, and the sizes (see
    /// [`Graph::check_geometry`]). The builder goes on with 1-pixel outputs there, so that
    /// a model function can finish and its caller get an error instead of a panic.
    too_small: Option<String>,
}

impl Graph {
    pub fn new(name: &str, input: [usize; 3], classes: usize) -> Graph {
        Graph::with_input(name, Shape(input.to_vec()), classes)
    }

    /// A graph over inputs of any per-sample shape: `[T]` token ids for a language model.
    pub fn with_input(name: &str, input: Shape, classes: usize) -> Graph {
        Graph { name: name.to_string(), acts: vec![input], nodes: vec![], params: vec![], classes, too_small: None }
    }

    /// Whether every layer got an input it can read: an error naming the first layer whose
    /// input was too small (a kernel or pooling window larger than the image) and the
    /// sizes, or an activation with a zero dimension.
    pub fn check_geometry(&self) -> Result<(), String> {
        if let Some(e) = &self.too_small {
            return Err(e.clone());
        }
        match self.nodes.iter().find(|n| self.acts[n.output].0.contains(&0)) {
            Some(n) => {
                Err(format!("{}: its output would be {:?}, with a zero dimension", n.name, self.acts[n.output].0))
            }
            None => Ok(()),
        }
    }

    /// Records the first geometry fault (later ones follow from it).
    fn too_small(&mut self, fault: String) {
        self.too_small.get_or_insert(fault);
    }

    /// A language model reads token ids, not images.
    pub fn reads_tokens(&self) -> bool {
        self.nodes.iter().any(|n| matches!(n.op, Op::Embed(_)))
    }

    /// Targets per sample: 1 for a classifier (logits `[K]`), one per position for a
    /// language model (logits `[T, K]`, the next token at each).
    pub fn targets_per_sample(&self) -> usize {
        self.shape(self.output()).len() / self.classes.max(1)
    }

    /// The nodes that read parameter `p` (two for a tied embedding and head).
    pub fn users(&self, p: ParamId) -> impl Iterator<Item = usize> + '_ {
        self.nodes.iter().enumerate().filter(move |(_, n)| n.op.params().contains(&p)).map(|(i, _)| i)
    }

    pub const INPUT: ActId = 0;

    pub fn shape(&self, a: ActId) -> &Shape {
        &self.acts[a]
    }

    /// The activation holding the logits: the last node's output.
    pub fn output(&self) -> ActId {
        self.nodes.last().map_or(0, |n| n.output)
    }

    pub fn param(&self, id: ParamId) -> &ParamSpec {
        &self.params[id.0]
    }

    /// The parameter of this name (file formats name parameters; nothing else should).
    pub fn param_named(&self, name: &str) -> Option<ParamId> {
        self.params.iter().position(|p| p.name == name).map(ParamId)
    }

    /// The nodes that read activation `a`.
    pub fn consumers(&self, a: ActId) -> impl Iterator<Item = usize> + '_ {
        self.nodes.iter().enumerate().filter(move |(_, n)| n.inputs.contains(&a)).map(|(i, _)| i)
    }

    fn push(&mut self, name: &str, op: Op, inputs: Vec<ActId>, out: Vec<usize>) -> ActId {
        self.acts.push(Shape(out));
        let output = self.acts.len() - 1;
        self.nodes.push(Node { name: name.to_string(), op, inputs, output });
        output
    }

    fn declare(&mut self, name: String, shape: Vec<usize>, decay: bool, init: Init) -> ParamId {
        assert!(self.params.iter().all(|p| p.name != name), "duplicate parameter {name}");
        self.params.push(ParamSpec { name, shape, decay, init });
        ParamId(self.params.len() - 1)
    }

    /// Exempts a parameter from weight decay (factors under Frobenius decay).
    pub fn exempt_from_decay(&mut self, id: ParamId) {
        self.params[id.0].decay = false;
    }

    /// k x k convolution without bias (a BatchNorm follows). `name` is the module path,
    /// e.g. `layer1.0.conv1`.
    pub fn conv(&mut self, name: &str, x: ActId, c_out: usize, k: usize, stride: usize, pad: usize) -> ActId {
        let [c_in, h, w] = self.shape(x).expect_image(name);
        if h + 2 * pad < k || w + 2 * pad < k {
            self.too_small(format!(
                "{name}: a {k}x{k} convolution with padding {pad} needs an input of at least {0}x{0}, but gets {h}x{w}",
                k.saturating_sub(2 * pad).max(1)
            ));
        }
        let weight =
            self.declare(format!("{name}.weight"), vec![c_out, c_in, k, k], true, Init::UniformFanIn(c_in * k * k));
        let side = |n: usize| (n + 2 * pad).saturating_sub(k) / stride + 1;
        let out = vec![c_out, side(h), side(w)];
        self.push(name, Op::Conv(Conv { weight, c_in, c_out, k, stride, pad }), vec![x], out)
    }

    pub fn batchnorm(&mut self, name: &str, x: ActId) -> ActId {
        let [c, h, w] = self.shape(x).expect_image(name);
        let gamma = self.declare(format!("{name}.weight"), vec![c], false, Init::Const(1.0));
        let beta = self.declare(format!("{name}.bias"), vec![c], false, Init::Const(0.0));
        let bn = BatchNorm { prefix: name.to_string(), channels: c, gamma, beta };
        self.push(name, Op::BatchNorm(bn), vec![x], vec![c, h, w])
    }

    /// BatchNorm then a ReLU named `NAME.relu` (the planner fuses the two into one pass).
    pub fn batchnorm_relu(&mut self, name: &str, x: ActId) -> ActId {
        let x = self.batchnorm(name, x);
        self.relu(&format!("{name}.relu"), x)
    }

    pub fn relu(&mut self, name: &str, x: ActId) -> ActId {
        let s = self.shape(x).0.clone();
        self.push(name, Op::Relu, vec![x], s)
    }

    /// a + b, element by element (a residual connection).
    pub fn add(&mut self, name: &str, a: ActId, b: ActId) -> ActId {
        let s = self.shape(a).clone();
        assert_eq!(self.shape(b), &s, "{name}: adding activations of different shapes");
        self.push(name, Op::Add, vec![a, b], s.0)
    }

    pub fn max_pool2(&mut self, name: &str, x: ActId) -> ActId {
        let [c, h, w] = self.shape(x).expect_image(name);
        if h < 2 || w < 2 {
            self.too_small(format!("{name}: a 2x2 max-pool needs an input of at least 2x2, but gets {h}x{w}"));
        }
        self.push(name, Op::MaxPool2, vec![x], vec![c, (h / 2).max(1), (w / 2).max(1)])
    }

    pub fn global_avg_pool(&mut self, name: &str, x: ActId) -> ActId {
        let [c, _, _] = self.shape(x).expect_image(name);
        self.push(name, Op::GlobalAvgPool, vec![x], vec![c, 1, 1])
    }

    /// y = x·Wᵀ + b: per token over a `[T, D]` activation (output `[T, outputs]`), else over
    /// the flattened activation (output `[outputs]`). PyTorch's default initialisation.
    pub fn linear(&mut self, name: &str, x: ActId, outputs: usize) -> ActId {
        let fan_in = self.row_len(x);
        let init = Init::UniformFanIn(fan_in);
        self.linear_with(name, x, outputs, LinearInit { weight: init, bias: Some(init), weight_shape: None })
    }

    /// A linear layer with the given initialisation, no bias when `init.bias` is None, and
    /// optionally another weight shape of the same (outputs·inputs) elements.
    pub fn linear_with(&mut self, name: &str, x: ActId, outputs: usize, init: LinearInit) -> ActId {
        let (rows, inputs, out) = match self.shape(x).tokens() {
            Some([t, d]) => (t, d, vec![t, outputs]),
            None => (1, self.shape(x).len(), vec![outputs]),
        };
        let shape = init.weight_shape.unwrap_or_else(|| vec![outputs, inputs]);
        assert_eq!(shape.iter().product::<usize>(), outputs * inputs, "{name}: weight shape {shape:?}");
        let weight = self.declare(format!("{name}.weight"), shape, true, init.weight);
        let bias = init.bias.map(|b| self.declare(format!("{name}.bias"), vec![outputs], false, b));
        let l = Linear { prefix: name.to_string(), weight, bias, rows, inputs, outputs };
        self.push(name, Op::Linear(l), vec![x], out)
    }

    /// A linear layer without bias over another node's parameter (the language model's
    /// head, tied to the token embedding: `lm_head.weight` is `transformer.wte.weight`).
    /// `weight` is (outputs, inputs).
    pub fn linear_tied(&mut self, name: &str, x: ActId, weight: ParamId) -> ActId {
        let [t, inputs] = self.shape(x).tokens().unwrap_or_else(|| panic!("{name}: needs a [T, D] input"));
        let w = &self.params[weight.0].shape;
        assert!(w.len() == 2 && w[1] == inputs, "{name}: tied weight {w:?} does not take {inputs} features");
        let outputs = w[0];
        let l = Linear { prefix: name.to_string(), weight, bias: None, rows: t, inputs, outputs };
        self.push(name, Op::Linear(l), vec![x], vec![t, outputs])
    }

    /// Token ids `[T]` (the input) into `[T, dim]` embeddings: `table` (vocab, dim) and
    /// `pos` (T, dim), both N(0, .02²) and decayed (nanoGPT decays every 2-D tensor).
    pub fn embed(&mut self, table: &str, pos: &str, x: ActId, vocab: usize, dim: usize) -> ActId {
        let [t] = <[usize; 1]>::try_from(self.shape(x).0.as_slice())
            .unwrap_or_else(|_| panic!("{table}: needs [T] token ids, not {:?}", self.shape(x).0));
        assert_eq!(x, Graph::INPUT, "{table}: embeds the network input");
        let table_id = self.declare(table.to_string(), vec![vocab, dim], true, Init::Normal(0.02));
        let pos_id = self.declare(pos.to_string(), vec![t, dim], true, Init::Normal(0.02));
        let e = Embed { table: table_id, pos: pos_id, vocab, dim };
        let name = table.strip_suffix(".weight").unwrap_or(table);
        self.push(name, Op::Embed(e), vec![x], vec![t, dim])
    }

    /// Features per row of `x` as a linear layer sees it (a token's, or everything).
    fn row_len(&self, x: ActId) -> usize {
        match self.shape(x).tokens() {
            Some([_, d]) => d,
            None => self.shape(x).len(),
        }
    }

    /// LayerNorm over the last axis, γ = 1, β = 0 (neither decays).
    pub fn layernorm(&mut self, name: &str, x: ActId, eps: f32) -> ActId {
        let s = self.shape(x).0.clone();
        let dim = *s.last().expect("a LayerNorm input has a feature axis");
        let gamma = self.declare(format!("{name}.weight"), vec![dim], false, Init::Const(1.0));
        let beta = self.declare(format!("{name}.bias"), vec![dim], false, Init::Const(0.0));
        let ln = LayerNorm { prefix: name.to_string(), dim, gamma, beta, eps };
        self.push(name, Op::LayerNorm(ln), vec![x], s)
    }

    pub fn gelu(&mut self, name: &str, x: ActId) -> ActId {
        let s = self.shape(x).0.clone();
        self.push(name, Op::Gelu, vec![x], s)
    }

    /// Self-attention over a `[T, 3·D]` q/k/v activation with `heads` heads: `[T, D]`.
    pub fn attention(&mut self, name: &str, qkv: ActId, heads: usize, causal: bool) -> ActId {
        let [t, d3] = self.shape(qkv).tokens().unwrap_or_else(|| panic!("{name}: needs a [T, 3D] input"));
        assert!(
            d3 % 3 == 0 && heads > 0 && (d3 / 3) % heads == 0,
            "{name}: {d3} = 3·D with D divisible by {heads} heads"
        );
        self.push(name, Op::Attention(Attention { heads, causal }), vec![qkv], vec![t, d3 / 3])
    }

    /// timm's patch embedding: `NAME.proj`, a p x p stride-p convolution C → `dim` with
    /// bias, as patches → linear (weight stored (dim, C, p, p)); `[P, dim]` tokens.
    pub fn patch_embed(&mut self, name: &str, x: ActId, dim: usize, patch: usize) -> ActId {
        let [c, h, w] = self.shape(x).expect_image(name);
        assert!(patch > 0 && h % patch == 0 && w % patch == 0, "{name}: {h}x{w} images in {patch}x{patch} patches");
        let p = self.patchify(&format!("{name}.patchify"), x, patch);
        let init = Init::UniformFanIn(c * patch * patch);
        let shape = Some(vec![dim, c, patch, patch]);
        self.linear_with(
            &format!("{name}.proj"),
            p,
            dim,
            LinearInit { weight: init, bias: Some(init), weight_shape: shape },
        )
    }

    /// `[C, H, W]` into `[P, C·p·p]` patch rows (H and W multiples of p).
    pub fn patchify(&mut self, name: &str, x: ActId, patch: usize) -> ActId {
        let [c, h, w] = self.shape(x).expect_image(name);
        assert!(patch > 0 && h % patch == 0 && w % patch == 0, "{name}: {h}x{w} images in {patch}x{patch} patches");
        self.push(name, Op::Patchify(patch), vec![x], vec![(h / patch) * (w / patch), c * patch * patch])
    }

    /// Prepends the class token `cls_token` (1, 1, D) and adds `pos_embed` (1, P+1, D) (timm's
    /// names; both N(0, .02²) truncated, neither decays): `[P + 1, D]`.
    pub fn class_token(&mut self, name: &str, x: ActId) -> ActId {
        let [p, d] = self.shape(x).tokens().unwrap_or_else(|| panic!("{name}: needs [P, D] patch embeddings"));
        let cls = self.declare("cls_token".into(), vec![1, 1, d], false, Init::TruncNormal(0.02));
        let pos = self.declare("pos_embed".into(), vec![1, p + 1, d], false, Init::TruncNormal(0.02));
        self.push(name, Op::ClassToken(ClassToken { cls, pos }), vec![x], vec![p + 1, d])
    }

    /// The first token of a `[T, D]` activation: `[D]`.
    pub fn first_token(&mut self, name: &str, x: ActId) -> ActId {
        let [_, d] = self.shape(x).tokens().unwrap_or_else(|| panic!("{name}: needs a [T, D] input"));
        self.push(name, Op::FirstToken, vec![x], vec![d])
    }

    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.len()).sum()
    }

    /// Multiply-adds of one sample's forward pass (conv and linear layers).
    pub fn macs(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match &n.op {
                Op::Conv(c) => self.acts[n.output].len() * c.c_in * c.k * c.k,
                Op::Linear(l) => l.rows * l.inputs * l.outputs,
                // Q·Kᵀ and P·V: T·T·D each.
                Op::Attention(_) => 2 * self.acts[n.output].len() * self.acts[n.output].0[0],
                _ => 0,
            })
            .sum()
    }
}
