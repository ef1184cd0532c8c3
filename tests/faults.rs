//! Fault injection: what a crash, a full disk, a hand-edited file, a diverging run, a
//! finished run, a bad flag or an image too small does to a run. Each test is one fault of
//! issue 13 and would have lost work or reported a false figure before the fix.
//!
//! Checkpoint writes are killed in a child process (this test binary re-run on one
//! ignored test, `save_in_child`): once at every step of a save, where the fault hook
//! aborts it, and twenty times more by SIGKILL at seeded random moments of a save loop.

use cuttle::train::checkpoint::{Checkpoint, Meta, RunState, SaveStep, CHUNK, FILE, PREVIOUS};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuttle-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A checkpoint of about 1.3 MB (21 chunks of the writer) whose values and position
/// say which `version` it is.
fn version(v: usize) -> Checkpoint {
    let n = 20 * CHUNK / 4 + 1000;
    let values: Vec<f32> = (0..n).map(|i| (i * 7 + v) as f32 * 1e-3).collect();
    let mut ck = Checkpoint::default();
    ck.tensors.insert("conv1.weight".into(), (vec![n], values));
    ck.tensors.insert("fc.bias".into(), (vec![3], vec![v as f32; 3]));
    ck.meta = Meta {
        model: "cnn".into(),
        run: Some(RunState { epochs_done: v, step_in_epoch: 5, lr_scale: vec![(1, 0.5)], ..Default::default() }),
        input_shape: vec![1, 28, 28],
        normalize: vec![(0.25, 0.5)],
        class_names: vec!["a".into(), "b".into(), "c".into()],
        classes: 3,
        ..Default::default()
    };
    ck
}

/// Every point of a save where the hook is asked, in order.
fn save_steps(test: &str) -> Vec<SaveStep> {
    let mut steps = vec![];
    let dir = scratch(&format!("steps-{test}"));
    version(1).save(&dir).unwrap();
    version(2)
        .save_with(&dir, &mut |s| {
            steps.push(s);
            Ok(())
        })
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    steps
}

/// The version of the checkpoint `dir` holds, checking that the live file itself loads
/// (a save may never leave it missing or partial).
fn live_version(dir: &Path) -> usize {
    let live = Checkpoint::load(&dir.join(FILE)).unwrap_or_else(|e| panic!("the live checkpoint does not load: {e}"));
    let v = live.meta.run.as_ref().unwrap().epochs_done;
    assert_eq!(live, version(v), "the live checkpoint is complete");
    v
}

/// The child side: saves version 2 into `CUTTLE_FAULT_DIR` and aborts (no unwinding, no
/// destructors, as a SIGKILL) at step `CUTTLE_FAULT_AT` (an index into `save_steps()`),
/// or with `CUTTLE_FAULT_AT=loop` saves versions 1 and 2 by turns until it is killed.
#[test]
#[ignore = "run by the tests below in a child process"]
fn save_in_child() {
    let (Ok(dir), Ok(at)) = (std::env::var("CUTTLE_FAULT_DIR"), std::env::var("CUTTLE_FAULT_AT")) else { return };
    let dir = PathBuf::from(dir);
    if at == "loop" {
        let (one, two) = (version(1), version(2));
        eprintln!("ready");
        loop {
            one.save(&dir).unwrap();
            two.save(&dir).unwrap();
        }
    }
    let at: usize = at.parse().unwrap();
    let mut k = 0;
    let _ = version(2).save_with(&dir, &mut |_| {
        if k == at {
            std::process::abort();
        }
        k += 1;
        Ok(())
    });
    panic!("step {at} was never reached");
}

fn child(dir: &Path, at: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["save_in_child", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("CUTTLE_FAULT_DIR", dir)
        .env("CUTTLE_FAULT_AT", at)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// A process killed at any step of a save leaves a live checkpoint that loads: the old
/// one up to the rename, the new one after it; the next save then succeeds.
#[test]
fn a_save_killed_at_any_step_leaves_a_good_checkpoint() {
    let steps = save_steps("kill");
    assert!(steps.len() >= 20, "only {} fault points: {steps:?}", steps.len());
    let replace = steps.iter().position(|s| *s == SaveStep::Replace).unwrap();
    for (i, step) in steps.iter().enumerate() {
        let dir = scratch(&format!("kill-{i}"));
        version(0).save(&dir).unwrap();
        version(1).save(&dir).unwrap();
        let status = child(&dir, &i.to_string()).status().unwrap();
        assert!(!status.success(), "the child at {step:?} was not killed");
        // Killed before the rename the old file is live, after it the new one.
        let want = if i <= replace { 1 } else { 2 };
        assert_eq!(live_version(&dir), want, "killed at {step:?}");
        let (_, from, warning) = Checkpoint::load_run(&dir).unwrap();
        assert!(from.ends_with(FILE) && warning.is_none(), "killed at {step:?}: {warning:?}");
        // Whatever the crash left behind, the next save goes through.
        version(3).save(&dir).unwrap();
        assert_eq!(live_version(&dir), 3, "saved after a kill at {step:?}");
        assert_eq!(Checkpoint::load(&dir.join(PREVIOUS)).unwrap(), version(want), "previous after {step:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// SIGKILL at twenty seeded random moments of a loop of saves: the live file always loads.
#[test]
fn a_save_loop_killed_at_random_leaves_a_good_checkpoint() {
    let dir = scratch("sigkill");
    version(1).save(&dir).unwrap();
    let mut seed = 0x5eed_u64;
    for round in 0..20 {
        let mut c = child(&dir, "loop").stderr(Stdio::piped()).spawn().unwrap();
        // Wait until the child is saving, then kill it 0-60 ms later.
        let mut ready = [0u8; 6];
        std::io::Read::read_exact(c.stderr.as_mut().unwrap(), &mut ready).unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_micros((seed >> 33) % 60_000));
        c.kill().unwrap();
        c.wait().unwrap();
        let v = live_version(&dir);
        assert!(v == 1 || v == 2, "round {round}: version {v}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A write that fails (a full disk) at any step before the rename: the save is an error
/// naming the file, the last checkpoint stays live and whole, and no temporary is left.
#[test]
fn a_full_disk_during_a_save_keeps_the_last_checkpoint() {
    let steps = save_steps("full");
    let replace = steps.iter().position(|s| *s == SaveStep::Replace).unwrap();
    for (i, step) in steps.iter().enumerate().take(replace + 1) {
        let dir = scratch(&format!("full-{i}"));
        version(0).save(&dir).unwrap();
        version(1).save(&dir).unwrap();
        let mut k = 0;
        let e = version(2)
            .save_with(&dir, &mut |_| {
                k += 1;
                if k - 1 == i {
                    Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device"))
                } else {
                    Ok(())
                }
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("no space left") && e.contains("checkpoint"), "at {step:?}: {e}");
        assert_eq!(live_version(&dir), 1, "at {step:?}");
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "at {step:?} the save left {left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    real_full_disk();
}

/// The same on a real 512 KiB tmpfs, where this machine lets us mount one (root in a
/// namespace that allows it); otherwise says why not.
fn real_full_disk() {
    let dir = scratch("tmpfs");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping the real full-disk case: cannot mount a tmpfs here (needs root); the injected one ran");
        return;
    }
    let mut small = version(1);
    small.tensors.remove("conv1.weight");
    small.save(&dir).unwrap();
    let e = version(2).save(&dir).unwrap_err().to_string();
    let intact = Checkpoint::load(&dir.join(FILE));
    let tmp = dir.join(format!("{FILE}.tmp")).exists();
    let _ = Command::new("umount").arg(&dir).status();
    assert!(e.contains("checkpoint"), "{e}");
    assert_eq!(intact.unwrap(), small, "the small checkpoint stays");
    assert!(!tmp, "the failed save left its temporary");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One-byte edits of the metadata (position, model, normalisation) fail the checksum;
/// the run then continues from the previous checkpoint, with a warning.
#[test]
fn an_edited_checkpoint_is_refused_and_the_previous_one_used() {
    let dir = scratch("edit");
    version(1).save(&dir).unwrap();
    version(2).save(&dir).unwrap();
    let bytes = std::fs::read(dir.join(FILE)).unwrap();
    for (from, to) in [
        // Inside the `cuttle` record, a JSON string in the header: its quotes are escaped.
        (r#"\"epochs_done\":2"#, r#"\"epochs_done\":3"#),
        (r#"\"step_in_epoch\":5"#, r#"\"step_in_epoch\":0"#),
        ("[0.25,0.5]", "[0.75,0.5]"),
        ("\"model\":\"cnn\"", "\"model\":\"cnm\""),
    ] {
        let at = bytes.windows(from.len()).position(|w| w == from.as_bytes());
        let at = at.unwrap_or_else(|| panic!("{from} not in the header"));
        let mut edited = bytes.clone();
        edited[at..at + from.len()].copy_from_slice(to.as_bytes());
        std::fs::write(dir.join(FILE), &edited).unwrap();
        let e = Checkpoint::load(&dir.join(FILE)).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{from} -> {to}: {e}");
        let (ck, path, warning) = Checkpoint::load_run(&dir).unwrap();
        assert_eq!((ck, path.file_name().unwrap().to_str().unwrap()), (version(1), PREVIOUS), "{from}");
        let w = warning.unwrap();
        assert!(w.contains("checksum mismatch") && w.contains(PREVIOUS), "{w}");
    }
    // A missing live file falls back too; with neither, the error names the live file.
    std::fs::remove_file(dir.join(FILE)).unwrap();
    assert_eq!(Checkpoint::load_run(&dir).unwrap().0, version(1));
    std::fs::remove_file(dir.join(PREVIOUS)).unwrap();
    let e = Checkpoint::load_run(&dir).unwrap_err().to_string();
    assert!(e.contains(FILE), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Images smaller than a model can read: an error naming the layer and the sizes, never
/// a panic; where the model can read them, no activation has a zero dimension.
#[test]
fn images_too_small_for_the_model_name_the_layer() {
    use cuttle::nn::models::model_by_name;
    for model in ["resnet6", "resnet8", "resnet18", "vgg19", "cnn"] {
        for input in [[1, 1, 1], [1, 5, 300], [3, 2, 2], [1, 28, 28]] {
            match model_by_name(model, input, 10) {
                Ok(g) => assert!(g.acts.iter().all(|a| !a.0.contains(&0)), "{model} {input:?}"),
                Err(e) => assert!(e.contains("cannot read") && e.contains("needs an input of at least"), "{e}"),
            }
        }
        assert!(model_by_name(model, [1, 28, 28], 10).is_ok(), "{model} reads 28x28");
    }
    // Max-pools halve the image: one pixel is too few for both, the CNN's three pools
    // need 8 pixels a side.
    for (model, input, layer) in
        [("resnet6", [1, 1, 1], "pool: a 2x2 max-pool"), ("cnn", [1, 5, 300], "pool3: a 2x2 max-pool")]
    {
        let e = model_by_name(model, input, 10).unwrap_err();
        assert!(e.contains(layer) && e.contains("but gets 1x"), "{model} {input:?}: {e}");
    }
    let e = model_by_name("vit-mini", [1, 5, 300], 10).unwrap_err();
    assert!(e.contains("patches"), "{e}");
}

// ---- the command line (these run the real binary) ----

fn cuttle(args: &[&str]) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cuttle"));
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Nothing here may hang: a run that does not end in five minutes fails the test.
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("cuttle {args:?} did not end within 300 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "cuttle {args:?} panicked:\n{stderr}");
    (out.status.success(), stderr)
}

/// A small run: 10 steps of the CNN.
fn small(out: &Path, extra: &[&str]) -> Vec<String> {
    let base = ["train", "--model", "cnn", "--epochs", "1", "--train-subset", "200", "--test-subset", "50"];
    let mut a: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    a.extend(["--batch", "20", "--out", out.to_str().unwrap()].map(String::from));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run(args: &[String]) -> (bool, String) {
    cuttle(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Every file of a directory with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

/// Sets `key = value` in a run's config.toml (what a user changes by hand).
fn edit_config(dir: &Path, key: &str, value: &str) {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| if l.starts_with(&format!("{key} =")) { format!("{key} = {value}") } else { l.to_string() })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// `--lr 100`, with and without Cuttlefish: the run stops within seconds with an error
/// naming epoch and step, non-zero; resumed at that rate from a good checkpoint, the
/// checkpoint and the rest of the run directory stay as they were.
#[test]
fn a_diverging_run_stops_at_once_and_keeps_the_last_checkpoint() {
    if cuttle::gpu::test_gpu().is_none() {
        eprintln!("skipping: no GPU adapter");
        return;
    }
    for cf in [false, true] {
        let extra: &[&str] = if cf { &["--cuttlefish"] } else { &[] };
        let dir = scratch(&format!("lr100-{cf}"));
        let t0 = Instant::now();
        let (ok, stderr) = run(&small(&dir, &[extra, &["--lr", "100"]].concat()));
        assert!(!ok && stderr.contains("training diverged at epoch 1, step"), "cuttlefish {cf}: {stderr}");
        assert!(t0.elapsed() < Duration::from_secs(120), "took {:?}", t0.elapsed());
        assert!(!dir.join(FILE).exists(), "a diverged first epoch wrote a checkpoint");
        // A good epoch, then a second one at lr 100.
        std::fs::remove_dir_all(&dir).unwrap();
        let (ok, stderr) = run(&small(&dir, extra));
        assert!(ok, "{stderr}");
        edit_config(&dir, "epochs", "2");
        edit_config(&dir, "lr", "100.0");
        let before = files(&dir);
        let (ok, stderr) = cuttle(&["train", "--resume", dir.to_str().unwrap()]);
        assert!(!ok && stderr.contains("training diverged at epoch 2"), "cuttlefish {cf}: {stderr}");
        assert!(stderr.contains("last checkpoint"), "{stderr}");
        let after = files(&dir);
        let ck = |f: &[(String, Vec<u8>)]| f.iter().find(|(n, _)| n == FILE).cloned();
        assert_eq!(ck(&after), ck(&before), "the good checkpoint was overwritten");
        assert!(Checkpoint::load(&dir.join(FILE)).unwrap().meta.run.unwrap().epochs_done == 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A finished run resumed: says so, exits 0, touches nothing; a flag given with
/// `--resume` is refused rather than ignored. A new run into its directory is refused
/// without --force; with it the old run's files go. An export never writes over the
/// run's own files. A checkpoint of another model is named at once.
#[test]
fn a_finished_run_is_left_alone() {
    if cuttle::gpu::test_gpu().is_none() {
        eprintln!("skipping: no GPU adapter");
        return;
    }
    let dir = scratch("finished");
    let d = dir.to_str().unwrap();
    let (ok, stderr) = run(&small(&dir, &["--cuttlefish"]));
    assert!(ok, "{stderr}");
    let before = files(&dir);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert!(report["test_acc"].as_f64().unwrap() > 0.0);

    let (ok, stderr) = cuttle(&["train", "--resume", d]);
    assert!(ok && stderr.contains("has finished: 1 of 1 epochs"), "{stderr}");
    assert_eq!(files(&dir), before, "resuming a finished run changed its files");
    let (ok, stderr) = cuttle(&["train", "--resume", d, "--epochs", "5"]);
    assert!(!ok && stderr.contains("--epochs cannot be given with it"), "{stderr}");

    // The same directory again: refused, then replaced with --force.
    let (ok, stderr) = run(&small(&dir, &[]));
    assert!(!ok && stderr.contains("already holds a run") && stderr.contains("--force"), "{stderr}");
    assert_eq!(files(&dir), before);

    // Export over the run's own checkpoint or config: refused, nothing written.
    for own in [FILE, "config.toml", "checkpoint.safetensors.tmp"] {
        let to = dir.join(own);
        let (ok, stderr) = cuttle(&["export", d, "--to", to.to_str().unwrap()]);
        assert!(!ok && stderr.contains("one of the run's own files"), "{own}: {stderr}");
    }
    assert_eq!(files(&dir), before);

    // The run's config names another model than its checkpoint.
    edit_config(&dir, "model", "\"resnet6\"");
    edit_config(&dir, "epochs", "2");
    let t0 = Instant::now();
    let (ok, stderr) = cuttle(&["train", "--resume", d]);
    assert!(!ok && stderr.contains("holds a cnn checkpoint but the run's config.toml says model resnet6"), "{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(30), "took {:?}", t0.elapsed());

    let (ok, stderr) = run(&small(&dir, &["--force"]));
    assert!(ok && stderr.contains("--force: deleted"), "{stderr}");
    assert!(!dir.join("ranks.csv").exists(), "the old run's ranks.csv is left");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--test-subset 0` (or `--train-subset 0`) would report the training figures as the
/// test's: a clear error before any work.
#[test]
fn an_empty_split_is_an_error() {
    for flag in ["--test-subset", "--train-subset"] {
        let dir = scratch("empty");
        let mut args = small(&dir, &[]);
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1] = "0".into();
        let (ok, stderr) = run(&args);
        assert!(!ok && stderr.contains(&format!("{flag} must be at least 1")), "{stderr}");
        assert!(!dir.join("config.toml").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A folder of 1x1 images (read as RGB): a one-line error naming the layer, not a panic (exit 101).
#[test]
fn tiny_images_on_the_command_line_are_a_clear_error() {
    let dir = scratch("tiny");
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            let d = dir.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..3 {
                image::GrayImage::from_pixel(1, 1, image::Luma([i * 80])).save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let data = format!("folder:{}", dir.display());
    let out = dir.join("run");
    let (ok, stderr) = cuttle(&["train", "--data", &data, "--batch", "2", "--out", out.to_str().unwrap()]);
    assert!(!ok && stderr.contains("model resnet6 cannot read 3x1x1 images"), "{stderr}");
    assert!(stderr.contains("needs an input of at least 2x2, but gets 1x1"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
