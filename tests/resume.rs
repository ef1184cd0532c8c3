//! Checkpoints and resume: a run killed with SIGKILL and resumed ends with weights,
//! optimizer state and BatchNorm statistics bit-identical to the same run uninterrupted
//! (the Cuttlefish switch falls after the kill, so it is replayed from the checkpoint),
//! with SGD and with AdamW (both moments and the step count are checkpointed; the switch
//! starts a fresh optimizer); a corrupted or truncated checkpoint is a clear error.

use cuttle::train::checkpoint::{Checkpoint, Meta, RunState, FILE, META_KEY};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuttle-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

const ARGS: &[&str] = &[
    "train",
    "--model",
    "cnn",
    "--epochs",
    "4",
    "--batch",
    "50",
    "--train-subset",
    "600",
    "--test-subset",
    "200",
    "--cuttlefish",
    "--factorize",
    "reference",
    "--seed",
    "5",
];

fn cuttle(args: &[&str], out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cuttle"));
    c.args(args).arg("--out").arg(out);
    c
}

fn tensors_bits(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let ck = Checkpoint::load(&dir.join(FILE)).unwrap();
    ck.tensors.into_iter().map(|(n, (_, v))| (n, v.iter().map(|x| x.to_bits()).collect())).collect()
}

#[test]
fn killed_and_resumed_run_is_bit_identical() {
    if cuttle::gpu::test_gpu().is_none() {
        return;
    }
    let a = scratch("a");
    let st = cuttle(ARGS, &a).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let report = std::fs::read_to_string(a.join("report.json")).unwrap();
    // Killed after epoch 2's checkpoint: a switch before epoch 3 or 4 is the resumed run's.
    assert!(
        report.contains("\"switch_epoch\": 3") || report.contains("\"switch_epoch\": 4"),
        "the switch must fall in the resumed part: {report}"
    );

    // Kill the second run right after its second checkpoint (and a little into epoch 3).
    let b = scratch("b");
    let mut child = cuttle(ARGS, &b).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    loop {
        let done = Checkpoint::load(&b.join(FILE)).ok().and_then(|c| c.meta.run.map(|r| r.epochs_done));
        if done == Some(2) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "no second checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_cuttle")).args(["train", "--resume"]).arg(&b).output().unwrap();
    let log = String::from_utf8_lossy(&st.stderr);
    assert!(st.status.success(), "{log}");
    assert!(log.contains("resuming"), "{log}");
    assert_eq!(tensors_bits(&a), tensors_bits(&b), "resumed run differs from the uninterrupted one");

    // `eval` reproduces the last epoch's test accuracy from the checkpoint (the factorized
    // net rebuilt from the saved switch).
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle")).arg("eval").arg(&b).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let metrics = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(got["test_acc"].as_f64(), last["test_acc"].as_f64(), "eval {got} vs training's last epoch {last}");

    // `export` keeps the model only, with the factor names.
    let file = b.join("model.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle")).arg("export").arg(&b).arg("--to").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model = Checkpoint::load(&file).unwrap();
    assert!(model.tensors.contains_key("conv2.0.weight") && model.tensors.contains_key("conv2.1.weight"));
    assert!(model.tensors.contains_key("bn1.running_mean") && model.tensors.contains_key("fc.bias"));
    assert!(model.tensors.keys().all(|k| !k.starts_with("momentum.") && !k.starts_with("cuttlefish.")));
    assert_eq!((model.meta.model.as_str(), &model.meta.run), ("cnn", &None), "an export carries no run state");
    let e = model.run(&file).unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("model-only export"), "{e}");

    // Ctrl-C (SIGINT) mid-epoch: the run finishes its step, checkpoints that position and
    // exits with 130; resumed, it too ends bit-identical to the uninterrupted run.
    let c = scratch("c");
    let child = cuttle(ARGS, &c).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while !c.join(FILE).exists() {
        assert!(t0.elapsed() < Duration::from_secs(300), "no first checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{log}");
    assert!(log.contains("interrupted: checkpointed epoch") && log.contains("--resume"), "{log}");
    let ck = Checkpoint::load(&c.join(FILE)).unwrap();
    let run = ck.run(&c.join(FILE)).unwrap();
    assert_ne!(run.step_in_epoch, 0, "the checkpoint must be mid-epoch: {:?}", ck.meta);
    assert!(run.cuttlefish.is_some(), "a Cuttlefish run checkpoints its tracker: {:?}", ck.meta);
    let st = Command::new(env!("CARGO_BIN_EXE_cuttle")).args(["train", "--resume"]).arg(&c).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    assert_eq!(tensors_bits(&a), tensors_bits(&c), "run resumed after Ctrl-C differs from the uninterrupted one");
    let _ = [&a, &b, &c].map(std::fs::remove_dir_all);
}

/// A tiny AdamW run on the CNN with every transformer-side option on: clipping (at a norm
/// the CNN's gradients pass, so it acts), label smoothing, cosine with a fractional warm-up.
const ADAMW_ARGS: &[&str] = &[
    "train",
    "--model",
    "cnn",
    "--optimizer",
    "adamw",
    "--lr",
    "0.002",
    "--weight-decay",
    "0.05",
    "--schedule",
    "cosine",
    "--warmup-epochs",
    "0.5",
    "--label-smoothing",
    "0.1",
    "--clip-grad",
    "0.5",
    "--epochs",
    "3",
    "--batch",
    "50",
    "--train-subset",
    "600",
    "--test-subset",
    "100",
    "--seed",
    "9",
];

#[test]
fn killed_and_resumed_adamw_run_is_bit_identical() {
    if cuttle::gpu::test_gpu().is_none() {
        return;
    }
    let a = scratch("adamw-a");
    let st = cuttle(ADAMW_ARGS, &a).output().unwrap();
    let log = String::from_utf8_lossy(&st.stderr);
    assert!(st.status.success(), "{log}");
    assert!(log.contains("optimizer adamw") && log.contains("cosine schedule"), "the header: {log}");
    let saved: toml::Table = std::fs::read_to_string(a.join("config.toml")).unwrap().parse().unwrap();
    assert_eq!(saved["optimizer"].as_str(), Some("adamw"), "{saved}");
    let ck = Checkpoint::load(&a.join(FILE)).unwrap();
    let run = ck.run(&a.join(FILE)).unwrap();
    assert_eq!(run.optimizer_steps, 3 * 12, "the step count of 3 epochs of 12 steps");
    let v = &ck.tensors["second_moment.conv1.weight"].1;
    assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0) && v.iter().any(|x| *x > 0.0), "second moments saved");

    // Killed right after its first checkpoint, somewhere in epoch 2 or 3, and resumed.
    let b = scratch("adamw-b");
    let mut child = cuttle(ADAMW_ARGS, &b).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while Checkpoint::load(&b.join(FILE)).ok().and_then(|c| c.meta.run.map(|r| r.epochs_done)).is_none() {
        assert!(t0.elapsed() < Duration::from_secs(300), "no first checkpoint");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_cuttle")).args(["train", "--resume"]).arg(&b).output().unwrap();
    let log = String::from_utf8_lossy(&st.stderr);
    assert!(st.status.success(), "{log}");
    assert!(log.contains("resuming") && !log.contains("after epoch 3"), "it must resume mid-run: {log}");
    assert_eq!(tensors_bits(&a), tensors_bits(&b), "resumed AdamW run differs from the uninterrupted one");
    let _ = [&a, &b].map(std::fs::remove_dir_all);
}

/// At the Cuttlefish switch the optimizer starts afresh, as the reference builds a new one:
/// both moments zero and the step count back to 0; before it, a checkpoint holds both
/// moments and the count.
#[test]
fn the_switch_starts_a_fresh_adamw() {
    use cuttle::cuttlefish::{Cuttlefish, CuttlefishConfig, FactorizeMode};
    use cuttle::gpu::read_f32;
    use cuttle::ops::adamw::AdamWConfig;
    use cuttle::train::trainer::{EpochEnd, Position};
    use cuttle::train::{AugmentKind, Optimizer, Schedule, TrainConfig, Trainer};
    let Some(gpu) = cuttle::gpu::test_gpu() else { return };
    let mut data = cuttle::data::load(&cuttle::data::DataSpec::Builtin).unwrap();
    data.train = data.train.subset(200);
    data.test = data.test.subset(100);
    let cfg = TrainConfig {
        model: "cnn".into(),
        epochs: 2,
        batch: 50,
        lr: 1e-3,
        schedule: Schedule::Cosine,
        warmup_epochs: 0.5,
        optimizer: Optimizer::AdamW(AdamWConfig::default()),
        clip_grad: Some(1.0),
        label_smoothing: 0.1,
        augment: AugmentKind::None,
        seed: 2,
        ..Default::default()
    };
    let mut t = Trainer::new(&gpu, &data, cfg).unwrap();
    let epoch = |t: &mut Trainer, e: usize| {
        let at = Position { epochs_done: e, ..Default::default() };
        match pollster::block_on(t.run_epoch(&gpu, at, &mut |_, _, _| {}, &|| false)).unwrap() {
            EpochEnd::Done(r) => assert!(r.train_loss.is_finite() && r.test_loss.is_finite(), "{r:?}"),
            EpochEnd::Stopped(_) => panic!("stopped without being asked"),
        }
    };
    epoch(&mut t, 0);
    assert_eq!(t.optimizer_steps, 4);
    let ck = pollster::block_on(t.checkpoint(&gpu, Position { epochs_done: 1, ..Default::default() })).unwrap();
    assert_eq!(ck.meta.run.as_ref().unwrap().optimizer_steps, 4);
    assert!(ck.tensors.contains_key("momentum.fc.weight") && ck.tensors.contains_key("second_moment.fc.weight"));
    assert!(
        ck.model_only().tensors.keys().all(|k| !k.starts_with("second_moment.")),
        "exports hold no optimizer state"
    );

    let mut c = CuttlefishConfig::for_schedule(Schedule::Cosine);
    c.factorize = FactorizeMode::Reference;
    let mut cf = pollster::block_on(Cuttlefish::new(&gpu, &t, c)).unwrap();
    pollster::block_on(cf.switch(&gpu, &mut t, 1)).unwrap();
    assert_eq!(t.optimizer_steps, 0, "a fresh optimizer counts from 0");
    let p = &t.net.params;
    let second = p.second_moment.as_ref().expect("the factorized net has AdamW's second moment");
    assert_eq!(second.len(), p.weights.len());
    for (what, buf) in [("first moment", &p.momentum), ("second moment", second)] {
        let v = pollster::block_on(read_f32(&gpu, &[buf])).unwrap().remove(0);
        assert!(v.iter().all(|x| *x == 0.0), "{what} after the switch must be zero");
    }
    epoch(&mut t, 1);
    assert_eq!(t.optimizer_steps, 4);
}

/// The checkpoint file `bytes` with its `cuttle` metadata replaced by `json` (or removed),
/// tensors kept and the checksum (which covers the metadata) recomputed, so that the
/// checks behind it are reached.
fn with_meta(bytes: &[u8], json: Option<&str>) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = md.metadata().clone().unwrap();
    match json {
        Some(j) => meta.insert(META_KEY.into(), j.into()),
        None => meta.remove(META_KEY),
    };
    let edited = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
    Checkpoint::reseal(std::path::Path::new(FILE), &edited).unwrap()
}

#[test]
fn damaged_checkpoints_are_refused_with_the_file_named() {
    let dir = scratch("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let mut ck = Checkpoint::default();
    ck.tensors.insert("w".into(), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    ck.meta = Meta {
        model: "cnn".into(),
        run: Some(RunState { epochs_done: 1, ..Default::default() }),
        ..Default::default()
    };
    let path = ck.save(&dir).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), ck);
    // A second save keeps the first as the previous checkpoint.
    ck.save(&dir).unwrap();
    assert!(dir.join(cuttle::train::checkpoint::PREVIOUS).exists());
    let bytes = std::fs::read(&path).unwrap();
    // Truncated.
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let e = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(e.contains(FILE) && e.contains("truncated or corrupted"), "{e}");
    // One flipped bit in the data.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let e = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(e.contains(FILE) && e.contains("checksum mismatch"), "{e}");
    // Metadata missing or malformed (the checksum resealed): one line naming the file.
    for (json, want) in [(None, "no `cuttle` metadata"), (Some("{\"model\": 3}"), "malformed `cuttle` metadata")] {
        std::fs::write(&path, with_meta(&bytes, json)).unwrap();
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(e.contains(FILE) && e.contains(want) && !e.contains('\n'), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tracker_that_does_not_match_the_position_is_refused() {
    if cuttle::gpu::test_gpu().is_none() {
        return;
    }
    // One epoch of 12 steps: 12 stable-rank checks (one per step) after the initial one.
    let d = scratch("tracker");
    let mut args = ARGS.to_vec();
    let at = args.iter().position(|a| *a == "--epochs").unwrap();
    args[at + 1] = "1";
    let st = cuttle(&args, &d).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let path = d.join(FILE);
    let bytes = std::fs::read(&path).unwrap();
    let meta = Checkpoint::load(&path).unwrap().meta;
    let mut json: serde_json::Value = serde_json::to_value(&meta).unwrap();
    let layers = json["run"]["cuttlefish"]["tracker"].as_array_mut().unwrap();
    assert_eq!(layers[0]["history"].as_array().unwrap().len(), 13, "{layers:?}");
    // Drop the last check of every layer, as an edit or a bug would: training on would
    // run the convergence test on a history shifted by one check.
    for l in layers.iter_mut() {
        l["history"].as_array_mut().unwrap().pop();
    }
    std::fs::write(&path, with_meta(&bytes, Some(&json.to_string()))).unwrap();
    // A second epoch to train (a finished run is left alone before anything is checked).
    let config = d.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace("epochs = 1\n", "epochs = 2\n");
    std::fs::write(&config, text).unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_cuttle")).args(["train", "--resume"]).arg(&d).output().unwrap();
    let log = String::from_utf8_lossy(&st.stderr);
    assert!(!st.status.success(), "{log}");
    assert!(log.contains("holds 12 stable-rank checks, but 13 are made by epoch 1 step 0"), "{log}");
    let _ = std::fs::remove_dir_all(&d);
}
