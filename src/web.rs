//! The browser API (wasm-bindgen) behind the demo page in `web/`: the same engine and the
//! same [`Session`] as the command line, driven from JavaScript one epoch at a time.
//!
//! The data is images (the built-in Fashion-MNIST subset, CIFAR-10 batches, an image
//! folder) or text (the built-in Tiny Shakespeare, or a text file) for the character
//! GPTs; a text run is sampled with [`Engine::sample`] between evaluations.
//!
//! Everything that waits is a Promise (device creation, readback, the layer timing of
//! `--factorize auto`), so the page stays responsive while training. Results cross the
//! boundary as JSON strings, the one format both sides already speak. `Engine` keeps its
//! state behind `Rc<RefCell<..>>` so that a Promise can own a handle to it; a call made
//! while an epoch is running is refused as busy rather than allowed to interleave.

// The RefCell borrow held across awaits is the busy guard: every entry point takes it
// with `try_borrow*` and reports "busy" instead of panicking.
#![allow(clippy::await_holding_refcell_ref)]

use crate::data::{self, Splits, TextData};
use crate::gpu::{DeviceHandle, Gpu, GpuOptions};
use crate::nn::models::is_language_model;
use crate::sample::Sampler;
use crate::session::Session;
use crate::train::config::{RunConfig, PRESETS};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// What the page chose to train on.
enum Data {
    Images(Splits),
    Text(TextData),
}

struct State {
    gpu: Gpu,
    data: Option<Data>,
    session: Option<Session>,
}

/// The engine on this tab's GPU.
#[wasm_bindgen]
pub struct Engine {
    state: Rc<RefCell<State>>,
    /// Set by `pause()`; the running epoch stops after its current step.
    stop: Rc<Cell<bool>>,
    /// Why the device was lost, once it was.
    lost: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// The device, outside the busy guard (to destroy it mid-epoch in the test).
    device: DeviceHandle,
}

/// Picked files as (name, bytes) pairs: `names[i]` names `files[i]`.
fn named(names: Vec<String>, files: Vec<js_sys::Uint8Array>) -> Vec<(String, Vec<u8>)> {
    names.into_iter().zip(files).map(|(n, f)| (n, f.to_vec())).collect()
}

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

const BUSY: &str = "an epoch is running; pause it first";

#[wasm_bindgen]
impl Engine {
    /// Opens the best adapter the browser offers. Rejects with a message naming what is
    /// missing (no WebGPU, no adapter, a device refused).
    pub async fn open() -> Result<Engine, JsError> {
        let gpu = Gpu::new(&GpuOptions::default()).await.map_err(err)?;
        let lost = std::sync::Arc::new(std::sync::Mutex::new(None));
        let l = lost.clone();
        gpu.watch(
            move |why| {
                if let Ok(mut l) = l.lock() {
                    *l = Some(why);
                }
            },
            |e| web_sys::console::error_1(&format!("WebGPU error: {e}").into()),
        );
        let device = gpu.handle();
        let state = State { gpu, data: None, session: None };
        Ok(Engine { state: Rc::new(RefCell::new(state)), stop: Rc::new(Cell::new(false)), lost, device })
    }

    /// The adapter as JSON: name, backend, type, and the limits that size the work.
    pub fn adapter(&self) -> Result<String, JsError> {
        let s = self.state.try_borrow().map_err(|_| err(BUSY))?;
        let a = &s.gpu.adapter();
        let out = json!({
            "name": a.name, "backend": a.backend, "device_type": a.device_type, "driver": a.driver,
            "cpu": a.is_cpu(), "max_storage_binding": a.max_storage_binding, "max_buffer": a.max_buffer,
            "max_workgroup_invocations": a.max_workgroup_invocations,
            "max_workgroup_storage": a.max_workgroup_storage,
            "subgroups": a.subgroups,
            "timestamps": a.timestamps,
        });
        Ok(out.to_string())
    }

    /// Why the GPU device was lost, or `undefined` while it is fine.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    /// Uses the Fashion-MNIST subset built into the module (class-balanced subsets of
    /// `train` / `test` images; 0 = all). Returns the data description as JSON.
    pub fn use_builtin(&self, train: usize, test: usize) -> Result<String, JsError> {
        self.set_data(data::load(&data::DataSpec::Builtin).map_err(err)?, train, test)
    }

    /// Uses CIFAR-10 binary batches the visitor picked (`data_batch_N.bin`, `test_batch.bin`,
    /// optionally `batches.meta.txt`); `names[i]` is the name of `files[i]`. `train` /
    /// `test`: class-balanced subsets as for [`Engine::use_builtin`] (0 = all).
    pub fn use_cifar10(
        &self,
        names: Vec<String>,
        files: Vec<js_sys::Uint8Array>,
        train: usize,
        test: usize,
    ) -> Result<String, JsError> {
        self.set_data(data::cifar10_from_memory(&named(names, files)).map_err(err)?, train, test)
    }

    /// Uses an image folder the visitor picked: `names[i]` is the relative path of
    /// `files[i]` (`.../train/<class>/x.png`, `.../test/<class>/y.jpg`). `train` / `test`:
    /// class-balanced subsets as for [`Engine::use_builtin`] (0 = all).
    pub fn use_folder(
        &self,
        names: Vec<String>,
        files: Vec<js_sys::Uint8Array>,
        train: usize,
        test: usize,
    ) -> Result<String, JsError> {
        self.set_data(data::folder_from_memory(&named(names, files)).map_err(err)?, train, test)
    }

    /// Validates `splits`, takes class-balanced subsets of `train` / `test` images (0 =
    /// all), and puts the test images in class turns (`Dataset::interleaved`: the page's
    /// prediction grid shows the first ones; the test figures do not depend on order).
    fn set_data(&self, mut splits: Splits, train: usize, test: usize) -> Result<String, JsError> {
        for d in [&splits.train, &splits.test] {
            d.validate().map_err(err)?;
        }
        // The data set's own name and sizes; the subsets' names add "(class-balanced ...)".
        let (name, full) = (splits.train.name.clone(), (splits.train.n, splits.test.n));
        if train > 0 {
            splits.train = splits.train.subset(train);
        }
        splits.test = if test > 0 { splits.test.subset(test) } else { splits.test }.interleaved();
        let mut s = self.state.try_borrow_mut().map_err(|_| err(BUSY))?;
        let t = &splits.train;
        let desc = json!({
            "kind": "images", "name": name, "train": t.n, "test": splits.test.n, "channels": t.channels,
            "height": t.height, "width": t.width, "classes": t.class_names,
            "train_available": full.0, "test_available": full.1,
        })
        .to_string();
        s.session = None;
        s.data = Some(Data::Images(splits));
        Ok(desc)
    }

    /// Uses the text built into the module (Tiny Shakespeare) for the language models.
    /// Returns the data description as JSON (`kind: "text"`, `train` / `val` characters,
    /// `vocab` distinct characters).
    pub fn use_builtin_text(&self) -> Result<String, JsError> {
        self.set_text(TextData::builtin().map_err(err)?)
    }

    /// Uses a UTF-8 text file the visitor picked (`name` is its file name). Rejects a file
    /// that is not text (binary, empty, too many distinct characters) with a message
    /// saying so.
    pub fn use_text(&self, name: String, bytes: Vec<u8>) -> Result<String, JsError> {
        self.set_text(TextData::from_bytes(&name, std::path::Path::new(&name), &bytes).map_err(err)?)
    }

    fn set_text(&self, text: TextData) -> Result<String, JsError> {
        let mut s = self.state.try_borrow_mut().map_err(|_| err(BUSY))?;
        let desc = json!({
            "kind": "text", "name": text.name, "train": text.train.len(), "val": text.val.len(),
            "vocab": text.vocab.len(),
        })
        .to_string();
        s.session = None;
        s.data = Some(Data::Text(text));
        Ok(desc)
    }

    /// The page's presets as JSON, `{name: options}`: partial options that
    /// [`Engine::options`] completes with the defaults.
    pub fn presets() -> String {
        PRESETS.to_string()
    }

    /// Options (JSON; the keys of the CLI's `config.toml`, any subset) completed with the
    /// defaults, the model's own where they depend on it (`RunConfig::resolved`: every key
    /// holds a value, none is null), as JSON. Rejects an unknown key or a value of the
    /// wrong type, naming it.
    pub fn options(options: String) -> Result<String, JsError> {
        let c = RunConfig::from_json(&options).map_err(|e| err(format!("options: {e}")))?;
        serde_json::to_string(&c.resolved()).map_err(err)
    }

    /// Starts a run with `options` (as for [`Engine::options`]) on the data chosen with a
    /// `use_*` call (`data`, `train_subset`, `test_subset`, `name` and `out` are not used
    /// here), dropping any previous run and its GPU buffers. Resolves to
    /// `{params, steps_per_epoch, dispatches_per_step, tracked, initial_ranks}`.
    pub fn start(&self, options: String) -> js_sys::Promise {
        let state = self.state.clone();
        self.stop.set(false);
        wasm_bindgen_futures::future_to_promise(async move {
            let o = RunConfig::from_json(&options).map_err(|e| err(format!("options: {e}")))?;
            let mut s = state.try_borrow_mut().map_err(|_| err(BUSY))?;
            s.session = None;
            let s = &mut *s;
            let data = s.data.as_ref().ok_or_else(|| err("choose a data set first"))?;
            let session = match data {
                Data::Images(splits) => {
                    if is_language_model(&o.model) {
                        return Err(
                            err(format!("{} is a language model: it trains on text, not images", o.model)).into()
                        );
                    }
                    let (cfg, cf) = o.settings(splits.train.n).map_err(err)?;
                    Session::new(&s.gpu, splits, cfg, cf).await.map_err(err)?
                }
                Data::Text(text) => {
                    if !is_language_model(&o.model) {
                        return Err(err(format!("{} trains on images; a text trains the GPT models", o.model)).into());
                    }
                    let context = o.resolved().context.unwrap_or(0);
                    text.check_context(context).map_err(err)?;
                    // Training samples are the window starts.
                    let (cfg, cf) = o.settings(text.train.len() - context).map_err(err)?;
                    Session::new(&s.gpu, text, cfg, cf).await.map_err(err)?
                }
            };
            let out = json!({
                "params": session.params_full,
                "steps_per_epoch": session.trainer.steps_per_epoch,
                "dispatches_per_step": session.trainer.dispatches_per_step(),
                "tracked": session.cuttlefish.as_ref().map(|c| c.tracker.names()),
                "initial_ranks": session.initial_ranks(),
            });
            s.session = Some(session);
            Ok(out.to_string().into())
        })
    }

    /// Asks the run to pause before its next training step, whatever it is doing now (a
    /// step, the evaluation, the rank estimate, the switch): the `run_epoch` in flight, or
    /// the next one, resolves to `{paused: ...}`. The pause holds until [`Engine::resume`]
    /// or [`Engine::start`].
    pub fn pause(&self) {
        self.stop.set(true);
    }

    /// Lifts a pause; the next `run_epoch` continues where the run stopped.
    pub fn resume(&self) {
        self.stop.set(false);
    }

    /// Runs (or continues) the next epoch. `on_progress` receives a JSON string
    /// `{step, steps, loss, acc}` at every readback. Resolves to the epoch as JSON
    /// (`report`, `switch`, `stable_ranks`, `done`, and `switch_next`: the next
    /// `run_epoch` begins with the switch, which takes a while), or, when paused, to
    /// `{paused: {epoch, step}, switch}` (`switch`: one made before the pause took hold;
    /// it is reported here once and not again with the epoch).
    pub fn run_epoch(&self, on_progress: js_sys::Function) -> js_sys::Promise {
        let (state, stop) = (self.state.clone(), self.stop.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let mut s = state.try_borrow_mut().map_err(|_| err(BUSY))?;
            let s = &mut *s;
            let session = s.session.as_mut().ok_or_else(|| err("start a run first"))?;
            if session.done() {
                return Err(err("the run is finished; start a new one").into());
            }
            let mut progress = |step: usize, steps: usize, t: crate::train::trainer::Totals| {
                let line = json!({"step": step, "steps": steps, "loss": t.mean_loss(), "acc": t.accuracy()});
                let _ = on_progress.call1(&JsValue::NULL, &line.to_string().into());
            };
            let halt = || stop.get();
            let Some(o) = session.next_epoch(&s.gpu, &mut progress, &halt).await.map_err(err)? else {
                let at = json!({"epoch": session.at.epochs_done + 1, "step": session.at.step});
                let out =
                    json!({"paused": at, "switch": session.pending_switch.take(), "switch_next": session.switch_due()});
                return Ok(out.to_string().into());
            };
            let out = json!({
                "report": o.report,
                "switch": o.switch,
                "stable_ranks": o.stable_ranks,
                "done": session.done(),
                "switch_next": session.switch_due(),
            });
            Ok(out.to_string().into())
        })
    }

    /// The run's summary as JSON (the CLI's `report.json`).
    pub fn report(&self) -> Result<String, JsError> {
        let s = self.state.try_borrow().map_err(|_| err(BUSY))?;
        let session = s.session.as_ref().ok_or_else(|| err("start a run first"))?;
        serde_json::to_string(&session.final_report()).map_err(err)
    }

    /// `tokens` characters generated by the run's model as it is now (after the switch, the
    /// factorized one) from a prompt of one newline, at `temperature` (0: the most likely
    /// character each time), the same text for the same `seed` and weights. Resolves to
    /// the text (without the prompt). Text runs only.
    pub fn sample(&self, tokens: usize, temperature: f32, seed: u32) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let s = state.try_borrow().map_err(|_| err(BUSY))?;
            let Some(Data::Text(text)) = s.data.as_ref() else {
                return Err(err("sampling needs a language model run on text").into());
            };
            let session = s.session.as_ref().ok_or_else(|| err("start a run first"))?;
            // Planned per call (batch 1, small): the graph changes at the switch.
            let mut sampler = Sampler::new(&s.gpu, &session.trainer.net.graph).map_err(err)?;
            sampler.load_weights(&s.gpu, &session.trainer.net);
            // A text without a newline starts from its first character (id 0).
            let prompt = text.encode("\n").unwrap_or_default();
            let ids = sampler.generate(&s.gpu, &prompt, tokens, temperature, seed as u64).await.map_err(err)?;
            Ok(text.decode(&ids).into())
        })
    }

    /// The splits of an image data set, or an error saying a text has no images.
    fn images(s: &State) -> Result<&Splits, JsError> {
        match s.data.as_ref().ok_or_else(|| err("choose a data set first"))? {
            Data::Images(splits) => Ok(splits),
            Data::Text(_) => Err(err("a text data set has no images (a language model run is sampled instead)")),
        }
    }

    /// The first `count` test images as bytes, (count, channels, height, width) planar
    /// (the classes take turns: see `set_data`).
    pub fn test_images(&self, count: usize) -> Result<Vec<u8>, JsError> {
        let s = self.state.try_borrow().map_err(|_| err(BUSY))?;
        let t = &Self::images(&s)?.test;
        let n = count.min(t.n);
        Ok(t.images[..n * t.image_bytes()].to_vec())
    }

    /// Labels and predicted classes of the first `count` test images (at most one batch),
    /// as JSON `{labels, predictions}`.
    pub fn predictions(&self, count: usize) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut s = state.try_borrow_mut().map_err(|_| err(BUSY))?;
            let s = &mut *s;
            Self::images(s)?;
            let session = s.session.as_mut().ok_or_else(|| err("start a run first"))?;
            let p = session.trainer.predict(&s.gpu, count).await.map_err(err)?;
            let labels = &Self::images(s)?.test.labels[..p.len()];
            Ok(json!({"labels": labels, "predictions": p}).to_string().into())
        })
    }

    /// The trained model as a safetensors file (the CLI's `cuttle export` format).
    pub fn export_model(&self) -> js_sys::Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let s = state.try_borrow().map_err(|_| err(BUSY))?;
            let session = s.session.as_ref().ok_or_else(|| err("start a run first"))?;
            let ck = session.checkpoint(&s.gpu).await.map_err(err)?;
            let bytes = ck.model_only().to_bytes(std::path::Path::new("model.safetensors")).map_err(err)?;
            Ok(js_sys::Uint8Array::from(&bytes[..]).into())
        })
    }

    /// Destroys the GPU device, as a driver reset or a lost GPU would: for the browser test
    /// that checks the page reports a lost device instead of hanging.
    pub fn destroy_device_for_test(&self) {
        self.device.destroy();
    }

    /// Drops the run and its GPU buffers (the data set stays).
    pub fn reset(&self) -> Result<(), JsError> {
        self.state.try_borrow_mut().map_err(|_| err(BUSY))?.session = None;
        Ok(())
    }
}
