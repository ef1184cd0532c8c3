//! The export's metadata: what a PyTorch user needs besides the weights. A tiny
//! Cuttlefish run's `model.safetensors` records the training split's normalisation, the
//! input shape, class names, model name and the ranks of the factorized layers (in the
//! `cuttle` record and as plain strings); `cuttle export` prints them; `cuttle eval
//! --data` on another data set normalises with the run's values; a checkpoint from before
//! the fields loads (and exports, recomputing them); inconsistent metadata is a clear
//! error naming the file.

use cuttle::data::{self, DataSpec};
use cuttle::train::checkpoint::{Checkpoint, Meta, FILE, META_KEY, PLAIN_KEYS};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuttle-export-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary: (success, stdout, stderr); never a panic.
fn cuttle(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle")).args(args).output().expect("the binary runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(!stderr.contains("panicked"), "cuttle {args:?} panicked:\n{stderr}");
    (out.status.success(), stdout, stderr)
}

/// The file's metadata strings, as `safe_open(path).metadata()` gives them.
fn strings(path: &Path) -> HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    md.metadata().clone().unwrap_or_default()
}

/// Rewrites `path` with its `cuttle` record replaced by `f(record)`, tensors (and so the
/// CRC) unchanged.
fn edit_record(path: &Path, f: impl Fn(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut strings = md.metadata().clone().unwrap();
    let mut record: serde_json::Value = serde_json::from_str(&strings[META_KEY]).unwrap();
    f(&mut record);
    strings.insert(META_KEY.into(), record.to_string());
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let out = safetensors::serialize(st.tensors(), Some(strings)).unwrap();
    // The checksum covers the metadata: recomputed, so the checks behind it are reached.
    std::fs::write(path, Checkpoint::reseal(path, &out).unwrap()).unwrap();
}

/// An MNIST-format data set of the built-in set's shape whose pixels are far from its
/// statistics (a bright band), so its own normalisation would differ.
fn write_other_data(dir: &Path) {
    let be = |v: &[u32]| v.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
    let split = |n: u32| {
        let px: Vec<u8> =
            (0..n as usize * 784).map(|i| if (i % 784) / 28 < 14 { 250 } else { (i % 7) as u8 }).collect();
        let images = [be(&[0x803, n, 28, 28]), px].concat();
        let labels = [be(&[0x801, n]), (0..n).map(|i| (i % 10) as u8).collect()].concat();
        (images, labels)
    };
    let (tri, trl) = split(60);
    let (tei, tel) = split(20);
    for (name, b) in [
        ("train-images-idx3-ubyte", tri),
        ("train-labels-idx1-ubyte", trl),
        ("t10k-images-idx3-ubyte", tei),
        ("t10k-labels-idx1-ubyte", tel),
    ] {
        std::fs::write(dir.join(name), b).unwrap();
    }
}

/// The error loading `path` (without printing a whole checkpoint when it loads).
fn load_err(path: &Path) -> String {
    match Checkpoint::load(path) {
        Ok(ck) => panic!("{} loaded: {:?}", path.display(), ck.meta),
        Err(e) => e.to_string(),
    }
}

/// `eval`'s JSON line.
fn eval(args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = cuttle(&[&["eval"], args].concat());
    assert!(ok, "{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn normalize_of(v: &serde_json::Value) -> Vec<(f32, f32)> {
    serde_json::from_value(v["normalize"].clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

#[test]
fn a_cuttlefish_export_carries_what_pytorch_needs() {
    if cuttle::gpu::test_gpu().is_none() {
        return;
    }
    let dir = scratch("run");
    let run = dir.join("run");
    let run_s = run.display().to_string();
    let (ok, _, err) = cuttle(&[
        "train",
        "--model",
        "cnn",
        "--epochs",
        "4",
        "--batch",
        "50",
        // The demo page's `test` recipe (README: its switch comes before epoch 3): this
        // test needs a run that switches, and this is the smallest that does.
        "--lr",
        "0.2",
        "--train-subset",
        "400",
        "--test-subset",
        "100",
        "--cuttlefish",
        "--factorize",
        "reference",
        "--seed",
        "3",
        "--out",
        &run_s,
    ]);
    assert!(ok, "{err}");
    let train = data::load(&DataSpec::Builtin).unwrap().train.subset(400);
    let want_norm = train.channel_mean_std();

    let file = dir.join("model.safetensors");
    let file_s = file.display().to_string();
    let (ok, out, err) = cuttle(&["export", &run_s, "--to", &file_s]);
    assert!(ok, "{err}");
    let model = Checkpoint::load(&file).unwrap();
    let m = &model.meta;
    assert_eq!((m.model.as_str(), &m.run), ("cnn", &None));
    assert_eq!(m.normalize, want_norm, "the training split's channel_mean_std");
    assert_eq!(m.input_shape, [1, 28, 28]);
    assert_eq!((m.classes, &m.class_names), (10, &train.class_names));
    assert_eq!(m.class_names[0], "T-shirt/top");
    // The ranks are those of the run's switch (whenever the detector let it come).
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let report_ranks: BTreeMap<String, usize> = serde_json::from_value(report["ranks"].clone()).unwrap();
    assert!(!report["switch_epoch"].is_null(), "the run must switch for this test: {report}");
    assert!(!report_ranks.is_empty(), "{report}");
    assert_eq!(m.ranks, report_ranks);
    assert_eq!(Checkpoint::load(&run.join(FILE)).unwrap().meta.factorized_ranks(), report_ranks);
    // The model the run wrote itself is the same export.
    assert_eq!(Checkpoint::load(&run.join("model.safetensors")).unwrap(), model);

    // Plain strings for PyTorch, JSON values.
    let s = strings(&file);
    let json = |k: &str| -> serde_json::Value { serde_json::from_str(&s[k]).unwrap_or_else(|e| panic!("{k}: {e}")) };
    assert_eq!(s["model"], "cnn");
    assert_eq!(json("input_shape"), serde_json::json!([1, 28, 28]));
    let mean: Vec<f32> = serde_json::from_value(json("normalize_mean")).unwrap();
    let std: Vec<f32> = serde_json::from_value(json("normalize_std")).unwrap();
    assert_eq!((mean[0], std[0]), want_norm[0], "plain strings round-trip the f32s exactly");
    assert_eq!(json("class_names"), serde_json::json!(train.class_names));
    assert_eq!(json("ranks"), serde_json::json!(report_ranks));
    assert!(!s.contains_key("vocab_size"));

    // `cuttle export` prints them.
    let (mean, std) = want_norm[0];
    for needle in [
        "model: cnn".to_string(),
        "input: [1, 28, 28] (C, H, W)".to_string(),
        format!("normalize: mean [{mean:.4}], std [{std:.4}]"),
        "classes: 10 (T-shirt/top, Trouser,".to_string(),
        "ranks: ".to_string(),
    ] {
        assert!(out.contains(&needle), "{needle:?} not in:\n{out}");
    }
    for (layer, rank) in &report_ranks {
        assert!(out.contains(&format!("{layer} {rank}")), "{layer} {rank} not in:\n{out}");
    }

    // `eval` on its own data and on another: the run's normalisation both times.
    assert_eq!(normalize_of(&eval(&[&run_s])), want_norm);
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    write_other_data(&other);
    let other_spec = format!("mnist:{}", other.display());
    let other_norm = data::load(&DataSpec::Mnist(other.clone())).unwrap().train.channel_mean_std();
    assert!((other_norm[0].0 - want_norm[0].0).abs() > 0.1, "{other_norm:?} vs {want_norm:?}");
    let e = eval(&[&run_s, "--data", &other_spec]);
    assert_eq!(normalize_of(&e), want_norm, "eval --data normalises with the run's values: {e}");
    assert_eq!(e["images"].as_f64(), Some(20.0), "{e}");

    // A checkpoint from before the fields: loads, exports with them recomputed from the
    // run's config and data, and `eval --data` still uses the run's own normalisation.
    let ck_path = run.join(FILE);
    edit_record(&ck_path, |r| {
        let o = r.as_object_mut().unwrap();
        for k in ["input_shape", "normalize", "class_names", "classes", "ranks"] {
            o.remove(k);
        }
    });
    let old = Checkpoint::load(&ck_path).unwrap();
    assert!(old.meta.lacks_input() && old.meta.normalize.is_empty() && old.meta.classes == 0);
    let again = dir.join("again.safetensors");
    let (ok, out2, err) = cuttle(&["export", &run_s, "--to", &again.display().to_string()]);
    assert!(ok && err.contains("older cuttle"), "{err}");
    assert_eq!(out2, out, "the same description, recomputed");
    assert_eq!(Checkpoint::load(&again).unwrap(), model);
    let (ok, out3, err) = cuttle(&["eval", &run_s, "--data", &other_spec]);
    assert!(ok && err.contains("recomputed it from the run's own training split"), "{err}");
    assert_eq!(normalize_of(&serde_json::from_str(out3.trim()).unwrap()), want_norm);

    // Inconsistent or malformed metadata: a clear error naming the file, never a panic.
    edit_record(&ck_path, |r| r["normalize"] = serde_json::json!([[0.5, 0.0]]));
    let e = load_err(&ck_path);
    assert!(e.contains(FILE) && e.contains("inconsistent `cuttle` metadata"), "{e}");
    // With the previous checkpoint beside it, the run goes on from that one, saying why;
    // without, the fault is the error.
    let (ok, _, err) = cuttle(&["eval", &run_s]);
    assert!(ok && err.contains("positive std") && err.contains("using the previous checkpoint"), "{err}");
    std::fs::remove_file(run.join(cuttle::train::checkpoint::PREVIOUS)).unwrap();
    let (ok, _, err) = cuttle(&["eval", &run_s]);
    assert!(!ok && err.contains("positive std"), "{err}");
    edit_record(&ck_path, |r| r["normalize"] = serde_json::json!("0.5"));
    let (ok, _, err) = cuttle(&["export", &run_s, "--to", &file_s]);
    assert!(!ok && err.contains(FILE) && err.contains("malformed `cuttle` metadata"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a GPU: the record's own checks, an export of an export, and what it prints.
#[test]
fn metadata_checks_and_describes_itself() {
    let meta = Meta {
        model: "resnet6".into(),
        input_shape: vec![3, 32, 32],
        normalize: vec![(0.49, 0.25), (0.48, 0.24), (0.45, 0.26)],
        class_names: (0..10).map(|i| format!("c{i}")).collect(),
        classes: 10,
        ranks: BTreeMap::from([("layer1.0.conv1".to_string(), 7)]),
        ..Default::default()
    };
    assert_eq!(meta.check(), Ok(()));
    assert_eq!(meta.factorized_ranks(), meta.ranks, "an export's own ranks");
    let ck = Checkpoint { tensors: BTreeMap::from([("w".into(), (vec![1], vec![1.0]))]), meta: meta.clone() };
    assert_eq!(ck.model_only().meta, meta, "an export of an export keeps everything");
    let lines = meta.describe().join("\n");
    assert!(lines.contains("normalize: mean [0.4900, 0.4800, 0.4500], std [0.2500, 0.2400, 0.2600]"), "{lines}");
    assert!(lines.contains("ranks: layer1.0.conv1 7") && lines.contains("classes: 10 (c0, c1,"), "{lines}");

    let dir = scratch("meta");
    let path = ck.model_only().save(&dir).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap().meta, meta);
    let s = strings(&path);
    for k in PLAIN_KEYS.iter().filter(|k| !["vocab_size", "vocab"].contains(*k)) {
        assert!(s.contains_key(*k), "{k} missing: {s:?}");
    }
    assert_eq!(s["normalize_mean"], "[0.49,0.48,0.45]");

    let text = Meta { model: "gpt-char".into(), input_shape: vec![64], classes: 65, ..Default::default() };
    assert_eq!(text.check(), Ok(()));
    let lines = text.describe().join("\n");
    assert!(lines.contains("input: 64 tokens") && lines.contains("vocabulary: 65"), "{lines}");
    assert!(lines.contains("ranks: no factorized layers"), "{lines}");
    // A language model's vocabulary: its characters in id order, one per output.
    let abc =
        Meta { model: "gpt-mini".into(), input_shape: vec![8], classes: 3, vocab: "\nab".into(), ..Default::default() };
    assert_eq!(abc.check(), Ok(()));
    assert!(abc.describe().join("\n").contains(r#"vocabulary: 3 characters, in id order "\nab""#));
    assert!(Meta { vocab: "ba\n".into(), ..abc.clone() }.check().unwrap_err().contains("sorted"));
    assert!(Meta { vocab: "ab".into(), ..abc.clone() }.check().unwrap_err().contains("2 characters for 3 outputs"));

    let bad = |m: Meta, needle: &str| {
        let e = m.check().unwrap_err();
        assert!(e.contains(needle), "{needle:?} not in {e:?}");
    };
    bad(Meta { normalize: vec![(0.5, 0.5)], ..meta.clone() }, "3 channels but normalize has 1");
    bad(Meta { normalize: vec![(f32::NAN, 0.5); 3], ..meta.clone() }, "finite mean");
    bad(Meta { input_shape: vec![3, 32], ..meta.clone() }, "2 dimensions");
    bad(Meta { input_shape: vec![3, 0, 32], ..meta.clone() }, "zero dimension");
    bad(Meta { classes: 9, ..meta.clone() }, "10 class names for 9 classes");
    bad(Meta { normalize: vec![(0.5, 0.5)], ..text }, "token");
    assert_eq!(Meta { model: "cnn".into(), ..Default::default() }.check(), Ok(()), "an old record");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The trainer normalises with what it is given (a run's recorded values), and refuses
/// values that cannot normalise this data.
#[test]
fn a_trainer_uses_the_normalisation_it_is_given() {
    let Some(gpu) = cuttle::gpu::test_gpu() else { return };
    let mut splits = data::load(&DataSpec::Builtin).unwrap();
    splits.train = splits.train.subset(40);
    splits.test = splits.test.subset(20);
    let cfg = cuttle::train::TrainConfig { model: "cnn".into(), batch: 20, ..Default::default() };
    let t = cuttle::train::Trainer::new(&gpu, &splits, cfg.clone()).unwrap();
    assert_eq!(t.normalisation(), splits.train.channel_mean_std(), "by default the training split's");
    assert_eq!(t.augment.mean_std, t.normalisation());
    let given = vec![(0.25, 0.5)];
    let t = cuttle::train::Trainer::new(
        &gpu,
        &splits,
        cuttle::train::TrainConfig { normalize: Some(given.clone()), ..cfg.clone() },
    )
    .unwrap();
    assert_eq!((t.normalisation(), &t.augment.mean_std), (&given[..], &given), "training and evaluation alike");
    let err = |n: Vec<(f32, f32)>| match cuttle::train::Trainer::new(
        &gpu,
        &splits,
        cuttle::train::TrainConfig { normalize: Some(n), ..cfg.clone() },
    ) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err(vec![(0.5, 0.5); 3]).contains("has 3 channels"));
    assert!(err(vec![(0.5, 0.0)]).contains("positive std"));
}
