//! `cuttle sample`, and the vocabulary file a language model run saves beside its
//! checkpoint (`vocab.json`: its characters in id order, for readers other than cuttle;
//! the checkpoint holds the same vocabulary, and cuttle reads it from there).

use super::load::{load_data, run_checkpoint, run_vocab, Loaded};
use crate::{cli, gpu};
use clap::Args;
use cuttle::cuttlefish::factorize::factorized_graph;
use cuttle::data::text;
use cuttle::nn::models::{self, is_language_model};
use std::path::PathBuf;

pub const VOCAB_FILE: &str = "vocab.json";

#[derive(Args, Clone, Debug)]
pub struct SampleArgs {
    /// The run directory (a gpt-* run).
    pub run: PathBuf,
    /// Characters to write after the prompt.
    #[arg(long, default_value_t = 500)]
    pub tokens: usize,
    /// Softmax temperature (0: always the most likely character).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Text to continue [default: a newline, or nothing for a text without newlines].
    #[arg(long)]
    pub prompt: Option<String>,
}

/// The vocabulary as JSON: `{"chars": "..."}` in id order.
pub fn vocab_json(vocab: &[char]) -> String {
    let chars: String = vocab.iter().collect();
    format!("{}\n", serde_json::json!({ "chars": chars }))
}

/// The vocabulary of `vocab_json`, checked sorted and distinct (as the ids assume).
pub fn parse_vocab(text: &str) -> Result<Vec<char>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let chars = v.get("chars").and_then(|c| c.as_str()).ok_or("no string `chars`")?;
    let vocab: Vec<char> = chars.chars().collect();
    if vocab.is_empty() || vocab.windows(2).any(|w| w[0] >= w[1]) {
        return Err("`chars` must be distinct characters in sorted order".into());
    }
    Ok(vocab)
}

/// `cuttle sample`: the run's network planned at batch 1 from its checkpoint (the
/// factorized one if the run switched), fed its own output. It needs neither the run's
/// text (the vocabulary is in the checkpoint) nor its training net (a run trained at a
/// large batch would otherwise tune GEMM tiles for that batch to write a few tokens).
pub fn sample(adapter: &Option<String>, a: SampleArgs) -> Result<(), cuttle::Error> {
    let c = cli::config::from_run_dir(&a.run)?.resolved();
    if !is_language_model(&c.model) {
        return Err(cuttle::Error::Config(format!("{} is not a language model run", a.run.display())));
    }
    let (ck, path) = run_checkpoint(&a.run, Some(&c.model))?;
    let vocab = match run_vocab(&ck, &a.run)? {
        Some(v) => v,
        // A run from before cuttle saved its vocabulary: its text gives it, as it did.
        None => match load_data(&c, None)?.1 {
            Loaded::Text(t) => t.vocab,
            Loaded::Images(_) => unreachable!("a language model's data is text"),
        },
    };
    let context = match ck.meta.input_shape[..] {
        [t] => Some(t),
        _ => c.context,
    };
    let mut graph = models::language_model(&c.model, context, vocab.len()).map_err(cuttle::Error::Config)?;
    let switched = ck.run(&path).ok().and_then(|r| r.cuttlefish.as_ref()).and_then(|s| s.switched.as_ref());
    if let Some(report) = switched {
        let cf = c.cuttlefish_config();
        graph = factorized_graph(&graph, &report.factors(), cf.extra_bn, cf.frobenius_decay.is_some());
    }
    let prompt_text = a.prompt.clone().unwrap_or_else(|| if vocab.contains(&'\n') { "\n" } else { "" }.into());
    let prompt = text::encode(&vocab, &prompt_text)
        .map_err(|c| cuttle::Error::Config(format!("--prompt: character {c:?} is not in the run's vocabulary")))?;
    let gpu = gpu(adapter)?;
    let mut sampler = cuttle::sample::Sampler::new(&gpu, &graph)?;
    sampler.load_checkpoint(&gpu, &ck, &path)?;
    let ids = pollster::block_on(sampler.generate(&gpu, &prompt, a.tokens, a.temperature, a.seed))?;
    println!("{prompt_text}{}", text::decode(&vocab, &ids));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_round_trips_and_bad_files_are_named() {
        let v: Vec<char> = "\n !'abcé".chars().collect();
        assert_eq!(parse_vocab(&vocab_json(&v)).unwrap(), v);
        assert!(parse_vocab("{}").unwrap_err().contains("chars"));
        assert!(parse_vocab(r#"{"chars": "ba"}"#).unwrap_err().contains("sorted"));
        assert!(parse_vocab("[").unwrap_err().contains("not JSON"));
    }
}
