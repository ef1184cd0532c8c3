//! A run's data and checkpoint, loaded and checked: for a new run before any GPU work
//! (`plan`), and for a run directory read back by `--resume`, `eval`, `export` and
//! `sample` (`load_run`, `run_checkpoint`).

use crate::{cli, gpu};
use cuttle::cuttlefish::CuttlefishConfig;
use cuttle::data::{self, DataSpec, Source, TextData};
use cuttle::gpu::Gpu;
use cuttle::nn::models::{self, is_language_model, model_by_name};
use cuttle::session::Session;
use cuttle::train::checkpoint::{self, Checkpoint};
use cuttle::train::{RunConfig, TrainConfig};

/// A run's data in memory: image splits, or a language model's text.
pub enum Loaded {
    Images(data::Splits),
    Text(TextData),
}

impl Loaded {
    pub fn source(&self) -> Source<'_> {
        match self {
            Loaded::Images(s) => Source::Images(s),
            Loaded::Text(t) => Source::Text(t),
        }
    }

    /// A CRC-32 of what the trainer reads (both splits' images and labels, or both
    /// splits' character ids), recorded in each checkpoint so that resuming on data
    /// that changed since is refused.
    pub fn crc32(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        let ids = |h: &mut crc32fast::Hasher, v: &[u32]| v.iter().for_each(|x| h.update(&x.to_le_bytes()));
        match self {
            Loaded::Images(s) => {
                for d in [&s.train, &s.test] {
                    h.update(&(d.n as u64).to_le_bytes());
                    h.update(&d.images);
                    ids(&mut h, &d.labels);
                }
            }
            Loaded::Text(t) => {
                for split in [&t.train, &t.val] {
                    h.update(&(split.len() as u64).to_le_bytes());
                    ids(&mut h, split);
                }
            }
        }
        h.finalize()
    }

    /// Training samples the batch must fit in: images, or window starts.
    pub fn train_count(&self, c: &RunConfig) -> usize {
        match self {
            Loaded::Images(s) => s.train.n,
            Loaded::Text(t) => t.train.len().saturating_sub(c.resolved().context.unwrap_or(0)),
        }
    }
}

/// The vocabulary a run's character ids mean, and how the text loaded for it must use it.
pub struct Vocab {
    /// The characters in id order.
    pub chars: Vec<char>,
    /// The run's own text (resume, eval without --data): its characters must be exactly
    /// these, or the text changed since the run trained. Other text may use part of them.
    pub exact: bool,
}

/// The data set `c` names, with the requested class-balanced subsets; a language model's
/// text over `vocab` (a run's own, from its checkpoint) when given.
pub fn load_data(c: &RunConfig, vocab: Option<Vocab>) -> Result<(DataSpec, Loaded), cuttle::Error> {
    let spec: DataSpec = c.data().parse().map_err(cuttle::Error::Config)?;
    if is_language_model(&c.model) {
        if c.train_subset.is_some() || c.test_subset.is_some() {
            return Err(cuttle::Error::Config("--train-subset and --test-subset are for images: a language model draws windows (--steps, --eval-batches)".into()));
        }
        let text = match (vocab, &spec) {
            (Some(v), DataSpec::Text(p)) if !v.exact => TextData::load_with_vocab(p, v.chars)?,
            (Some(v), _) => {
                let text = data::load_text(&spec)?;
                same_vocabulary(&spec, &text.vocab, &v)?;
                text
            }
            (None, _) => data::load_text(&spec)?,
        };
        return Ok((spec, Loaded::Text(text)));
    }
    for (flag, n) in [("--train-subset", c.train_subset), ("--test-subset", c.test_subset)] {
        if n == Some(0) {
            return Err(cuttle::Error::Config(format!("{flag} must be at least 1 (0 would leave that split empty)")));
        }
    }
    let mut splits = data::load(&spec)?;
    if let Some(n) = c.train_subset {
        splits.train = splits.train.subset(n);
    }
    if let Some(n) = c.test_subset {
        splits.test = splits.test.subset(n);
    }
    // An empty split would train nothing or report figures of no images.
    for (split, d) in [("training", &splits.train), ("test", &splits.test)] {
        if d.n == 0 {
            return Err(cuttle::Error::Config(format!("{spec}: the {split} split has no images")));
        }
    }
    Ok((spec, Loaded::Images(splits)))
}

/// A text that gives itself its ids (the built-in one, or the run's own) must have
/// exactly the run's characters: with one more, one fewer or one replaced, sorting them
/// gives other ids and every prediction would be read as another character.
fn same_vocabulary(spec: &DataSpec, text: &[char], run: &Vocab) -> Result<(), cuttle::Error> {
    if text == run.chars {
        return Ok(());
    }
    let only = |a: &[char], b: &[char]| a.iter().filter(|c| !b.contains(c)).collect::<String>();
    let (what, advice) = match run.exact {
        true => ("no longer has", "the text changed since the run trained: restore it, or train a new run on it"),
        false => ("does not have", "a language model reads only the characters it was trained on, with their ids"),
    };
    Err(cuttle::Error::Config(format!(
        "{spec} {what} the run's vocabulary: {} characters in the text, {} in the run's checkpoint (only in the text: {:?}; only in the run's vocabulary: {:?}); {advice}",
        text.len(),
        run.chars.len(),
        only(text, &run.chars),
        only(&run.chars, text)
    )))
}

/// The vocabulary of a language model run: its checkpoint's, or for a checkpoint from
/// before cuttle recorded it there, the run's `vocab.json`; None for an image model or a
/// run older than both (its text then gives the vocabulary, as it did).
pub fn run_vocab(ck: &Checkpoint, dir: &std::path::Path) -> Result<Option<Vec<char>>, cuttle::Error> {
    if !ck.meta.vocab.is_empty() {
        return Ok(Some(ck.meta.vocab.chars().collect()));
    }
    if !ck.meta.is_text() && !ck.meta.lacks_input() {
        return Ok(None);
    }
    vocab_file(dir)
}

/// The vocabulary in a run's `vocab.json`, if it has one.
fn vocab_file(dir: &std::path::Path) -> Result<Option<Vec<char>>, cuttle::Error> {
    let path = dir.join(cli::sample::VOCAB_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => cli::sample::parse_vocab(&text)
            .map(Some)
            .map_err(|e| cuttle::Error::Config(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(cuttle::Error::Config(format!("{}: {e}", path.display()))),
    }
}

/// A run's data and checked settings, before any GPU work.
pub struct Plan {
    pub spec: DataSpec,
    pub data: Loaded,
    pub cfg: TrainConfig,
    pub cf: Option<CuttlefishConfig>,
}

/// Loads the data and checks every setting, the model and its layer names, so that a
/// typo fails at once on any machine.
pub fn plan(c: &RunConfig, vocab: Option<Vocab>) -> Result<Plan, cuttle::Error> {
    let (spec, data) = load_data(c, vocab)?;
    // The model before the settings: a context outside the model's range, or longer than
    // the text, is named as such, not as a batch larger than the (then empty) set of
    // windows.
    let graph = match &data {
        Loaded::Images(s) => {
            let t = &s.train;
            model_by_name(&c.model, [t.channels, t.height, t.width], t.classes).map_err(cuttle::Error::Config)?
        }
        Loaded::Text(t) => {
            let g = models::language_model(&c.model, c.context, t.vocab.len()).map_err(cuttle::Error::Config)?;
            t.check_context(g.shape(cuttle::nn::Graph::INPUT).0[0])?;
            g
        }
    };
    if let Loaded::Images(s) = &data {
        // A subset as large as the split or larger is the whole split: say so rather than
        // train on fewer images than asked.
        let splits = [
            ("--train-subset", "training", c.train_subset, &s.train),
            ("--test-subset", "test", c.test_subset, &s.test),
        ];
        for (flag, split, want, d) in splits {
            if let Some(n) = want.filter(|&n| n > d.n) {
                let range = format!("{} images (1 to {})", d.n, d.n);
                return Err(cuttle::Error::Config(format!("{flag} {n}: the {split} split of {spec} has {range}")));
            }
        }
    }
    c.check_no_unused_options()?;
    let (cfg, cf) = c.settings(data.train_count(c))?;
    if let (Loaded::Text(t), Some(tc)) = (&data, cfg.text) {
        t.check_eval_windows(tc.context, tc.eval_batches, cfg.batch)?;
    }
    if let Some(cf) = &cf {
        cuttle::cuttlefish::run::check_layers(&graph, &cf.factorize)?;
    }
    Ok(Plan { spec, data, cfg, cf })
}

/// A run directory's checkpoint (the previous one, with the warning printed, when the
/// live one is missing or damaged) and the file it came from; with `model`, refused at
/// once when it is another model's than the run's `config.toml` names.
pub fn run_checkpoint(
    dir: &std::path::Path,
    model: Option<&str>,
) -> Result<(Checkpoint, std::path::PathBuf), cuttle::Error> {
    let (ck, path, warning) = Checkpoint::load_run(dir)?;
    if let Some(w) = warning {
        eprintln!("{w}");
    }
    match model {
        Some(m) if ck.meta.model != m => Err(cuttle::Error::Config(format!(
            "{} holds a {} checkpoint but the run's {} says model {m}",
            path.display(),
            ck.meta.model,
            cli::config::FILE
        ))),
        _ => Ok((ck, path)),
    }
}

/// The session of a run directory with its last checkpoint loaded (the factorized net if
/// the run switched), on `data` instead of the run's own data if given.
pub fn load_run(
    adapter: &Option<String>,
    dir: &std::path::Path,
    data: Option<String>,
) -> Result<(Gpu, Session, Loaded), cuttle::Error> {
    let own = cli::config::from_run_dir(dir)?.resolved();
    let mut c = own.clone();
    let other = data.is_some();
    if let Some(d) = data {
        c.data = Some(d);
    }
    let (ck, path) = run_checkpoint(dir, Some(&own.model))?;
    let vocab = run_vocab(&ck, dir)?.map(|chars| Vocab { chars, exact: !other });
    let (_, data) = load_data(&c, vocab).map_err(|e| {
        // The run's own data by a relative path, from another directory than it trained in.
        let spec: Option<DataSpec> = c.data().parse().ok();
        match spec.as_ref().and_then(|s| s.path()) {
            Some(p) if !other && p.is_relative() && !p.exists() => cuttle::Error::Config(format!(
                "{e} (the run's data, by a path relative to where it trained: run this from there, or name the data with --data)"
            )),
            _ => e,
        }
    })?;
    let n = data.train_count(&c);
    c.batch = c.batch.map(|b| b.min(n));
    let (mut cfg, cf) = c.settings(n)?;
    // Images are normalised as the run normalised them, whatever data they come from.
    if let Loaded::Images(_) = &data {
        if !ck.meta.normalize.is_empty() {
            cfg.normalize = Some(ck.meta.normalize.clone());
        } else if other {
            // A checkpoint from before the normalisation was recorded: recompute the
            // run's own from its training split.
            let meta = described_by_run_data(&own, dir)?;
            eprintln!(
                "note: {} does not record the run's input normalisation (an older cuttle); recomputed it from the run's own training split",
                path.display()
            );
            cfg.normalize = Some(meta.normalize);
        }
    }
    let gpu = gpu(adapter)?;
    let session = pollster::block_on(Session::resume(&gpu, data.source(), cfg, cf, &ck, &path))?;
    Ok((gpu, session, data))
}

/// What a run's model reads (input shape, normalisation, classes), worked out from its
/// `config.toml` and data as training did: for checkpoints written before they were
/// recorded.
pub fn described_by_run_data(c: &RunConfig, dir: &std::path::Path) -> Result<checkpoint::Meta, cuttle::Error> {
    let (_, data) = load_data(c, vocab_file(dir)?.map(|chars| Vocab { chars, exact: true }))?;
    let graph = match &data {
        Loaded::Images(s) => {
            let t = &s.train;
            model_by_name(&c.model, [t.channels, t.height, t.width], t.classes)
        }
        Loaded::Text(t) => models::language_model(&c.model, c.context, t.vocab.len()),
    }
    .map_err(cuttle::Error::Config)?;
    let (normalize, class_names) = match &data {
        Loaded::Images(s) => (s.train.channel_mean_std(), s.train.class_names.clone()),
        Loaded::Text(_) => (vec![], vec![]),
    };
    Ok(checkpoint::Meta {
        model: c.model.clone(),
        input_shape: graph.shape(cuttle::nn::Graph::INPUT).0.clone(),
        normalize,
        class_names,
        classes: graph.classes,
        ..Default::default()
    })
}
