//! A run directory: `config.toml` (the resolved options), `metrics.jsonl` (one object per
//! epoch and event), `ranks.csv` (stable rank per tracked layer per epoch), `report.json`
//! (the final summary), `checkpoint.safetensors`, and plots redrawn after every epoch
//! from those files: `loss.svg`, `accuracy.svg`, `ranks.svg` (the switch marked).

use plotters::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct RunDir {
    pub dir: PathBuf,
    metrics: std::fs::File,
    ranks: Option<std::fs::File>,
}

/// The lock a training process holds on its run directory (`RunDir::lock`).
const LOCK_FILE: &str = "run.lock";

/// The files a run writes in its directory (besides temporaries ending in `.tmp`).
const RUN_FILES: [&str; 12] = [
    LOCK_FILE,
    "config.toml",
    "metrics.jsonl",
    "ranks.csv",
    "report.json",
    "checkpoint.safetensors",
    "checkpoint.prev.safetensors",
    "model.safetensors",
    "vocab.json",
    "loss.svg",
    "accuracy.svg",
    "ranks.svg",
];

impl RunDir {
    /// The directory `path` names once it is created, without creating anything: a `..`
    /// after a folder that does not exist yet undoes that folder (as `create_dir_all`
    /// would make it, then step back out of it); after one that exists it is that
    /// folder's real parent (a symlink followed), written relative where the lexical
    /// path means the same. Checking `missing/../x` as written would look through a
    /// folder that is not there, see no run, and the new run would overwrite `x`'s.
    pub fn resolve(path: &Path) -> PathBuf {
        use std::path::Component;
        // The empty path is the current directory.
        let here = |p: &Path| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() };
        let mut out = PathBuf::new();
        for part in path.components() {
            match part {
                Component::ParentDir => {
                    out = match out.parent() {
                        // Above where the path starts (`..`, `../..`) or above the root.
                        _ if out.as_os_str().is_empty() || out.ends_with("..") => out.join(".."),
                        None => out.join(".."),
                        // `a/..` with `a` missing: nothing to follow.
                        Some(up) if !here(&out).exists() => up.to_path_buf(),
                        Some(up) => {
                            let real = |p: &Path| std::fs::canonicalize(here(p)).ok();
                            match real(&out).and_then(|r| r.parent().map(Path::to_path_buf)) {
                                Some(p) if real(up).as_ref() != Some(&p) => p,
                                _ => up.to_path_buf(),
                            }
                        }
                    };
                }
                Component::CurDir => {}
                other => out.push(other),
            }
        }
        here(&out)
    }

    /// True when `dir` holds (part of) a run: its config, metrics or a checkpoint.
    pub fn holds_run(dir: &Path) -> bool {
        ["config.toml", "metrics.jsonl", "checkpoint.safetensors", "checkpoint.prev.safetensors"]
            .iter()
            .any(|f| dir.join(f).exists())
    }

    /// True for a file name the run keeps as its own (not its `model.safetensors`, which
    /// is an export).
    pub fn is_run_file(name: &std::ffi::OsStr) -> bool {
        let name = name.to_string_lossy();
        name.ends_with(".tmp") || RUN_FILES.iter().any(|f| *f == name && *f != "model.safetensors")
    }

    /// Deletes a run's files from `dir` (`--force`), leaving anything else there.
    pub fn clear(dir: &Path) -> Result<(), cuttle::Error> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| cuttle::Error::Config(format!("run directory {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if (RunDir::is_run_file(&name) || name == "model.safetensors") && name != LOCK_FILE {
                std::fs::remove_file(entry.path())
                    .map_err(|e| cuttle::Error::Config(format!("--force: {}: {e}", entry.path().display())))?;
            }
        }
        Ok(())
    }

    /// Before a resume from a checkpoint after `epochs_done` epochs (`switched`: it holds
    /// the Cuttlefish switch): drops what `metrics.jsonl` and `ranks.csv` say of later
    /// epochs (written before a kill that came before their checkpoint; they are trained
    /// again) and a line torn by a kill, so the resumed run appends to whole lines that
    /// agree with its checkpoint. Returns how many lines went.
    pub fn repair(dir: &Path, epochs_done: usize, switched: bool) -> Result<usize, cuttle::Error> {
        let mut dropped = 0;
        let keep_metric = |l: &str| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) if v["event"] == "switch" => switched,
            Ok(v) => v["epoch"].as_u64().is_some_and(|e| e as usize <= epochs_done),
            Err(_) => false,
        };
        let keep_rank =
            |l: &str| l.split(',').next().and_then(|e| e.parse::<usize>().ok()).is_some_and(|e| e <= epochs_done);
        for (name, keep) in [("metrics.jsonl", &keep_metric as &dyn Fn(&str) -> bool), ("ranks.csv", &keep_rank)] {
            let path = dir.join(name);
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            // ranks.csv's header stays; a last line without its newline is torn.
            let kept: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|(i, l)| l.ends_with('\n') && ((name == "ranks.csv" && *i == 0) || keep(l.trim_end())))
                .map(|(_, l)| *l)
                .collect();
            if kept.len() != lines.len() {
                dropped += lines.len() - kept.len();
                let err = |e: std::io::Error| cuttle::Error::Config(format!("{}: {e}", path.display()));
                cuttle::train::checkpoint::write_file_atomic(&path, kept.concat().as_bytes()).map_err(err)?;
            }
        }
        Ok(dropped)
    }

    /// Makes `dir` (if need be) and takes its lock for as long as the returned file is
    /// open: a second process training in the same directory (two `--resume`s, or a new
    /// run with --force) is refused instead of interleaving its checkpoints and metrics
    /// with the first's. The lock is the operating system's (flock / LockFileEx), so a
    /// killed process never leaves it held.
    pub fn lock(dir: &Path) -> Result<std::fs::File, cuttle::Error> {
        let path = dir.join(LOCK_FILE);
        let err = |e: std::io::Error| cuttle::Error::Config(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(dir).map_err(err)?;
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(err)?;
        // The file stays empty: resuming a finished run changes nothing in its directory.
        match f.try_lock() {
            Ok(()) => Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => Err(cuttle::Error::Config(format!(
                "{} is in use: another cuttle process is training in it; wait for it to end or stop it, then try again",
                dir.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
        }
    }

    /// Creates the directory, or with `append` continues its files (resume).
    pub fn create(dir: &Path, append: bool) -> Result<RunDir, cuttle::Error> {
        let err = |e: std::io::Error| cuttle::Error::Config(format!("run directory {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(err)?;
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(dir.join("metrics.jsonl"))
            .map_err(err)?;
        let ranks =
            if append { std::fs::OpenOptions::new().append(true).open(dir.join("ranks.csv")).ok() } else { None };
        Ok(RunDir { dir: dir.to_path_buf(), metrics, ranks })
    }

    /// Writes a whole file crash-safely: a kill or a full disk leaves the old one or the new one.
    pub fn write(&self, name: &str, text: &str) -> Result<(), cuttle::Error> {
        cuttle::train::checkpoint::write_file_atomic(&self.dir.join(name), text.as_bytes()).map_err(|e| self.io(e))
    }

    fn io(&self, e: impl std::fmt::Display) -> cuttle::Error {
        cuttle::Error::Config(format!("writing to {}: {e}", self.dir.display()))
    }

    /// Appends one line in one write: a kill leaves the line whole or torn at its end,
    /// never interleaved with a later one (`writeln!` on a file writes piece by piece).
    pub fn metric(&mut self, v: &serde_json::Value) -> Result<(), cuttle::Error> {
        self.metrics.write_all(format!("{v}\n").as_bytes()).map_err(|e| self.io(e))
    }

    pub fn ranks_header(&mut self, names: &[String]) -> Result<(), cuttle::Error> {
        let mut f = std::fs::File::create(self.dir.join("ranks.csv")).map_err(|e| self.io(e))?;
        writeln!(f, "epoch,{}", names.join(",")).map_err(|e| self.io(e))?;
        self.ranks = Some(f);
        Ok(())
    }

    pub fn ranks_row(&mut self, epoch: usize, s: &[f64]) -> Result<(), cuttle::Error> {
        let row: Vec<String> = s.iter().map(|v| format!("{v:.4}")).collect();
        let line = format!("{epoch},{}\n", row.join(","));
        let r = self.ranks.as_mut().map(|f| f.write_all(line.as_bytes()));
        r.unwrap_or(Ok(())).map_err(|e| self.io(e))
    }

    pub fn report(&self, v: &impl serde::Serialize) -> Result<(), cuttle::Error> {
        let text = serde_json::to_string_pretty(v).expect("report serialises");
        self.write("report.json", &text)
    }

    /// Redraws the plots from `metrics.jsonl` and `ranks.csv`.
    pub fn plots(&mut self) -> Result<(), cuttle::Error> {
        self.metrics.flush().map_err(|e| self.io(e))?;
        if let Some(f) = self.ranks.as_mut() {
            f.flush().map_err(|e| self.io(e))?;
        }
        let h = History::read(&self.dir);
        let epoch_series = |f: fn(&serde_json::Value) -> Option<f64>| -> Vec<(f64, f64)> {
            h.epochs.iter().filter_map(|e| Some((e["epoch"].as_f64()?, f(e)?))).collect()
        };
        let loss = [
            ("train", epoch_series(|e| e["train_loss"].as_f64())),
            ("test", epoch_series(|e| e["test_loss"].as_f64())),
        ];
        let acc = [
            ("train", epoch_series(|e| e["train_acc"].as_f64().map(|a| 100.0 * a))),
            ("test", epoch_series(|e| e["test_acc"].as_f64().map(|a| 100.0 * a))),
        ];
        let draw = |file: &str, title: &str, y: &str, series: &[(&str, Vec<(f64, f64)>)], legend| {
            line_chart(&self.dir.join(file), title, y, series, h.switch_epoch, legend).map_err(|e| self.io(e))
        };
        draw("loss.svg", "Loss (dashed: switch to low rank)", "cross-entropy", &loss, SeriesLabelPosition::UpperRight)?;
        draw(
            "accuracy.svg",
            "Accuracy (dashed: switch to low rank)",
            "% correct",
            &acc,
            SeriesLabelPosition::LowerRight,
        )?;
        if !h.ranks.is_empty() {
            let series: Vec<(&str, Vec<(f64, f64)>)> = h.ranks.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
            let title = "Stable rank per layer (dashed: switch to low rank)";
            draw("ranks.svg", title, "stable rank", &series, SeriesLabelPosition::UpperRight)?;
        }
        Ok(())
    }
}

/// What the plots need, read back from a run's files (so a resumed run plots its
/// whole history).
struct History {
    epochs: Vec<serde_json::Value>,
    /// Epochs trained before the switch.
    switch_epoch: Option<f64>,
    ranks: Vec<(String, Vec<(f64, f64)>)>,
}

impl History {
    fn read(dir: &Path) -> History {
        let mut h = History { epochs: vec![], switch_epoch: None, ranks: vec![] };
        let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
        for v in text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
            if v["event"] == "switch" {
                h.switch_epoch = v["epoch"].as_f64().map(|e| e - 1.0);
            } else if v.get("train_loss").is_some() {
                h.epochs.push(v);
            }
        }
        let csv = std::fs::read_to_string(dir.join("ranks.csv")).unwrap_or_default();
        let mut lines = csv.lines();
        if let Some(head) = lines.next() {
            h.ranks = head.split(',').skip(1).map(|n| (n.to_string(), vec![])).collect();
            for line in lines {
                let cells: Vec<f64> = line.split(',').filter_map(|c| c.parse().ok()).collect();
                for (i, v) in cells.iter().skip(1).enumerate() {
                    if let Some(s) = h.ranks.get_mut(i) {
                        s.1.push((cells[0], *v));
                    }
                }
            }
        }
        h
    }
}

/// One SVG line chart over epochs; `mark` draws a dashed vertical line (the switch).
fn line_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    mark: Option<f64>,
    legend: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    // Only finite points are drawn: an infinite or NaN value (a diverged run's last
    // epoch) would give the axis an infinite range, and plotters loops forever laying out
    // its ticks.
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(n, pts)| (*n, pts.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect()))
        .collect();
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in series.iter().flat_map(|s| s.1.iter()) {
        x1 = x1.max(x);
        (y0, y1) = (y0.min(y), y1.max(y));
    }
    if !(y0.is_finite() && y1.is_finite()) {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    if !pad.is_finite() {
        return Err(format!("{}: values too large to plot ({y0} to {y1})", path.display()).into());
    }
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x1, (y0 - pad)..(y1 + pad))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_label)
        .x_labels((x1 as usize + 1).min(12))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    if let Some(e) = mark {
        let dashes = (0..24).map(|i| {
            let (a, b) = (i as f64 / 24.0, (i as f64 + 0.5) / 24.0);
            let y = |t: f64| y0 - pad + t * (y1 - y0 + 2.0 * pad);
            PathElement::new(vec![(e, y(a)), (e, y(b))], BLACK.stroke_width(1))
        });
        chart.draw_series(dashes)?;
    }
    chart.configure_series_labels().position(legend).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::RunDir;
    use std::path::{Path, PathBuf};

    #[test]
    fn a_path_resolves_to_the_directory_it_will_be() {
        let base = std::env::temp_dir().join(format!("cuttle-resolve-{}", std::process::id()));
        std::fs::create_dir_all(base.join("real/inner")).unwrap();
        let r = |p: &str| RunDir::resolve(&base.join(p));
        // Through folders that do not exist yet, and through ones that do.
        assert_eq!(r("missing/../ck/run"), base.join("ck/run"));
        assert_eq!(r("a/b/../../ck/./run"), base.join("ck/run"));
        assert_eq!(r("real/inner/../x"), base.join("real/x"));
        assert_eq!(RunDir::resolve(Path::new("runs/../ck/r")), PathBuf::from("ck/r"));
        assert_eq!(RunDir::resolve(Path::new("../up")), PathBuf::from("../up"));
        assert_eq!(RunDir::resolve(Path::new("x/..")), PathBuf::from("."));
        // A symlink's `..` is its target's parent, as the file system resolves it.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(base.join("real/inner"), base.join("link")).unwrap();
            let real = std::fs::canonicalize(base.join("real")).unwrap();
            assert_eq!(r("link/../y"), real.join("y"));
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
