//! Checkpoints: every tensor needed to continue a run exactly, in one safetensors file.
//!
//! Weights keep the PyTorch names of the reference models (`layer2.0.conv1.weight`;
//! factorized layers as `....conv1.0.weight` / `....conv1.1.weight`), so the file also
//! loads with `safetensors.torch.load_file`. Beside them: `momentum.<name>` (optimizer
//! state), `<bn>.running_mean` / `<bn>.running_var`, `cuttlefish.probe` (the power
//! iteration's vectors), and string metadata (epoch, model, Cuttlefish tracker and switch
//! as JSON, and a CRC-32 of all tensor bytes).
//!
//! Writes are atomic: a temporary file is written and fsynced, the previous checkpoint is
//! kept as `checkpoint.prev.safetensors`, then the new one is renamed into place. A
//! truncated, corrupted or foreign file is an error naming it; it never loads silently.

use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE: &str = "checkpoint.safetensors";
pub const PREVIOUS: &str = "checkpoint.prev.safetensors";

/// A checkpoint's contents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// name -> (shape, values)
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub meta: BTreeMap<String, String>,
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

    pub fn meta(&self, path: &Path, key: &str) -> Result<&str> {
        self.meta.get(key).map(String::as_str).ok_or_else(|| bad(path, format!("no `{key}` in its metadata")))
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
        let tensors = self
            .tensors
            .iter()
            .filter(|(n, _)| !n.starts_with("momentum.") && !n.starts_with("cuttlefish."))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        let meta = self.meta.iter().filter(|(k, _)| *k == "model").map(|(k, v)| (k.clone(), v.clone())).collect();
        Checkpoint { tensors, meta }
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
        let mut meta: HashMap<String, String> = self.meta.clone().into_iter().collect();
        meta.insert("crc32".into(), crc(&self.tensors).to_string());
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
        let meta: BTreeMap<String, String> = md.metadata().clone().unwrap_or_default().into_iter().collect();
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(bad(path, format!("tensor `{name}` is {:?}, expected F32", view.dtype())));
            }
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        let want =
            meta.get("crc32").ok_or_else(|| bad(path, "no checksum in its metadata: not a cuttle checkpoint"))?;
        let got = crc(&tensors).to_string();
        if *want != got {
            return Err(bad(path, format!("checksum mismatch (stored {want}, computed {got}): the file is corrupted")));
        }
        Ok(Checkpoint { tensors, meta })
    }
}
