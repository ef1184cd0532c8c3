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
    fails_with(&["train", "--schedule", "cosine"], "unknown schedule");
    fails_with(&["train", "--cuttlefish", "--extra-bn"], "mutually exclusive");
    fails_with(&["train", "--cuttlefish", "--factorize", "conv9"], "not a factorizable conv");
    fails_with(&["bench", "matmul", "--shapes", "12x"], "bad shape");
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

#[test]
fn a_diverging_run_stops_at_once_and_says_where() {
    if cuttle::gpu::test_gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cuttle-nan-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let args = ["train", "--epochs", "1", "--train-subset", "400", "--test-subset", "100", "--batch", "20", "--out", d];
    // A sane first run leaves a checkpoint...
    let (ok, stderr) = cuttle(&args);
    assert!(ok, "{stderr}");
    assert!(dir.join("checkpoint.safetensors").exists());
    // ...and an absurd learning rate diverges: the error names epoch and step, the last
    // good checkpoint stays.
    let (ok, stderr) = cuttle(&[&args[..], &["--lr", "1e30"]].concat());
    assert!(!ok && stderr.contains("training diverged") && stderr.contains("step"), "{stderr}");
    assert!(cuttle::train::checkpoint::Checkpoint::load(&dir.join("checkpoint.safetensors")).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
