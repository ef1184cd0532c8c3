//! Checkpoints: every tensor needed to continue a run exactly, in one safetensors file.
//!
//! Weights keep the PyTorch names of the reference models (`layer2.0.conv1.weight`;
//! factorized layers as `....conv1.0.weight` / `....conv1.1.weight`), so the file also
//! loads with `safetensors.torch.load_file`. Beside them: `momentum.<name>` (optimizer
//! state: SGD's momentum or AdamW's first moment), `second_moment.<name>` (AdamW only),
//! `<bn>.running_mean` / `<bn>.running_var`, `cuttlefish.probe` (the power
//! iteration's vectors), and two metadata strings: `cuttle`, the [`Meta`] struct as JSON
//! (`meta.rs`: model, what it reads: input shape, normalisation, class names or a
//! language model's vocabulary; position, re-warm, Cuttlefish tracker and switch, the
//! data's CRC, the report's figures so far), and `crc32`, a CRC-32 of every other metadata string
//! and of all tensor names, shapes and bytes: a one-byte edit anywhere that matters, in
//! the metadata or the tensors, fails the load. For PyTorch users the model's
//! description is repeated as plain strings
//! ([`PLAIN_KEYS`]: `model`, `input_shape`, `normalize_mean`, `normalize_std`,
//! `class_names` or `vocab_size` and `vocab`, `ranks`, each a JSON value), which
//! `safetensors.safe_open(path, "pt").metadata()` returns as a dict of strings. `cuttle`
//! itself reads only the `cuttle` record; the plain strings are derived from it.
//!
//! Saving is crash-safe at every instant ([`Checkpoint::save`]): the new file is written
//! and fsynced under a temporary name; the live file is hard-linked (or copied) to
//! `checkpoint.prev.safetensors` through a temporary of its own, so the live file stays in
//! place throughout; only then is the new file renamed over the live one and the
//! directory fsynced. A kill or a full disk at any point leaves a complete live file (the
//! old one or the new one) and at worst a stray `.tmp`, which the next save replaces.
//! [`Checkpoint::load_run`] falls back to the previous file, with a warning, when the live
//! one is missing or damaged. A truncated, corrupted or foreign file is an error naming
//! it; it never loads silently.

pub use super::meta::{check_normalize, Meta, RunFigures, RunState, PLAIN_KEYS};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE: &str = "checkpoint.safetensors";
pub const PREVIOUS: &str = "checkpoint.prev.safetensors";
/// The safetensors metadata key holding [`Meta`] as JSON.
pub const META_KEY: &str = "cuttle";
const CRC_KEY: &str = "crc32";
/// A checkpoint's contents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// name -> (shape, values)
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub meta: Meta,
}

/// The checksum stored under [`CRC_KEY`]: every metadata string but itself (by key) and
/// every tensor (by name: its shape and bytes).
fn crc(strings: &BTreeMap<&str, &str>, tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (key, value) in strings.iter().filter(|(k, _)| **k != CRC_KEY) {
        // Lengths first, so that moving bytes between a key and its value changes the sum.
        for part in [key, value] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    for (name, (shape, values)) in tensors {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(shape.len() as u64).to_le_bytes());
        for d in shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        h.update(bytemuck::cast_slice(values));
    }
    h.finalize()
}

/// A step of [`Checkpoint::save_with`] where a fault can be injected: `Write(k)` before
/// the k-th chunk of [`CHUNK`] bytes of the new file, then the fsync, the link of the
/// live file to the previous one, its rename, the rename of the new file over the live
/// one, and the directory's fsync. Tests kill the process or fail the write there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveStep {
    Write(usize),
    Sync,
    KeepPrevious,
    RotatePrevious,
    Replace,
    SyncDir,
}

/// Bytes written between two [`SaveStep::Write`] points.
pub const CHUNK: usize = 64 << 10;

/// A fault hook of [`Checkpoint::save_with`]: an error stops the save there, as a failed
/// write would.
pub type Fault<'a> = &'a mut dyn FnMut(SaveStep) -> std::io::Result<()>;

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Config(format!("checkpoint {}: {what}", path.display()))
}

impl Checkpoint {
    pub fn tensor(&self, path: &Path, name: &str) -> Result<&(Vec<usize>, Vec<f32>)> {
        self.tensors.get(name).ok_or_else(|| bad(path, format!("no tensor `{name}` (is it from another model?)")))
    }

    /// The run state; an error naming `path` for a model-only export.
    pub fn run(&self, path: &Path) -> Result<&RunState> {
        self.meta.run.as_ref().ok_or_else(|| {
            bad(path, "a model-only export (no position or optimizer state); resume from the run's checkpoint")
        })
    }

    /// Writes `dir/checkpoint.safetensors`, keeping the one it replaces as
    /// `checkpoint.prev.safetensors`; crash-safe at every instant (see the module's notes).
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        self.save_with(dir, &mut |_| Ok(()))
    }

    /// [`Checkpoint::save`] with a fault hook called before each step (tests).
    pub fn save_with(&self, dir: &Path, fault: Fault<'_>) -> Result<PathBuf> {
        let path = dir.join(FILE);
        let data = self.to_bytes(&path)?;
        let tmp = with_suffix(&path, ".tmp");
        write_synced(&tmp, &data, fault).map_err(|e| discard(&tmp, bad(&path, e)))?;
        keep_previous(&path, &dir.join(PREVIOUS), fault).map_err(|e| discard(&tmp, e))?;
        let io = |e: std::io::Error| discard(&tmp, bad(&path, e));
        fault(SaveStep::Replace).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        fault(SaveStep::SyncDir).map_err(|e| bad(&path, e))?;
        sync_dir(dir).map_err(|e| bad(&path, e))?;
        Ok(path)
    }

    /// Reads a run's checkpoint from `dir`: the live file or, when that one is missing or
    /// damaged, the previous one, with a warning saying why (the caller prints it). The
    /// error names the live file's fault when neither loads.
    pub fn load_run(dir: &Path) -> Result<(Checkpoint, PathBuf, Option<String>)> {
        let (live, prev) = (dir.join(FILE), dir.join(PREVIOUS));
        let first = match Checkpoint::load(&live) {
            Ok(ck) => return Ok((ck, live, None)),
            Err(e) => e,
        };
        if !prev.exists() {
            return Err(first);
        }
        match Checkpoint::load(&prev) {
            Ok(ck) => {
                let at =
                    ck.meta.run.as_ref().map_or(String::new(), |r| {
                        format!(" (after epoch {}, step {})", r.epochs_done, r.step_in_epoch)
                    });
                let warning = format!("warning: {first}; using the previous checkpoint {}{at}", prev.display());
                Ok((ck, prev, Some(warning)))
            }
            Err(second) => Err(bad(&live, format!("{first}; the previous one is no better: {second}"))),
        }
    }

    /// The model alone, for PyTorch: weights and BatchNorm running statistics under their
    /// module names, without optimizer or Cuttlefish state; the metadata keeps the model's
    /// description (input shape, normalisation, classes) and the factorized layers' ranks.
    pub fn model_only(&self) -> Checkpoint {
        let mut tensors: BTreeMap<_, _> = self
            .tensors
            .iter()
            .filter(|(n, _)| ["momentum.", "second_moment.", "cuttlefish."].iter().all(|p| !n.starts_with(p)))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        // A GPT's head is tied to its token embedding: cuttle stores the table once, but
        // nanoGPT's state dict names it twice, so `load_state_dict(strict=True)` wants both.
        if let Some(wte) = tensors.get("transformer.wte.weight").cloned() {
            tensors.entry("lm_head.weight".to_string()).or_insert(wte);
        }
        let meta = Meta { run: None, ranks: self.meta.factorized_ranks(), ..self.meta.clone() };
        Checkpoint { tensors, meta }
    }

    /// Writes the file through a fsynced temporary and a rename, so a crash leaves either
    /// the old file or the new one; a failed write removes its temporary.
    pub fn write_atomic(&self, path: &Path) -> Result<()> {
        let data = self.to_bytes(path)?;
        write_file_atomic(path, &data).map_err(|e| bad(path, e))
    }

    /// The safetensors bytes of this checkpoint, with its CRC-32 (`path` names it in errors;
    /// the browser downloads these bytes).
    pub fn to_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        let json = serde_json::to_string(&self.meta).map_err(|e| bad(path, format!("metadata: {e}")))?;
        let mut meta = HashMap::from([(META_KEY.to_string(), json)]);
        meta.extend(self.meta.plain());
        let sum = crc(&meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(), &self.tensors);
        meta.insert(CRC_KEY.to_string(), sum.to_string());
        let bytes: Vec<Vec<u8>> = self.tensors.values().map(|(_, v)| bytemuck::cast_slice(v).to_vec()).collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = self
            .tensors
            .iter()
            .zip(&bytes)
            .map(|((name, (shape, _)), b)| {
                let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                    .map_err(|e| bad(path, format!("tensor `{name}`: {e}")))?;
                Ok((name.clone(), view))
            })
            .collect::<Result<_>>()?;
        safetensors::serialize(views, Some(meta)).map_err(|e| bad(path, e))
    }

    /// The bytes of a checkpoint file with its checksum recomputed over what they now
    /// hold, for a deliberate edit of the metadata (the tests of the checks behind the
    /// checksum use it; so can a user who edits a record by hand and means it). Nothing
    /// else is checked or changed.
    pub fn reseal(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
        let unreadable = |e: safetensors::SafeTensorError| bad(path, format!("not a readable safetensors file ({e})"));
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(unreadable)?;
        let (_, md) = safetensors::SafeTensors::read_metadata(bytes).map_err(unreadable)?;
        let mut strings = md.metadata().clone().unwrap_or_default();
        let tensors = tensors_of(path, &st)?;
        let sum = crc(&strings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(), &tensors);
        strings.insert(CRC_KEY.to_string(), sum.to_string());
        safetensors::serialize(st.tensors(), Some(strings)).map_err(|e| bad(path, e))
    }

    /// Reads and verifies a checkpoint file.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let data = std::fs::read(path).map_err(|e| bad(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&data)
            .map_err(|e| bad(path, format!("not a readable safetensors file ({e}); truncated or corrupted?")))?;
        let (_, md) = safetensors::SafeTensors::read_metadata(&data).map_err(|e| bad(path, e))?;
        let strings = md.metadata().clone().unwrap_or_default();
        let tensors = tensors_of(path, &st)?;
        let want =
            strings.get(CRC_KEY).ok_or_else(|| bad(path, "no checksum in its metadata: not a cuttle checkpoint"))?;
        let got = crc(&strings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(), &tensors).to_string();
        if *want != got {
            return Err(bad(path, format!("checksum mismatch (stored {want}, computed {got}): the file is corrupted")));
        }
        let json = strings.get(META_KEY).ok_or_else(|| {
            bad(path, format!("no `{META_KEY}` metadata: not a cuttle checkpoint, or one from an older version"))
        })?;
        let meta: Meta =
            serde_json::from_str(json).map_err(|e| bad(path, format!("malformed `{META_KEY}` metadata: {e}")))?;
        meta.check().map_err(|e| bad(path, format!("inconsistent `{META_KEY}` metadata: {e}")))?;
        Ok(Checkpoint { tensors, meta })
    }
}

/// Tensors by name: (shape, values).
type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Every tensor of a safetensors file, by name; all must be F32.
fn tensors_of(path: &Path, st: &safetensors::SafeTensors<'_>) -> Result<Tensors> {
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(bad(path, format!("tensor `{name}` is {:?}, expected F32", view.dtype())));
        }
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    Ok(tensors)
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Writes `data` to `path` so that a kill or a full disk at any instant leaves either the
/// old file or the whole new one: written and fsynced under `path.tmp`, renamed over
/// `path`, the directory fsynced. A failed write removes its temporary.
pub fn write_file_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let r = write_synced(&tmp, data, &mut |_| Ok(())).and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r?;
    path.parent().map_or(Ok(()), |d| sync_dir(if d.as_os_str().is_empty() { Path::new(".") } else { d }))
}

/// Removes a temporary left by a failed write (best effort: the error that caused it is
/// the one to report) and passes that error on.
fn discard(tmp: &Path, e: Error) -> Error {
    let _ = std::fs::remove_file(tmp);
    e
}

/// Writes `data` to `path` (created or truncated) in [`CHUNK`]s and fsyncs it.
fn write_synced(path: &Path, data: &[u8], fault: Fault<'_>) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    for (k, chunk) in data.chunks(CHUNK).enumerate() {
        fault(SaveStep::Write(k))?;
        f.write_all(chunk)?;
    }
    fault(SaveStep::Sync)?;
    f.sync_all()
}

/// Makes `prev` a copy of the live checkpoint `live` (if there is one) without ever
/// removing `live`: a hard link (or, where the file system has none, a fsynced copy)
/// under a temporary name, renamed over `prev`.
fn keep_previous(live: &Path, prev: &Path, fault: Fault<'_>) -> Result<()> {
    if !live.exists() {
        return Ok(());
    }
    let tmp = with_suffix(prev, ".tmp");
    let io = |e: std::io::Error| discard(&tmp, bad(prev, e));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    fault(SaveStep::KeepPrevious).map_err(io)?;
    if std::fs::hard_link(live, &tmp).is_err() {
        std::fs::copy(live, &tmp).map_err(io)?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    }
    fault(SaveStep::RotatePrevious).map_err(io)?;
    std::fs::rename(&tmp, prev).map_err(io)
}

/// Fsyncs a directory so that renames in it survive a power cut. Where directories
/// cannot be opened as files (Windows) there is nothing to do.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}
