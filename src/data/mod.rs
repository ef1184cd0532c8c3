//! Data loading: image classification data sets read from disk into memory as uint8, and
//! text for the language models (`text.rs`).
//!
//! What this is: parsers for the CIFAR-10/100 binary format (`cifar.rs`), MNIST-style IDX
//! files (`idx.rs`) and folders of JPEG/PNG images (`folder.rs`); one in-memory
//! [`Dataset`] type they all produce; a spec string (`cifar10:DIR`, ...) to pick one; and a
//! deterministic per-epoch shuffle.
//!
//! What this is not: no GPU code, no float conversion, normalization or augmentation
//! (those run on the GPU from the uint8 images), no downloading, and no streaming: every
//! split is read whole into memory (CIFAR-10 is 150 MB, MNIST 47 MB).
//!
//! Parsers never panic on bad input and never guess: a file that is missing, truncated,
//! has the wrong magic, a label out of range, or an image of the wrong size gives a
//! [`DataError`] that names the file at fault.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod cifar;
pub use cifar::cifar10_from_memory;
pub use folder::folder_from_memory;
mod folder;
mod idx;
pub mod text;
pub use text::TextData;

use crate::rng::{mix64, SplitMix64};

/// One split of an image classification data set, held in memory as uint8.
#[derive(Clone)]
pub struct Dataset {
    /// e.g. "fashion-mnist/train".
    pub name: String,
    /// (n, channels, height, width), planar (CHW per image).
    pub images: Vec<u8>,
    /// (n,), each < classes.
    pub labels: Vec<u32>,
    pub n: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    /// (classes,): the name of each label id.
    pub class_names: Vec<String>,
}

/// The training and test splits of one data set.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
}

/// The data a run trains on, borrowed: images or text. `Trainer::new` and `Session::new`
/// take either (`&splits` or `&text` convert).
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    Images(&'a Splits),
    Text(&'a TextData),
}

impl<'a> From<&'a Splits> for Source<'a> {
    fn from(s: &'a Splits) -> Source<'a> {
        Source::Images(s)
    }
}

impl<'a> From<&'a TextData> for Source<'a> {
    fn from(t: &'a TextData) -> Source<'a> {
        Source::Text(t)
    }
}

/// Which data set to load and from where, as written on a command line.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSpec {
    Cifar10(PathBuf),
    Cifar100(PathBuf),
    Folder(PathBuf),
    Mnist(PathBuf),
    FashionMnist(PathBuf),
    /// The Fashion-MNIST subset compiled into cuttle (10,000 train / 2,000 test images).
    Builtin,
    /// A UTF-8 text file, for a language model.
    Text(PathBuf),
    /// Tiny Shakespeare, compiled into cuttle: a language model's default.
    BuiltinText,
}

impl DataSpec {
    /// The file or directory it names (None for the built-in data sets).
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            DataSpec::Cifar10(p)
            | DataSpec::Cifar100(p)
            | DataSpec::Folder(p)
            | DataSpec::Mnist(p)
            | DataSpec::FashionMnist(p)
            | DataSpec::Text(p) => Some(p),
            DataSpec::Builtin | DataSpec::BuiltinText => None,
        }
    }

    /// Text, for a language model (not images).
    pub fn is_text(&self) -> bool {
        matches!(self, DataSpec::Text(_) | DataSpec::BuiltinText)
    }
}

/// A data file (or directory) that could not be read or is not what it claims to be.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}")]
pub struct DataError {
    /// The file (or directory) at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub what: String,
}

impl DataError {
    pub(crate) fn new(path: impl Into<PathBuf>, what: impl Into<String>) -> DataError {
        DataError { path: path.into(), what: what.into() }
    }

    /// An I/O error, phrased without repeating the path (the error's Display adds it).
    pub(crate) fn io(path: &Path, err: std::io::Error) -> DataError {
        let what = match err.kind() {
            std::io::ErrorKind::NotFound => "file not found".to_string(),
            _ => format!("cannot read: {err}"),
        };
        DataError::new(path, what)
    }
}

const SPEC_FORMS: &str = "expected one of builtin, cifar10:DIR, cifar100:DIR, folder:DIR, mnist:DIR, fashion-mnist:DIR, builtin-text, text:FILE";

impl FromStr for DataSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<DataSpec, String> {
        if s == "builtin" {
            return Ok(DataSpec::Builtin);
        }
        if s == "builtin-text" {
            return Ok(DataSpec::BuiltinText);
        }
        // Split at the first ':' only, so the directory itself may contain ':'
        // (a Windows drive letter, for one).
        let Some((kind, dir)) = s.split_once(':') else {
            return Err(format!("data spec {s:?} has no ':DIR'; {SPEC_FORMS}"));
        };
        if dir.is_empty() {
            return Err(format!("data spec {s:?} has an empty DIR; {SPEC_FORMS}"));
        }
        let dir = PathBuf::from(dir);
        match kind {
            "cifar10" => Ok(DataSpec::Cifar10(dir)),
            "cifar100" => Ok(DataSpec::Cifar100(dir)),
            "folder" => Ok(DataSpec::Folder(dir)),
            "mnist" => Ok(DataSpec::Mnist(dir)),
            "fashion-mnist" => Ok(DataSpec::FashionMnist(dir)),
            "text" => Ok(DataSpec::Text(dir)),
            _ => Err(format!("unknown data set kind {kind:?} in {s:?}; {SPEC_FORMS}")),
        }
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, dir) = match self {
            DataSpec::Cifar10(d) => ("cifar10", d),
            DataSpec::Cifar100(d) => ("cifar100", d),
            DataSpec::Folder(d) => ("folder", d),
            DataSpec::Mnist(d) => ("mnist", d),
            DataSpec::FashionMnist(d) => ("fashion-mnist", d),
            DataSpec::Builtin => return write!(f, "builtin"),
            DataSpec::Text(p) => ("text", p),
            DataSpec::BuiltinText => return write!(f, "builtin-text"),
        };
        write!(f, "{kind}:{}", dir.display())
    }
}

/// Loads both splits of the data set `spec` names. Every split returned has passed
/// [`Dataset::validate`].
pub fn load(spec: &DataSpec) -> Result<Splits, DataError> {
    let splits = match spec {
        DataSpec::Cifar10(dir) => cifar::load_cifar10(dir)?,
        DataSpec::Cifar100(dir) => cifar::load_cifar100(dir)?,
        DataSpec::Folder(dir) => folder::load_folder(dir)?,
        DataSpec::Mnist(dir) => idx::load_mnist(dir, idx::Flavor::Mnist)?,
        DataSpec::FashionMnist(dir) => idx::load_mnist(dir, idx::Flavor::FashionMnist)?,
        DataSpec::Builtin => idx::load_builtin()?,
        DataSpec::Text(_) | DataSpec::BuiltinText => {
            return Err(DataError::new(
                spec_dir(spec),
                "is text: only a language model (gpt-mini, gpt-char) trains on it",
            ))
        }
    };
    // The parsers check their input as they go; this is the backstop that keeps a
    // parser bug from handing the trainer an inconsistent data set.
    for split in [&splits.train, &splits.test] {
        if let Err(what) = split.validate() {
            return Err(DataError::new(spec_dir(spec), format!("{}: {what}", split.name)));
        }
    }
    Ok(splits)
}

fn spec_dir(spec: &DataSpec) -> &Path {
    match spec {
        DataSpec::Cifar10(d)
        | DataSpec::Cifar100(d)
        | DataSpec::Folder(d)
        | DataSpec::Mnist(d)
        | DataSpec::FashionMnist(d)
        | DataSpec::Text(d) => d,
        DataSpec::Builtin => Path::new("builtin"),
        DataSpec::BuiltinText => Path::new("builtin-text"),
    }
}

/// Loads the text `spec` names (`text:FILE` or `builtin-text`).
pub fn load_text(spec: &DataSpec) -> Result<TextData, DataError> {
    match spec {
        DataSpec::Text(p) => TextData::load(p),
        DataSpec::BuiltinText => TextData::builtin(),
        other => Err(DataError::new(
            spec_dir(other),
            "is images: a language model trains on text (builtin-text or text:FILE)",
        )),
    }
}

impl Dataset {
    /// Image `i` as (channels, height, width) bytes. Panics if `i >= n`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(i < self.n, "image index {i} out of range for {} ({} images)", self.name, self.n);
        let b = self.image_bytes();
        &self.images[i * b..(i + 1) * b]
    }

    /// Bytes per image: channels * height * width.
    pub fn image_bytes(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// A class-balanced subset of at most `n` images (all of them if `n >= self.n`).
    ///
    /// Picks round-robin over the classes: the first image of class 0, the first of
    /// class 1, ..., then the second of each class, and so on, skipping classes that run
    /// out; within a class images are taken in their original order. The picked images
    /// keep their original relative order, so the subset is a subsequence of `self`.
    /// Taking simply the first `n` would give one class only on class-sorted data
    /// (image folders are loaded class by class). Panics on a data set that fails
    /// [`Dataset::validate`] (a label not below `classes`).
    pub fn subset(&self, n: usize) -> Dataset {
        if n >= self.n {
            return self.clone();
        }
        let mut picked = self.round_robin(n);
        picked.sort_unstable();
        self.gather(&picked, format!("{} (class-balanced {n} of {})", self.name, self.n))
    }

    /// The same images with the classes taking turns (the first image of each class, then
    /// the second of each, ...; a class that runs out drops out), so that any prefix is
    /// as class-balanced as the data allows. The demo page shows its test images from the
    /// start of the split; on a class-sorted folder those would all be one class.
    pub fn interleaved(&self) -> Dataset {
        self.gather(&self.round_robin(self.n), self.name.clone())
    }

    /// `n` indices taken from the classes in turn, in order within each class.
    fn round_robin(&self, n: usize) -> Vec<usize> {
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.classes];
        for (i, &label) in self.labels.iter().enumerate() {
            by_class[label as usize].push(i);
        }
        let n = n.min(self.n);
        let mut picked = Vec::with_capacity(n);
        let mut round = 0;
        while picked.len() < n {
            for members in &by_class {
                if picked.len() == n {
                    break;
                }
                if let Some(&i) = members.get(round) {
                    picked.push(i);
                }
            }
            round += 1;
        }
        picked
    }

    /// The images at `picked`, in that order.
    fn gather(&self, picked: &[usize], name: String) -> Dataset {
        let b = self.image_bytes();
        let mut images = Vec::with_capacity(picked.len() * b);
        for &i in picked {
            images.extend_from_slice(&self.images[i * b..(i + 1) * b]);
        }
        Dataset {
            name,
            images,
            labels: picked.iter().map(|&i| self.labels[i]).collect(),
            n: picked.len(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            classes: self.classes,
            class_names: self.class_names.clone(),
        }
    }

    /// Per channel, the mean and (population) standard deviation of all pixel values
    /// scaled to [0, 1]. Counts byte values per channel first, so the sums are exact
    /// integers and only the last step is floating point (f64). NaN for an empty data set.
    pub fn channel_mean_std(&self) -> Vec<(f32, f32)> {
        let plane = self.height * self.width;
        let mut hist = vec![[0u64; 256]; self.channels];
        for img in self.images.chunks_exact(self.image_bytes().max(1)) {
            for (c, pixels) in img.chunks_exact(plane.max(1)).enumerate() {
                let h = &mut hist[c];
                for &p in pixels {
                    h[p as usize] += 1;
                }
            }
        }
        hist.iter()
            .map(|h| {
                let count: u64 = h.iter().sum();
                let sum: u64 = h.iter().enumerate().map(|(v, &k)| v as u64 * k).sum();
                let mean = sum as f64 / count as f64;
                let var = h.iter().enumerate().map(|(v, &k)| (v as f64 - mean).powi(2) * k as f64).sum::<f64>()
                    / count as f64;
                ((mean / 255.0) as f32, (var.sqrt() / 255.0) as f32)
            })
            .collect()
    }

    /// Checks that the fields agree with each other: buffer lengths match the shape,
    /// every label is below `classes`, and there is one class name per class.
    pub fn validate(&self) -> Result<(), String> {
        let expect = self
            .n
            .checked_mul(self.channels)
            .and_then(|x| x.checked_mul(self.height))
            .and_then(|x| x.checked_mul(self.width))
            .ok_or_else(|| {
                format!("shape ({}, {}, {}, {}) overflows usize", self.n, self.channels, self.height, self.width)
            })?;
        if self.images.len() != expect {
            return Err(format!(
                "images has {} bytes, expected {expect} for shape ({}, {}, {}, {})",
                self.images.len(),
                self.n,
                self.channels,
                self.height,
                self.width
            ));
        }
        if self.labels.len() != self.n {
            return Err(format!("labels has {} entries, expected n = {}", self.labels.len(), self.n));
        }
        if self.class_names.len() != self.classes {
            return Err(format!("{} class names for {} classes", self.class_names.len(), self.classes));
        }
        if let Some((i, &l)) = self.labels.iter().enumerate().find(|&(_, &l)| l as usize >= self.classes) {
            return Err(format!("label {l} of image {i} is not below classes = {}", self.classes));
        }
        Ok(())
    }
}

/// Summarizes instead of printing millions of pixels.
impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("name", &self.name)
            .field("n", &self.n)
            .field("channels", &self.channels)
            .field("height", &self.height)
            .field("width", &self.width)
            .field("classes", &self.classes)
            .field("images.len()", &self.images.len())
            .field("labels.len()", &self.labels.len())
            .finish_non_exhaustive()
    }
}

/// Deterministic per-epoch shuffle: the same (n, seed, epoch) always gives the same permutation
/// on every platform.
///
/// A Fisher-Yates shuffle driven by SplitMix64 (Steele, Lea and Flood 2014; the reference
/// generator of Vigna's xoshiro family). Only wrapping u64 and u128 integer arithmetic is
/// used, so the result depends on nothing platform-specific. The generator's starting
/// state is a hash of (seed, epoch) rather than, say, seed + epoch: SplitMix64 walks its
/// state in fixed steps, so nearby starting states would give shifted copies of one stream
/// and near-identical shuffles in consecutive epochs.
///
/// Panics if `n` exceeds `u32::MAX as usize + 1` (indices are u32).
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    assert!(n as u64 <= u32::MAX as u64 + 1, "epoch_permutation: n = {n} does not fit u32 indices");
    let mut perm: Vec<u32> = (0..n).map(|i| i as u32).collect();
    let mut rng = SplitMix64 { state: mix64(seed ^ mix64(epoch ^ 0x6a09_e667_f3bc_c909)) };
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        perm.swap(i, j);
    }
    perm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published SplitMix64 outputs for seed 1234567 (Rosetta Code, "Pseudo-random
    /// numbers/Splitmix64"), so the generator under the shuffle is the documented one.
    #[test]
    fn splitmix64_reference_values() {
        let mut rng = SplitMix64 { state: 1234567 };
        let got: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821]
        );
    }

    /// A class-sorted set of 3 classes (sizes 3, 1, 2): `interleaved` takes the classes in
    /// turn and keeps every image with its label; `subset` keeps the original order.
    #[test]
    fn interleaved_takes_classes_in_turn() {
        let labels = [0u32, 0, 0, 1, 2, 2];
        let d = Dataset {
            name: "t".into(),
            images: (0..6).collect(),
            labels: labels.to_vec(),
            n: 6,
            channels: 1,
            height: 1,
            width: 1,
            classes: 3,
            class_names: vec!["a".into(), "b".into(), "c".into()],
        };
        let i = d.interleaved();
        assert_eq!(i.images, [0, 3, 4, 1, 5, 2]);
        assert_eq!(i.labels, [0, 1, 2, 0, 2, 0]);
        assert_eq!((i.n, i.name.as_str()), (6, "t"));
        let s = d.subset(4);
        assert_eq!((s.images, s.labels), (vec![0, 1, 3, 4], vec![0, 0, 1, 2]));
    }
}
