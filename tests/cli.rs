//! The command line on bad input: a clear one-line error and a non-zero exit, never a
//! panic. These run the real binary.

use std::process::Command;

fn cuttle(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle")).args(args).output().expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "cuttle {args:?} panicked:\n{stderr}");
    (out.status.success(), stderr)
}

fn fails_with(args: &[&str], needle: &str) {
    let (ok, stderr) = cuttle(args);
    assert!(!ok, "cuttle {args:?} should fail");
    assert!(stderr.contains(needle), "cuttle {args:?}: expected {needle:?} in:\n{stderr}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    fails_with(&["train", "--model", "resnet19"], "unknown model \"resnet19\"");
    fails_with(&["train", "--data", "cifar11:/tmp"], "unknown data set kind");
    fails_with(&["train", "--data", "mnist:/nonexistent/dir"], "/nonexistent/dir");
    fails_with(&["train", "--batch", "0"], "--batch must be at least 1");
    fails_with(&["train", "--batch", "20000"], "larger than the training set");
    fails_with(&["train", "--epochs", "0"], "--epochs must be at least 1");
    fails_with(&["train", "--lr", "NaN"], "--lr must be a positive finite number");
    fails_with(&["train", "--schedule", "linear"], "unknown schedule");
    fails_with(&["train", "--optimizer", "adam"], "unknown optimizer \"adam\"");
    fails_with(&["train", "--optimizer", "adamw", "--beta2", "1"], "--beta2 must be in [0, 1)");
    fails_with(&["train", "--clip-grad=-1"], "--clip-grad must be a positive");
    fails_with(&["train", "--label-smoothing", "1.5"], "--label-smoothing must be in [0, 1)");
    fails_with(&["train", "--warmup-epochs", "1"], "--warmup-epochs 1 needs --schedule cosine");
    fails_with(&["train", "--optimizer", "adamw", "--nesterov"], "--nesterov needs --optimizer sgd");
    fails_with(&["train", "--report-every", "0"], "--report-every must be at least 1");
    fails_with(&["train", "--cuttlefish", "--extra-bn"], "mutually exclusive");
    fails_with(&["train", "--cuttlefish", "--factorize", "conv9"], "not a factorizable conv");
    fails_with(&["bench", "matmul", "--shapes", "12x"], "bad shape");
    fails_with(&["bench", "train", "--lowrank", "1"], "--lowrank 1: the rank divisor must be at least 2");
}

#[test]
fn an_adapter_that_is_not_there_is_named() {
    fails_with(&["--adapter", "no-such-gpu-anywhere", "bench", "matmul", "--shapes", "8"], "no-such-gpu-anywhere");
}

#[test]
fn info_describes_models_without_a_gpu() {
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle")).args(["info", "--model", "resnet18"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("11173962 parameters"));
}

#[test]
fn an_unwritable_run_directory_is_named() {
    fails_with(
        &["train", "--epochs", "1", "--out", "/proc/cuttle-cannot-write-here"],
        "/proc/cuttle-cannot-write-here",
    );
}

// A diverging run: tests/faults.rs (with the other faults that lose a run).

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cuttle-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bad_config_files_name_the_file_and_the_key() {
    let d = scratch("config");
    let file = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let unknown = file("unknown.toml", "epochs = 2\nepoch = 3\n");
    fails_with(&["train", "--config", &unknown], "unknown key `epoch`");
    fails_with(&["train", "--config", &unknown], "unknown.toml");
    let wrong = file("wrong.toml", "epochs = \"six\"\n");
    fails_with(&["train", "--config", &wrong], "key `epochs`");
    let negative = file("negative.toml", "batch = -3\n");
    fails_with(&["train", "--config", &negative], "key `batch`");
    let schedule = file("schedule.toml", "schedule = \"linear\"\n");
    fails_with(&["train", "--config", &schedule], "unknown schedule");
    let syntax = file("syntax.toml", "epochs = = 2\n");
    fails_with(&["train", "--config", &syntax], "syntax.toml");
    // An error at the start of a line is on that line (it was reported one line early).
    let second = file("second.toml", "epochs = 2\n= 3\n");
    fails_with(&["train", "--config", &second], "second.toml: line 2:");
    let per_run = file("json.toml", "json = true\n");
    fails_with(&["train", "--config", &per_run], "unknown key `json`");
    fails_with(&["train", "--config", "/nonexistent/cuttle.toml"], "/nonexistent/cuttle.toml");
    // The file's values are used: its epochs = 0 fails validation.
    let zero = file("zero.toml", "epochs = 0\n");
    fails_with(&["train", "--config", &zero], "--epochs must be at least 1");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn flags_override_the_config_file_and_the_run_saves_the_resolved_options() {
    if cuttle::gpu::test_gpu().is_none() {
        return;
    }
    let d = scratch("precedence");
    let config = d.join("c.toml");
    std::fs::write(&config, "epochs = 0\nseed = 7\ntrain_subset = 200\ntest_subset = 100\nbatch = 25\n").unwrap();
    let out = d.join("run");
    let args = ["train", "--config", config.to_str().unwrap(), "--epochs", "1", "--out", out.to_str().unwrap()];
    let (ok, stderr) = cuttle(&args);
    assert!(ok, "{stderr}");
    let saved: toml::Table = std::fs::read_to_string(out.join("config.toml")).unwrap().parse().unwrap();
    assert_eq!(saved["epochs"].as_integer(), Some(1), "the flag wins: {saved}");
    assert_eq!(saved["seed"].as_integer(), Some(7), "the file's value is kept: {saved}");
    assert_eq!(saved["batch"].as_integer(), Some(25));
    assert_eq!(saved["model"].as_str(), Some("resnet6"), "defaults are written out too: {saved}");
    for plot in ["loss.svg", "accuracy.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("epoch"), "{plot}");
    }
    assert!(out.join("model.safetensors").exists(), "the final model is written");
    // The saved file is itself a valid config.
    let again = d.join("again");
    let (ok, stderr) =
        cuttle(&["train", "--config", out.join("config.toml").to_str().unwrap(), "--out", again.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_step_profile_accounts_for_the_whole_step() {
    if cuttle::gpu::test_gpu().is_none() {
        return;
    }
    let args = ["bench", "train", "--model", "cnn", "--batch", "4", "--steps", "1", "--profile", "--json"];
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle")).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&serde_json::Value> = lines.iter().filter(|l| l["by"] == "kind").collect();
    let share: f64 = kinds.iter().map(|l| l["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-6, "kinds cover the step: {share}");
    for kind in ["gemm.conv-forward", "gemm.conv-data-grad", "gemm.conv-weight-grad", "sgd.update"] {
        assert!(kinds.iter().any(|l| l["name"] == kind), "{kind} in the profile: {kinds:?}");
    }
    assert!(lines.iter().any(|l| l["by"] == "layer" && l["name"] == "conv2"), "per-layer rows");
    assert!(lines.iter().all(|l| l["ms"].as_f64().is_none_or(|ms| ms.is_finite() && ms >= 0.0)));
}

/// `bench train --lowrank`: the fixed low-rank model trains, and the step allocates nothing
/// (the count after the timed steps is the plan).
#[test]
fn the_low_rank_benchmark_trains_within_its_plan() {
    if cuttle::gpu::test_gpu().is_none() {
        return;
    }
    let args = ["bench", "train", "--model", "cnn", "--batch", "4", "--steps", "2", "--lowrank", "4", "--json"];
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle")).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(line["lowrank"], 4);
    let full = cuttle::nn::models::model_by_name("cnn", [3, 32, 32], 10).unwrap().param_count();
    assert!(line["params"].as_u64().unwrap() < full as u64, "{line}");
    assert!(line["images_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(line["allocated_after_steps_bytes"], line["plan_bytes"]);
}

/// A language model through the command line: bad text named, a tiny run trained, then
/// evaluated, sampled (the same text for the same seed) and exported with nanoGPT's keys.
#[test]
fn a_character_gpt_trains_samples_and_exports() {
    let dir = scratch("gpt");
    let bin = dir.join("binary.txt");
    std::fs::write(&bin, [0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00]).unwrap();
    fails_with(&["train", "--model", "gpt-mini", "--data", &format!("text:{}", bin.display())], "binary file");
    fails_with(&["train", "--model", "gpt-mini", "--data", "builtin"], "is images");
    fails_with(&["train", "--model", "resnet6", "--data", "builtin-text"], "language model");
    fails_with(&["train", "--model", "resnet6", "--steps", "10"], "--steps is for language models");
    fails_with(&["train", "--model", "gpt-mini", "--steps", "75"], "multiple of --eval-every 50");
    fails_with(&["train", "--model", "gpt-mini", "--context", "65"], "reads 1 to 64 tokens");
    let Some(_) = cuttle::gpu::test_gpu() else { return };
    let run = dir.join("run");
    let run_s = run.display().to_string();
    let (ok, err) = cuttle(&[
        "train",
        "--model",
        "gpt-mini",
        "--context",
        "16",
        "--batch",
        "4",
        "--steps",
        "6",
        "--eval-every",
        "3",
        "--eval-batches",
        "1",
        "--out",
        &run_s,
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("val loss") && err.contains("tokens/s"), "{err}");
    assert!(run.join("vocab.json").is_file() && run.join("report.json").is_file());
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle")).args(["eval", &run_s]).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"val_loss\""));
    let sample = |seed: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args(["sample", &run_s, "--tokens", "40", "--seed", seed, "--prompt", "KING"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let a = sample("1");
    assert!(a.starts_with("KING") && a.trim_end().chars().count() >= 4, "{a:?}");
    assert_eq!(a, sample("1"), "a seed gives the same text");
    fails_with(&["sample", &run_s, "--prompt", "\u{263a}"], "not in the run's vocabulary");
    let export = dir.join("model.safetensors");
    let (ok, err) = cuttle(&["export", &run_s, "--to", &export.display().to_string()]);
    assert!(ok, "{err}");
    let ck = cuttle::train::checkpoint::Checkpoint::load(&export).unwrap();
    assert_eq!(ck.tensors["lm_head.weight"], ck.tensors["transformer.wte.weight"]);
    assert_eq!(ck.tensors["transformer.wpe.weight"].0, [16, 64]);
    // Its description: a [T] input, no normalisation, the vocabulary's size.
    let vocab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("vocab.json")).unwrap()).unwrap();
    let vocab = vocab["chars"].as_str().unwrap().chars().count();
    let m = &ck.meta;
    assert_eq!((m.input_shape.as_slice(), m.normalize.is_empty(), m.classes), (&[16][..], true, vocab));
    assert!(m.class_names.is_empty() && m.ranks.is_empty());
}
