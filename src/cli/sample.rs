//! `cuttle sample` options, and the vocabulary file a language model run saves
//! (`vocab.json`: its characters in id order) so eval, sample and resume use its ids.

use super::load::{load_run, Loaded};
use clap::Args;
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
    /// Text to continue [default: a newline].
    #[arg(long, default_value = "\n")]
    pub prompt: String,
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

/// `cuttle sample`: the run's network at batch 1, fed its own output.
pub fn sample(adapter: &Option<String>, a: SampleArgs) -> Result<(), cuttle::Error> {
    let (gpu, session, data) = load_run(adapter, &a.run, None)?;
    let Loaded::Text(text) = data else {
        return Err(cuttle::Error::Config(format!("{} is not a language model run", a.run.display())));
    };
    let prompt = text
        .encode(&a.prompt)
        .map_err(|c| cuttle::Error::Config(format!("--prompt: character {c:?} is not in the run's vocabulary")))?;
    let mut sampler = cuttle::sample::Sampler::new(&gpu, &session.trainer.net.graph)?;
    sampler.load_weights(&gpu, &session.trainer.net);
    let ids = pollster::block_on(sampler.generate(&gpu, &prompt, a.tokens, a.temperature, a.seed))?;
    println!("{}{}", a.prompt, text.decode(&ids));
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
