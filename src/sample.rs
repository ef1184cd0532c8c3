//! Text from a language model: the run's graph planned again at batch 1, its weights copied
//! from the training net on the GPU, then one forward per new token. The window is the
//! last `context` tokens (nanoGPT's crop); a shorter one sits at positions 0..L and the
//! logits of position L−1 are read: causal attention keeps the unused positions after it
//! from reaching them. The next token is drawn on the host from softmax(logits / T) with a
//! seeded generator, so a seed gives the same text on the same adapter.
//!
//! Sampling reads back every token (64-256 floats·vocab); it is not a training step.

use crate::gpu::{read_f32, Gpu};
use crate::nn::{Graph, Net};
use crate::rng::SplitMix64;
use crate::train::checkpoint::Checkpoint;
use crate::{Error, Result};

pub struct Sampler {
    net: Net,
    /// Tokens per window (the model's position table).
    context: usize,
}

impl Sampler {
    /// Plans `graph` (a language model's, full-rank or factorized) at batch 1.
    pub fn new(gpu: &Gpu, graph: &Graph) -> Result<Sampler> {
        if !graph.reads_tokens() {
            return Err(Error::Config(format!("model {} is not a language model", graph.name)));
        }
        let context = graph.shape(Graph::INPUT).0[0];
        Ok(Sampler { net: Net::new(gpu, graph.clone(), 1)?, context })
    }

    /// Copies the weights of `from` (a net of the same graph, any batch size) on the GPU.
    pub fn load_weights(&mut self, gpu: &Gpu, from: &Net) {
        assert_eq!(from.graph.params, self.net.graph.params, "the sampler's graph is not the net's");
        gpu.copy(&[(&from.params.weights, &self.net.params.weights)]);
    }

    /// Writes the weights of a checkpoint of this graph (a run's or an export) into the
    /// sampler's net: what `cuttle sample` reads, with no training net built.
    pub fn load_checkpoint(&mut self, gpu: &Gpu, ck: &Checkpoint, path: &std::path::Path) -> Result<()> {
        let p = &self.net.params;
        let mut flat = vec![0.0f32; p.weights.len()];
        for stored in p.all() {
            let (spec, off) = (&stored.spec, stored.offset);
            let (shape, v) = ck.tensor(path, &spec.name)?;
            if *shape != spec.shape {
                return Err(Error::Config(format!(
                    "checkpoint {}: tensor `{}` has shape {shape:?}, the model needs {:?}",
                    path.display(),
                    spec.name,
                    spec.shape
                )));
            }
            flat[off..off + spec.len()].copy_from_slice(v);
        }
        p.weights.write(gpu, &flat);
        Ok(())
    }

    /// `n` tokens after `prompt` (an empty prompt starts from token 0). `temperature` 0
    /// takes the most likely token every time.
    pub async fn generate(
        &mut self,
        gpu: &Gpu,
        prompt: &[u32],
        n: usize,
        temperature: f32,
        seed: u64,
    ) -> Result<Vec<u32>> {
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(Error::Config(format!("--temperature must be a finite number >= 0, not {temperature}")));
        }
        let vocab = self.net.graph.classes;
        let mut rng = SplitMix64::new(seed);
        let mut all: Vec<u32> = if prompt.is_empty() { vec![0] } else { prompt.to_vec() };
        let first_new = all.len();
        let mut window = vec![0u32; self.context];
        for _ in 0..n {
            let tail = &all[all.len().saturating_sub(self.context)..];
            window[..tail.len()].copy_from_slice(tail);
            window[tail.len()..].fill(0);
            self.net.input().write(gpu, &window);
            gpu.submit(&self.net.forward_eval, None);
            let logits = read_f32(gpu, &[self.net.logits()]).await?.remove(0);
            let row = &logits[(tail.len() - 1) * vocab..tail.len() * vocab];
            all.push(draw(row, temperature, &mut rng));
        }
        Ok(all.split_off(first_new))
    }
}

/// A token from `logits` at `temperature` (0: the arg-max; ties to the lowest id).
pub fn draw(logits: &[f32], temperature: f32, rng: &mut SplitMix64) -> u32 {
    let argmax = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a))).unwrap_or(0);
    if temperature == 0.0 {
        return argmax as u32;
    }
    let mx = logits[argmax] as f64;
    let p: Vec<f64> = logits.iter().map(|&l| ((l as f64 - mx) / temperature as f64).exp()).collect();
    let mut u = rng.uniform() * p.iter().sum::<f64>();
    for (i, pi) in p.iter().enumerate() {
        if u < *pi {
            return i as u32;
        }
        u -= pi;
    }
    argmax as u32
}
