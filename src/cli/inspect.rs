//! `cuttle eval` and `cuttle export`: what a run's last checkpoint scores, and its model
//! alone in a file PyTorch reads.

use super::load::{described_by_run_data, load_run, run_checkpoint, Loaded};
use super::rundir::RunDir;
use crate::cli;
use cuttle::train::checkpoint;

pub fn eval(
    adapter: &Option<String>,
    dir: &std::path::Path,
    data: Option<String>,
    predictions: Option<&std::path::Path>,
) -> Result<(), cuttle::Error> {
    if let Some(p) = predictions {
        refuse_run_file(dir, p, "eval --predictions", "predictions.csv")?;
    }
    let (gpu, mut session, loaded) = load_run(adapter, dir, data)?;
    let (t, logits) = match (predictions, &loaded) {
        (Some(_), Loaded::Images(_)) => {
            let (t, l) = pollster::block_on(session.trainer.evaluate_with_logits(&gpu))?;
            (t, Some(l))
        }
        (Some(p), Loaded::Text(_)) => {
            return Err(cuttle::Error::Config(format!(
                "eval --predictions {}: per-image predictions are for image models; sample a language model with `cuttle sample`",
                p.display()
            )))
        }
        (None, _) => (pollster::block_on(session.trainer.evaluate(&gpu))?, None),
    };
    let (epochs, trainer) = (session.at.epochs_done, &session.trainer);
    let parameters = trainer.net.graph.param_count();
    // Counts as integers (Totals keeps them as f32 sums on the GPU).
    let rows = t.rows.round() as u64;
    let line = match trainer.cfg.text {
        Some(x) => serde_json::json!({"run": dir.display().to_string(), "steps_trained": epochs * x.eval_every,
            "val_loss": t.mean_loss(), "tokens": rows, "parameters": parameters}),
        None => {
            serde_json::json!({"run": dir.display().to_string(), "epochs_trained": epochs, "test_acc": t.accuracy(),
            "test_loss": t.mean_loss(), "images": rows, "parameters": parameters,
            "normalize": short_decimals(trainer.normalisation())})
        }
    };
    if let (Some(path), Some(logits), Loaded::Images(s)) = (predictions, logits, &loaded) {
        let csv = predictions_csv(&s.test.labels, &logits, trainer.net.graph.classes);
        checkpoint::write_file_atomic(path, csv.as_bytes())
            .map_err(|e| cuttle::Error::Config(format!("eval --predictions {}: {e}", path.display())))?;
        eprintln!("wrote {} predictions to {}", s.test.labels.len(), path.display());
    }
    println!("{line}");
    Ok(())
}

/// One row per test image, in the split's order: `index,label,predicted,logit_0,...`,
/// the logits in f32's shortest decimals (they read back exactly), the prediction the
/// first largest logit (as `argmax` in PyTorch and NumPy).
fn predictions_csv(labels: &[u32], logits: &[f32], classes: usize) -> String {
    let head: Vec<String> = (0..classes).map(|c| format!("logit_{c}")).collect();
    let mut out = format!("index,label,predicted,{}\n", head.join(","));
    for (i, (row, label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let best = (0..classes).fold(0, |b, c| if row[c] > row[b] { c } else { b });
        let cells: Vec<String> = row.iter().map(|x| x.to_string()).collect();
        out += &format!("{i},{label},{best},{}\n", cells.join(","));
    }
    out
}

/// (mean, std) pairs as JSON numbers in the f32s' shortest decimals (0.29132345, not
/// the widened 0.2913234531879425).
pub fn short_decimals(pairs: &[(f32, f32)]) -> Vec<[f64; 2]> {
    let short = |x: f32| x.to_string().parse::<f64>().unwrap_or(f64::NAN);
    pairs.iter().map(|&(m, s)| [short(m), short(s)]).collect()
}

/// `cuttle export --to` (and `eval --predictions`) may not name a file the run itself keeps (its checkpoints,
/// config, metrics, report): exporting over `checkpoint.safetensors` would lose the run.
/// Its `model.safetensors` is an export already, so writing it again is allowed.
pub fn refuse_run_file(
    dir: &std::path::Path,
    to: &std::path::Path,
    flag: &str,
    example: &str,
) -> Result<(), cuttle::Error> {
    if to.is_dir() {
        return Err(cuttle::Error::Config(format!("{flag} {}: a directory; name the file to write", to.display())));
    }
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    let (Some(run), Some(name)) = (canonical(dir), to.file_name()) else { return Ok(()) };
    let parent = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if canonical(parent).as_deref() == Some(run.as_path()) && RunDir::is_run_file(name) {
        return Err(cuttle::Error::Config(format!(
            "{flag} {}: that is one of the run's own files; write elsewhere (e.g. {})",
            to.display(),
            dir.join(example).display()
        )));
    }
    Ok(())
}

/// `cuttle export`: the model alone, and its description printed (what a PyTorch user
/// needs besides the weights).
pub fn export(dir: &std::path::Path, to: &std::path::Path) -> Result<(), cuttle::Error> {
    refuse_run_file(dir, to, "export --to", "model.safetensors")?;
    let (mut ck, path) = run_checkpoint(dir, None)?;
    if ck.meta.lacks_input() {
        let described = cli::config::from_run_dir(dir).and_then(|c| described_by_run_data(&c.resolved(), dir));
        match described {
            Ok(d) if d.model == ck.meta.model => {
                eprintln!(
                    "note: {} is from an older cuttle without the input description; recomputed it from the run's config and data",
                    path.display()
                );
                ck.meta = checkpoint::Meta { run: ck.meta.run.take(), ..d };
            }
            Ok(d) => eprintln!(
                "note: the run's config names model {}, its checkpoint {}: no input description",
                d.model, ck.meta.model
            ),
            Err(e) => {
                eprintln!("note: {} has no input description and the run's data cannot give it: {e}", path.display())
            }
        }
    }
    let model = ck.model_only();
    model.write_atomic(to)?;
    eprintln!("wrote {} tensors to {}", model.tensors.len(), to.display());
    for line in model.meta.describe() {
        println!("{line}");
    }
    Ok(())
}
