//! What a hostile user breaks, round two (issue 27): run directories named through
//! folders that do not exist, a vocabulary rebuilt from a text edited since, a diverged
//! evaluation kept as the live checkpoint, a false "finished", torn metrics lines, two
//! processes in one run, data changed under a resumed run, options out of range or of no
//! effect. Each test failed on the code before its fix.
//!
//! `CUTTLE_BIN_UNDER_TEST` runs the tests against another `cuttle` binary (an older
//! build, to see them fail); by default they run this package's.

use cuttle::train::checkpoint::Checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuttle-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cuttle(cwd: &Path, args: &[&str]) -> Output {
    let bin = std::env::var("CUTTLE_BIN_UNDER_TEST").unwrap_or(env!("CARGO_BIN_EXE_cuttle").into());
    Command::new(bin).args(args).current_dir(cwd).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// Names and contents of the files in `dir`, sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

/// The smallest language model run: two steps of gpt-mini on 8-character windows.
const T: [&str; 12] = [
    "--model",
    "gpt-mini",
    "--steps",
    "2",
    "--eval-every",
    "1",
    "--eval-batches",
    "1",
    "--batch",
    "2",
    "--context",
    "8",
];

/// A text of about 600 characters over the letters of `letters` (and spaces).
fn text(letters: &str) -> String {
    let l: Vec<char> = letters.chars().collect();
    (0..600).map(|i| if i % 7 == 6 { ' ' } else { l[(i * 5 + i / 3) % l.len()] }).collect()
}

/// A run directory named through a folder that does not exist yet (`missing/..`, or
/// `--name ../x` where there is no `runs/` yet) is the directory the file system will
/// make of it: one that holds a run is refused as any other, its files untouched, and no
/// folder is created on the way. (Before, the check looked through the missing folder,
/// found nothing, and the new run overwrote the old one's files.)
#[test]
fn a_run_named_through_a_missing_folder_is_still_refused() {
    let dir = scratch("through-missing");
    for old in ["ck/reuse2", "ck/reuse3"] {
        std::fs::create_dir_all(dir.join(old)).unwrap();
        std::fs::write(dir.join(old).join("config.toml"), "# an earlier run's\n").unwrap();
    }
    let before = [files(&dir.join("ck/reuse2")), files(&dir.join("ck/reuse3"))];
    let tiny =
        ["train", "--model", "cnn", "--epochs", "1", "--train-subset", "20", "--test-subset", "10", "--batch", "8"];
    for target in [["--out", "missing/../ck/reuse2"], ["--name", "../ck/reuse3"]] {
        let out = cuttle(&dir, &[&tiny[..], &target[..]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("already holds a run"), "{target:?}: {stderr}");
        assert!(stderr.contains("ck/reuse"), "{target:?}: the message names where it resolves: {stderr}");
    }
    assert_eq!([files(&dir.join("ck/reuse2")), files(&dir.join("ck/reuse3"))], before);
    assert!(!dir.join("missing").exists() && !dir.join("runs").exists(), "a refused run made folders");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The vocabulary belongs to the checkpoint: with `vocab.json` deleted and the text
/// edited since (as many distinct characters, one replaced, so every id after it would
/// shift), `sample` writes the same text as before, from any directory, without the
/// training text; `eval` and `--resume` on the edited text are refused, naming the
/// characters that differ. (Before: `sample` printed each letter shifted by one and
/// `eval` another loss, rc 0.)
#[test]
fn the_vocabulary_is_the_checkpoints_and_an_edited_text_is_refused() {
    let dir = scratch("vocab");
    std::fs::write(dir.join("corpus.txt"), text("abcdefghij")).unwrap();
    ok(cuttle(&dir, &[&["train"], &T[..], &["--data", "text:corpus.txt", "--out", "run"]].concat()));
    // From another directory, eval names why the run's relative data path is not found.
    let away = scratch("vocab-away");
    let run_dir = dir.join("run");
    let o = cuttle(&away, &["eval", run_dir.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("name the data with --data"), "{}", stderr(&o));
    let corpus = format!("text:{}", dir.join("corpus.txt").display());
    ok(cuttle(&away, &["eval", run_dir.to_str().unwrap(), "--data", &corpus]));
    let _ = std::fs::remove_dir_all(&away);
    let sample = ["sample", "run", "--tokens", "40", "--temperature", "0.8", "--seed", "3", "--prompt", "b"];
    let before = ok(cuttle(&dir, &sample)).stdout;
    std::fs::remove_file(dir.join("run/vocab.json")).unwrap();
    // `a` replaced by `k`: ten distinct characters still, but `b` is now id 1, not 2.
    std::fs::write(dir.join("corpus.txt"), text("kbcdefghij")).unwrap();
    assert_eq!(ok(cuttle(&dir, &sample)).stdout, before, "sample after the text changed");
    let elsewhere = scratch("vocab-elsewhere");
    let run = dir.join("run");
    let far =
        ["sample", run.to_str().unwrap(), "--tokens", "40", "--temperature", "0.8", "--seed", "3", "--prompt", "b"];
    assert_eq!(ok(cuttle(&elsewhere, &far)).stdout, before, "sample from another directory");
    // Other text that gives itself its ids (the built-in one) must have the run's characters.
    let o = cuttle(&dir, &["eval", "run", "--data", "builtin-text"]);
    assert!(
        !o.status.success() && stderr(&o).contains("builtin-text does not have the run's vocabulary"),
        "{}",
        stderr(&o)
    );
    // The default prompt is a newline, or nothing where the text has none (this one).
    ok(cuttle(&dir, &["sample", "run", "--tokens", "5"]));
    for args in [vec!["eval", "run"], vec!["train", "--resume", "run"]] {
        let o = cuttle(&dir, &args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?} on the edited text: {e}");
        assert!(e.contains("no longer has the run's vocabulary"), "{args:?}: {e}");
        assert!(e.contains("only in the text: \"k\"") && e.contains("only in the run's vocabulary: \"a\""), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&elsewhere);
}

/// A diverged evaluation stops the run like a diverged training loss, so the live
/// checkpoint is the last good one: gpt-mini at lr 100 leaves its training loss in range
/// at step 2 but its validation loss at 243,402. (Before: the run stopped one step later,
/// and `eval`, `export` and `sample` used a live checkpoint of that loss with rc 0.)
#[test]
fn a_diverged_evaluation_never_becomes_the_live_checkpoint() {
    let dir = scratch("diverged-eval");
    let mut args = [&["train"], &T[..], &["--lr", "100", "--out", "run"]].concat();
    args[4] = "4"; // --steps
    let o = cuttle(&dir, &args);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("diverged at step 2: the validation loss is"), "{e}");
    let eval = ok(cuttle(&dir, &["eval", "run"]));
    let v: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    let (loss, limit) = (v["val_loss"].as_f64().unwrap(), 10.0 * 65f64.ln());
    assert!(loss < limit, "the live checkpoint's validation loss is {loss}, over the divergence limit {limit}");
    assert_eq!(v["steps_trained"], 1, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The smallest image run: one epoch of the CNN on 20 built-in images.
const IMAGES: [&str; 12] =
    ["--model", "cnn", "--epochs", "1", "--train-subset", "20", "--test-subset", "10", "--batch", "8", "--seed", "1"];

/// A run is finished only once its final model and report exist: stopped after its last
/// checkpoint and before them (a kill, a full disk), `--resume` writes them from that
/// checkpoint, the same bytes an uninterrupted run wrote. (Before: "has finished; its
/// results are in report.json", which did not exist and nothing would write.)
#[test]
fn a_run_stopped_before_its_report_is_finished_by_resume() {
    let dir = scratch("no-report");
    ok(cuttle(&dir, &[&["train", "--out", "run"], &IMAGES[..]].concat()));
    let whole = files(&dir.join("run"));
    let keep = |name: &str| whole.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let model_copy = dir.join("model-as-trained.safetensors");
    std::fs::write(&model_copy, keep("model.safetensors")).unwrap();
    for gone in [&["report.json"][..], &["model.safetensors", "report.json"]] {
        for f in gone {
            std::fs::remove_file(dir.join("run").join(f)).unwrap();
        }
        let o = ok(cuttle(&dir, &["train", "--resume", "run"]));
        assert!(stderr(&o).contains("stopped before writing"), "{}", stderr(&o));
        let report = std::fs::read(dir.join("run/report.json")).unwrap();
        assert!(report == keep("report.json"), "report.json after losing {gone:?}");
        // The same tensors and metadata (safetensors writes its metadata in hash order).
        let model = |p: &Path| Checkpoint::load(p).unwrap();
        assert!(model(&dir.join("run/model.safetensors")) == model(&model_copy), "the model after losing {gone:?}");
    }
    let o = ok(cuttle(&dir, &["train", "--resume", "run"]));
    assert!(stderr(&o).contains("has finished"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A kill while a line goes to `metrics.jsonl` leaves it torn, and one after an epoch's
/// line but before its checkpoint leaves a line the resumed run writes again: resuming
/// drops both, so every line parses and each epoch is there once. (Before: the resumed
/// run appended to the torn line, which became unparsable.)
#[test]
fn a_resume_repairs_metrics_torn_or_ahead_of_the_checkpoint() {
    let dir = scratch("torn");
    ok(cuttle(&dir, &[&["train", "--out", "run"], &IMAGES[..]].concat()));
    let run = dir.join("run");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::write(run.join("config.toml"), config.replace("epochs = 1\n", "epochs = 2\n")).unwrap();
    let mut metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let first = metrics.clone();
    metrics += &first.replace("\"epoch\":1", "\"epoch\":2"); // written, then killed before its checkpoint
    metrics += "{\"event\":\"switch\",\"epo"; // torn
    std::fs::write(run.join("metrics.jsonl"), metrics).unwrap();
    let o = ok(cuttle(&dir, &["train", "--resume", "run"]));
    assert!(stderr(&o).contains("dropped 2 metrics lines"), "{}", stderr(&o));
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let epochs: Vec<u64> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|v| v["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, [1, 2]);
    assert!(text.starts_with(&first));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process training in a run directory holds its lock: a second `--resume`, or a new
/// run with `--force`, is refused and changes nothing; once the lock is free (its
/// process ended, however it ended), both work. (Before: two resumes of one run trained
/// at once, interleaving checkpoints and metrics.) The lock is taken here by this test,
/// as another cuttle process would hold it.
#[test]
fn a_run_directory_in_use_is_refused() {
    let dir = scratch("locked");
    ok(cuttle(&dir, &[&["train", "--out", "run"], &IMAGES[..]].concat()));
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("run/run.lock")).unwrap();
    lock.try_lock().expect("the finished run left its lock free");
    let before = files(&dir.join("run"));
    let force = [&["train", "--out", "run", "--force"], &IMAGES[..]].concat();
    for args in [&["train", "--resume", "run"][..], &force] {
        let o = cuttle(&dir, args);
        let e = stderr(&o);
        assert!(
            !o.status.success() && e.contains("run is in use: another cuttle process is training in it"),
            "{args:?}: {e}"
        );
    }
    assert_eq!(files(&dir.join("run")), before);
    drop(lock);
    assert!(stderr(&ok(cuttle(&dir, &["train", "--resume", "run"]))).contains("has finished"));
    ok(cuttle(&dir, &force));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Options out of range, or of no effect in the configuration given, are refused before
/// any work, each message naming the option, its value and the range or the reason; a
/// text shorter than one window is named as such. (Before: each of these trained, or
/// blamed the batch: "--batch 2 is larger than the training set (0 images)".)
#[test]
fn options_out_of_range_or_of_no_effect_are_named() {
    let dir = scratch("options");
    std::fs::write(dir.join("one.txt"), "x").unwrap();
    std::fs::write(dir.join("fifty.txt"), "a".repeat(50)).unwrap();
    let cnn = ["--model", "cnn", "--epochs", "2"];
    let gpt = ["--model", "gpt-mini", "--steps", "2", "--eval-every", "1"];
    let cases: &[(&[&str], &[&str], &str)] = &[
        (&cnn, &["--optimizer", "adamw", "--momentum", "0.5"], "--momentum 0.5 has no effect here: it is SGD's"),
        (&cnn, &["--beta2", "0.9"], "--beta2 0.9 has no effect here: it is AdamW's"),
        (&cnn, &["--rank-floor", "0.3"], "--rank-floor 0.3 has no effect here: it is Cuttlefish's"),
        (
            &cnn,
            &["--factorize", "reference", "--extra-bn"],
            "has no effect here: it is Cuttlefish's, and the run has no --cuttlefish; drop it (and 1 more: --extra-bn)",
        ),
        (
            &cnn,
            &["--cuttlefish", "--factorize", "reference", "--auto-margin", "0.2"],
            "--auto-margin 0.2 has no effect here: it is for --factorize auto",
        ),
        (
            &cnn,
            &["--cuttlefish", "--frobenius-decay=-1"],
            "--frobenius-decay must be a finite number >= 0 (0: off), not -1",
        ),
        (&cnn, &["--cuttlefish", "--rewarm-epochs", "9"], "--rewarm-epochs 9 is longer than the run (0 to --epochs 2)"),
        (
            &cnn,
            &["--train-subset", "1000000"],
            "--train-subset 1000000: the training split of builtin has 10000 images (1 to 10000)",
        ),
        (&gpt, &["--augment", "none"], "--augment none has no effect here: it is for images"),
        // Counts that overflowed (a panic) or ran past the validation split.
        (
            &cnn[..2],
            &["--epochs", "18446744073709551615"],
            "--epochs 18446744073709551615 is out of range (1 to 1000000)",
        ),
        (
            &gpt[..2],
            &["--steps", "4000000000", "--eval-every", "2"],
            "2000000000 evaluation intervals (--steps / --eval-every 2, or --epochs) is out of range (1 to 1000000)",
        ),
        (
            &gpt[..4],
            &["--eval-every", "18446744073709551615"],
            "--eval-every 18446744073709551615 is out of range (1 to 1000000)",
        ),
        (
            &gpt,
            &["--eval-batches", "100000"],
            "--eval-batches 100000 of --batch 32 asks for more validation windows than the 111476",
        ),
        (
            &gpt,
            &["--data", "text:one.txt"],
            "one.txt: the training split (first 90%) has 0 characters, fewer than one window of 64",
        ),
        (
            &gpt,
            &["--data", "text:fifty.txt"],
            "the training split (first 90%) has 45 characters, fewer than one window of 64",
        ),
        (&gpt, &["--context", "1000000000"], "--context 1000000000: gpt-mini reads 1 to 64 tokens"),
        (
            &gpt,
            &["--data", "text:fifty.txt", "--context", "4", "--batch", "64"],
            "--batch 64 is larger than the training set (41 windows of 4 characters)",
        ),
    ];
    for (model, extra, expected) in cases {
        let out: &[&str] = if extra.contains(&"--name") { &[] } else { &["--out", "run"] };
        let o = cuttle(&dir, &[&["train"], out, *model, *extra].concat());
        let e = stderr(&o);
        assert!(!o.status.success() && e.contains(expected), "{extra:?}: expected {expected:?}, got {e}");
        assert_eq!(e.lines().filter(|l| !l.is_empty()).count(), 1, "{extra:?}: one line: {e}");
    }
    assert!(!dir.join("run").exists() && !dir.join("runs").exists(), "a refused run made its directory");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A successful run prints no `error:` line (Mesa's device-select layer printed
/// "error: XDG_RUNTIME_DIR is invalid or not set" twice where there is no display), and
/// a first run on an adapter says that it is timing GEMM tiles before it goes quiet to
/// do so (it took 100 s to over 4 minutes, silently, on bigger models).
#[test]
fn a_successful_run_prints_no_error_and_tuning_says_what_it_does() {
    let dir = scratch("quiet");
    let bin = std::env::var("CUTTLE_BIN_UNDER_TEST").unwrap_or(env!("CARGO_BIN_EXE_cuttle").into());
    let o = Command::new(bin)
        .args([&["train", "--out", "run"], &IMAGES[..]].concat())
        .current_dir(&dir)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("CUTTLE_TUNE")
        .env("CUTTLE_CACHE_DIR", dir.join("tiles"))
        .output()
        .unwrap();
    let e = stderr(&ok(o));
    assert!(e.lines().all(|l| !l.starts_with("error")), "{e}");
    assert!(e.contains("tiles: timing GEMM tiles for this model's shapes on this adapter"), "{e}");
    assert!(e.contains("tiles: measured"), "the summary after tuning: {e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The data a run trains on is part of its checkpoint (a CRC-32 of both splits):
/// resuming on data that changed since, even with the same characters, is refused
/// naming the data; the run's files stay as they were. (Before: the run went on with
/// other data under the same name.)
#[test]
fn resuming_on_changed_data_is_refused() {
    let dir = scratch("changed-data");
    std::fs::write(dir.join("corpus.txt"), text("abcdefghij")).unwrap();
    let mut args = [&["train"], &T[..], &["--data", "text:corpus.txt", "--out", "run"]].concat();
    args[4] = "4"; // --steps
    ok(cuttle(&dir, &args));
    // The run stopped after two of its four steps (as a kill would leave it).
    let config = std::fs::read_to_string(dir.join("run/config.toml")).unwrap();
    assert!(config.contains("epochs = 4\n"), "{config}");
    let ck_path = dir.join("run/checkpoint.safetensors");
    let mut ck = Checkpoint::load(&ck_path).unwrap();
    assert!(ck.meta.run.as_ref().unwrap().data_crc32.is_some(), "the checkpoint records its data");
    ck.meta.run.as_mut().unwrap().epochs_done = 2;
    ck.save(&dir.join("run")).unwrap();
    let before = files(&dir.join("run"));
    // The same characters in another order.
    std::fs::write(dir.join("corpus.txt"), text("jihgfedcba")).unwrap();
    let o = cuttle(&dir, &["train", "--resume", "run"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("corpus.txt is not the data run was trained on"), "{e}");
    assert_eq!(files(&dir.join("run")), before);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cuttle eval --predictions FILE` writes each test image's label, prediction and
/// logits (to compare with another framework image by image): as many rows as test
/// images, its accuracy the one `eval` reports; counts in the JSON are integers (before:
/// `"images":10.0`); a file of the run's own is refused, and so is a language model.
#[test]
fn eval_writes_per_image_predictions() {
    let dir = scratch("predictions");
    ok(cuttle(&dir, &[&["train", "--out", "run"], &IMAGES[..]].concat()));
    let o = ok(cuttle(&dir, &["eval", "run", "--predictions", "p.csv"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["images"], serde_json::json!(10), "{v}");
    let csv = std::fs::read_to_string(dir.join("p.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("index,label,predicted,logit_0,logit_1,"));
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|c| c.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| r.len() == 3 + 10 && r[3..].iter().all(|x| x.is_finite())));
    let right = rows.iter().filter(|r| r[1] == r[2]).count() as f64;
    assert!((right / 10.0 - v["test_acc"].as_f64().unwrap()).abs() < 1e-6, "{v}");
    for r in &rows {
        let best = (0..10).fold(0, |b, c| if r[3 + c] > r[3 + b] { c } else { b });
        assert_eq!(r[2] as usize, best, "the prediction is the largest logit");
    }
    let o = cuttle(&dir, &["eval", "."]);
    assert!(stderr(&o).contains("error: . is not a run directory: it has no config.toml"), "{}", stderr(&o));
    let o = cuttle(&dir, &["eval", "run", "--predictions", "run/report.json"]);
    assert!(!o.status.success() && stderr(&o).contains("one of the run's own files"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A step-counted run speaks in steps and windows, counts are singular where they are
/// one, and a switch that factorized nothing reports no low-rank time. (Before: "switch
/// to low rank before epoch 4", "MACs/image", "1 steps per evaluation", "1 warm-up
/// steps", "on 1 batches", and "low-rank 0.0s" for a model that stayed full-rank.)
#[test]
fn a_language_model_run_speaks_in_steps() {
    let dir = scratch("words");
    let mut args = [&["train"], &T[..], &["--cuttlefish", "--out", "run"]].concat();
    args[4] = "6"; // --steps
    let e = stderr(&ok(cuttle(&dir, &args)));
    for said in ["1 step per evaluation", "on 1 batch)", "1 warm-up step)", "checked 1 time per evaluation interval"] {
        assert!(e.contains(said), "{said:?} in {e}");
    }
    assert!(e.contains("cuttlefish: switch to low rank before step "), "{e}");
    assert!(e.contains("settled before step "), "{e}");
    for never in ["epoch", "MACs/image", "1 steps", "1 batches", "1 times"] {
        assert!(!e.contains(never), "{never:?} in {e}");
    }
    if e.contains("no layer factorized") {
        assert!(!e.contains("low-rank 0.0s"), "{e}");
    }
    // A run that factorized: `sample` rebuilds the factorized graph from the checkpoint
    // alone (the same text as through the training net, checked against the older build).
    let mut args = [&["train"], &T[..], &["--cuttlefish", "--factorize", "reference", "--out", "low"]].concat();
    args[4] = "6";
    let e = stderr(&ok(cuttle(&dir, &args)));
    assert!(e.contains("switched to low rank before step 4; ranks {"), "{e}");
    let o = ok(cuttle(&dir, &["sample", "low", "--tokens", "30", "--seed", "1"]));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim_end_matches('\n').chars().count(),
        31,
        "a newline and 30 characters"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cuttle bench`: a count of 0 is refused rather than taken as 1 (before, `--reps 0`
/// and `--steps 0` were silently 1), and a size whose data cannot fit the adapter is
/// refused naming it before the host allocates it (before: "memory allocation of
/// 40000000000 bytes failed" and an abort).
#[test]
fn bench_counts_and_sizes_are_checked() {
    let dir = scratch("bench");
    let cases: &[(&[&str], &str)] = &[
        (&["matmul", "--shapes", "5x5x5", "--reps", "0"], "--reps must be at least 1"),
        (
            &["train", "--model", "cnn", "--steps", "0"],
            "--steps must be at least 1 (--plan-only plans without stepping)",
        ),
        (&["train", "--model", "cnn", "--batch", "0", "--plan-only"], "--batch must be at least 1"),
        (
            &["matmul", "--shapes", "100000x100000x100000"],
            "A (100000x100000) takes 40000000000 bytes, more than this adapter's largest storage binding",
        ),
        (
            &["train", "--model", "cnn", "--batch", "100000000", "--plan-only"],
            "--batch 100000000 of cnn's [3, 32, 32] input takes 1228800000000 bytes",
        ),
    ];
    for (args, expected) in cases {
        let o = cuttle(&dir, &[&["bench"], *args].concat());
        let e = stderr(&o);
        assert!(!o.status.success() && e.contains(expected), "{args:?}: expected {expected:?}, got {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
