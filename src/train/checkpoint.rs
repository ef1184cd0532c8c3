//! Checkpoints: every tensor needed to continue a run exactly, in one safetensors file.
//!
//! Weights keep the PyTorch names of the reference models (`layer2.0.conv1.weight`;
//! factorized layers as `....conv1.0.weight` / `....conv1.1.weight`), so the file also
//! loads with `safetensors.torch.load_file`. Beside them: `momentum.<name>` (optimizer
//! state: SGD's momentum or AdamW's first moment), `second_moment.<name>` (AdamW only),
//! `<bn>.running_mean` / `<bn>.running_var`, `cuttlefish.probe` (the power
//! iteration's vectors), and two metadata strings: `cuttle`, the [`Meta`] struct as JSON
//! (model, position, re-warm, Cuttlefish tracker and switch), and `crc32`, a CRC-32 of all
//! tensor names, shapes and bytes.
//!
//! Writes are atomic: a temporary file is written and fsynced, the previous checkpoint is
//! kept as `checkpoint.prev.safetensors`, then the new one is renamed into place. A
//! truncated, corrupted or foreign file is an error naming it; it never loads silently.

use crate::cuttlefish::run::CuttlefishState;
use crate::train::trainer::Totals;
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE: &str = "checkpoint.safetensors";
pub const PREVIOUS: &str = "checkpoint.prev.safetensors";
/// The safetensors metadata key holding [`Meta`] as JSON.
pub const META_KEY: &str = "cuttle";
const CRC_KEY: &str = "crc32";

/// Everything a checkpoint holds besides tensors.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// The model's name (`cnn`, `resnet18`, ...).
    pub model: String,
    /// Where the run stands; None in a model-only export ([`Checkpoint::model_only`]).
    pub run: Option<RunState>,
}

/// A run's position and the state besides tensors needed to continue it exactly.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    /// Whole epochs trained.
    pub epochs_done: usize,
    /// Steps of the next epoch already trained (non-zero after an interruption).
    pub step_in_epoch: usize,
    /// That epoch's loss totals so far.
    pub epoch_totals: Totals,
    /// The learning-rate re-warm: (epoch, scale) pairs.
    pub lr_scale: Vec<(usize, f32)>,
    /// Steps the optimizer has taken since it was created (AdamW's bias-correction count;
    /// reset at the Cuttlefish switch). Absent in checkpoints from before AdamW: 0.
    #[serde(default)]
    pub optimizer_steps: u64,
    /// The Cuttlefish tracker and switch; None for a run without Cuttlefish.
    pub cuttlefish: Option<CuttlefishState>,
}

/// A checkpoint's contents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// name -> (shape, values)
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub meta: Meta,
}

fn crc(tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (name, (shape, values)) in tensors {
        h.update(name.as_bytes());
        for d in shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        h.update(bytemuck::cast_slice(values));
    }
    h.finalize()
}

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

    /// Writes `dir/checkpoint.safetensors` atomically, keeping the previous one.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(FILE);
        if path.exists() {
            std::fs::rename(&path, dir.join(PREVIOUS)).map_err(|e| bad(&path, e))?;
        }
        self.write_atomic(&path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(path)
    }

    /// The model alone, for PyTorch: weights and BatchNorm running statistics under their
    /// module names, without optimizer or Cuttlefish state.
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
        Checkpoint { tensors, meta: Meta { model: self.meta.model.clone(), run: None } }
    }

    /// Writes the file through a fsynced temporary and a rename, so a crash leaves either
    /// the old file or the new one.
    pub fn write_atomic(&self, path: &Path) -> Result<()> {
        let io = |e: std::io::Error| bad(path, e);
        let data = self.to_bytes(path)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&data).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// The safetensors bytes of this checkpoint, with its CRC-32 (`path` names it in errors;
    /// the browser downloads these bytes).
    pub fn to_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        let json = serde_json::to_string(&self.meta).map_err(|e| bad(path, format!("metadata: {e}")))?;
        let meta = HashMap::from([(META_KEY.to_string(), json), (CRC_KEY.to_string(), crc(&self.tensors).to_string())]);
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

    /// Reads and verifies a checkpoint file.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let data = std::fs::read(path).map_err(|e| bad(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&data)
            .map_err(|e| bad(path, format!("not a readable safetensors file ({e}); truncated or corrupted?")))?;
        let (_, md) = safetensors::SafeTensors::read_metadata(&data).map_err(|e| bad(path, e))?;
        let strings = md.metadata().clone().unwrap_or_default();
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(bad(path, format!("tensor `{name}` is {:?}, expected F32", view.dtype())));
            }
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        let want =
            strings.get(CRC_KEY).ok_or_else(|| bad(path, "no checksum in its metadata: not a cuttle checkpoint"))?;
        let got = crc(&tensors).to_string();
        if *want != got {
            return Err(bad(path, format!("checksum mismatch (stored {want}, computed {got}): the file is corrupted")));
        }
        let json = strings.get(META_KEY).ok_or_else(|| {
            bad(path, format!("no `{META_KEY}` metadata: not a cuttle checkpoint, or one from an older version"))
        })?;
        let meta =
            serde_json::from_str(json).map_err(|e| bad(path, format!("malformed `{META_KEY}` metadata: {e}")))?;
        Ok(Checkpoint { tensors, meta })
    }
}
