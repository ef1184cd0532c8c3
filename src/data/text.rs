//! Text for the character-level language models: a UTF-8 file read whole, its character
//! vocabulary (sorted, so the same file always gives the same ids), and the usual split
//! (first 90% training, last 10% validation). Training windows are drawn on the GPU from a
//! counter hash of (seed, epoch, position) (`ops::tokens::text_windows`), mirrored here by
//! [`window_start`] for tests; nothing random is kept between steps, so a resumed run sees
//! the same windows.
//!
//! Bad input gives a [`DataError`] naming the file: not UTF-8, a control character that no
//! text has (a binary file), empty, more distinct characters than [`MAX_VOCAB`], or a split
//! shorter than one window (checked once the window length is known, [`TextData::check_context`]).

use super::DataError;
use std::path::{Path, PathBuf};

/// The most distinct characters a character model takes: the embedding backward scans
/// every token per table row (`ops::tokens::lookup_backward`), fine up to a few hundred.
pub const MAX_VOCAB: usize = 256;

/// The split point: the first 90% of the characters train, the rest validate.
pub const TRAIN_FRACTION: f64 = 0.9;

/// A text as token ids over its character vocabulary, in two splits.
#[derive(Clone, Debug, PartialEq)]
pub struct TextData {
    /// e.g. "builtin-text" or the file's path.
    pub name: String,
    /// Where it came from (for errors).
    pub path: PathBuf,
    /// Sorted distinct characters: id i is `vocab[i]`.
    pub vocab: Vec<char>,
    /// (train chars,) ids.
    pub train: Vec<u32>,
    /// (validation chars,) ids.
    pub val: Vec<u32>,
}

fn bad(path: &Path, what: impl Into<String>) -> DataError {
    DataError::new(path, what)
}

/// The file's characters, checked to be text.
fn characters<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, DataError> {
    if bytes.is_empty() {
        return Err(bad(path, "empty file: a language model needs text to learn from"));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        bad(path, format!("not UTF-8 text (invalid byte at offset {}): is it a binary file?", e.valid_up_to()))
    })?;
    if let Some((at, c)) = text.char_indices().find(|&(_, c)| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(bad(path, format!("control character U+{:04X} at byte {at}: is it a binary file?", c as u32)));
    }
    Ok(text)
}

impl TextData {
    /// A text with its own vocabulary.
    pub fn from_bytes(name: &str, path: &Path, bytes: &[u8]) -> Result<TextData, DataError> {
        let text = characters(path, bytes)?;
        // A BTreeSet iterates in order: the vocabulary comes out sorted.
        let vocab: Vec<char> = text.chars().collect::<std::collections::BTreeSet<char>>().into_iter().collect();
        if vocab.len() > MAX_VOCAB {
            return Err(bad(
                path,
                format!("{} distinct characters; the character models take at most {MAX_VOCAB}", vocab.len()),
            ));
        }
        Self::encode_split(name, path, text, vocab)
    }

    /// A text over a vocabulary fixed beforehand (a run's own, to evaluate or resume on
    /// other text): a character outside it is an error naming it.
    pub fn with_vocab(name: &str, path: &Path, bytes: &[u8], vocab: Vec<char>) -> Result<TextData, DataError> {
        let text = characters(path, bytes)?;
        Self::encode_split(name, path, text, vocab)
    }

    fn encode_split(name: &str, path: &Path, text: &str, vocab: Vec<char>) -> Result<TextData, DataError> {
        let ids = encode(&vocab, text).map_err(|c| {
            bad(path, format!("character {c:?} is not in the run's vocabulary of {} characters", vocab.len()))
        })?;
        let cut = (ids.len() as f64 * TRAIN_FRACTION) as usize;
        Ok(TextData {
            name: name.to_string(),
            path: path.to_path_buf(),
            vocab,
            train: ids[..cut].to_vec(),
            val: ids[cut..].to_vec(),
        })
    }

    /// A text file.
    pub fn load(path: &Path) -> Result<TextData, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::from_bytes(&path.display().to_string(), path, &bytes)
    }

    /// A text file over a fixed vocabulary (see `with_vocab`).
    pub fn load_with_vocab(path: &Path, vocab: Vec<char>) -> Result<TextData, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::with_vocab(&path.display().to_string(), path, &bytes, vocab)
    }

    /// Tiny Shakespeare, compiled into cuttle (`data/tinyshakespeare/`).
    pub fn builtin() -> Result<TextData, DataError> {
        let path = Path::new("builtin-text");
        let gz: &[u8] = include_bytes!("../../data/tinyshakespeare/input.txt.gz");
        let mut bytes = Vec::with_capacity(1 << 20);
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut bytes)
            .map_err(|e| bad(path, format!("the built-in text does not decompress: {e}")))?;
        Self::from_bytes("builtin-text", path, &bytes)
    }

    /// Both splits must hold at least one window of `context` tokens and its next token.
    pub fn check_context(&self, context: usize) -> Result<(), DataError> {
        for (split, ids) in [("training split (first 90%)", &self.train), ("validation split (last 10%)", &self.val)] {
            if ids.len() < context + 1 {
                return Err(bad(
                    &self.path,
                    format!(
                        "the {split} has {} characters, fewer than one window of {context} and its next character",
                        ids.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The validation split must hold `eval_batches` x `batch` distinct windows of
    /// `context` (more would overlap and then run past its end).
    pub fn check_eval_windows(&self, context: usize, eval_batches: usize, batch: usize) -> Result<(), DataError> {
        let starts = self.val.len().saturating_sub(context);
        match eval_batches.checked_mul(batch) {
            Some(w) if w <= starts => Ok(()),
            _ => Err(bad(
                &self.path,
                format!(
                    "--eval-batches {eval_batches} of --batch {batch} asks for more validation windows than the {starts} the validation split holds at context {context} (--eval-batches 1 to {})",
                    (starts / batch.max(1)).max(1)
                ),
            )),
        }
    }

    /// `s` as ids of this vocabulary; Err(the first character outside it).
    pub fn encode(&self, s: &str) -> Result<Vec<u32>, char> {
        encode(&self.vocab, s)
    }

    /// Ids as text (an id outside the vocabulary as U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        decode(&self.vocab, ids)
    }
}

/// `s` as ids of the sorted `vocab`; Err(the first character outside it).
pub fn encode(vocab: &[char], s: &str) -> Result<Vec<u32>, char> {
    s.chars().map(|c| vocab.binary_search(&c).map(|i| i as u32).map_err(|_| c)).collect()
}

/// Ids as text over `vocab` (an id outside it as U+FFFD).
pub fn decode(vocab: &[char], ids: &[u32]) -> String {
    ids.iter().map(|&i| vocab.get(i as usize).copied().unwrap_or('\u{FFFD}')).collect()
}

/// The shaders' 32-bit PCG hash (`tokens.wgsl`, `augment.wgsl`).
pub fn pcg(v: u32) -> u32 {
    let s = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277803737);
    (w >> 22) ^ w
}

/// Where training window `pos` (= step · batch + row) of epoch `epoch` starts, among
/// `starts` possible starts (split length − window − 1 + 1): what the GPU draws.
pub fn window_start(seed: u64, epoch: u32, pos: u32, starts: u32) -> u32 {
    let h = pcg(pcg(pcg(seed as u32 ^ pcg((seed >> 32) as u32)) ^ epoch) ^ pos);
    h % starts
}

/// The evaluation windows: `windows` starts spread evenly over a split of `len` tokens
/// (every window and its next token inside), the same at every evaluation. Returns the
/// stride between starts.
pub fn eval_stride(len: usize, context: usize, windows: usize) -> usize {
    let starts = len - context; // starts 0..starts keep the last target inside
    (starts / windows.max(1)).max(1)
}
