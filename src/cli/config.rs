//! `cuttle train` options: the run's [`RunConfig`] (its flags, defaults and meanings are
//! the library's), a TOML config file under the flags, and the resolved `config.toml` each
//! run saves (which `--resume`, `eval` and `export` read back), plus the options that
//! belong to one invocation only (`--config`, `--json`, `--resume`).
//!
//! Precedence: a flag given on the command line, then the file, then the default.
//! Unknown keys and values of the wrong type are errors naming the file and the key.

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use cuttle::train::RunConfig;
use std::path::{Path, PathBuf};

/// The resolved options of a run, as saved in its directory.
pub const FILE: &str = "config.toml";

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunConfig,
    /// Read options from this TOML file (keys as the flags, with `_` for `-`); flags
    /// given here override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// One JSON object per epoch (and a final report) on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Continue the run in this directory from its last checkpoint, with its own settings
    /// (its config.toml; other options are refused). The result is bit-identical to an
    /// uninterrupted run. A finished run is left as it is.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Start afresh in a run directory that already holds a run (--out or --name),
    /// deleting that run's files. Without it such a directory is refused.
    #[arg(long)]
    pub force: bool,
}

impl TrainArgs {
    /// The main job: Cuttlefish training with every other option at its default.
    pub fn main_job() -> TrainArgs {
        let run = RunConfig { cuttlefish: true, ..Default::default() };
        TrainArgs { run, config: None, json: false, resume: None, force: false }
    }

    /// Applies `--config FILE` under the flags that `m` (the `train` matches) shows were
    /// given on the command line.
    ///
    /// With `--resume` no run option may be given: the run continues with the options it
    /// saved, and a flag that would be ignored is refused instead.
    pub fn with_config_file(mut self, m: &ArgMatches) -> Result<TrainArgs, cuttle::Error> {
        if let Some(dir) = &self.resume {
            let given: Vec<String> = RunConfig::keys()
                .into_iter()
                .chain(["config".to_string(), "force".to_string()])
                .filter(|k| m.value_source(k) == Some(ValueSource::CommandLine))
                .map(|k| format!("--{}", k.replace('_', "-")))
                .collect();
            if !given.is_empty() {
                return Err(cuttle::Error::Config(format!(
                    "--resume continues {} with the options in its {FILE}; {} cannot be given with it (a run's settings are fixed when it starts)",
                    dir.display(),
                    given.join(", ")
                )));
            }
        }
        let Some(path) = self.config.clone() else { return Ok(self) };
        let bad = |what: String| cuttle::Error::Config(format!("config file {}: {what}", path.display()));
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let file: toml::Table =
            text.parse().map_err(|e: toml::de::Error| bad(format!("{}{}", at_line(&text, &e), e.message())))?;
        let known = RunConfig::keys();
        let base = toml::Table::try_from(&self.run).expect("options serialise");
        let mut merged = base.clone();
        for (key, value) in &file {
            if !known.contains(key) {
                return Err(bad(format!("unknown key `{key}`; known keys: {}", known.join(", "))));
            }
            // Each key on its own over the flags' values, so a type error names its key.
            let mut one = base.clone();
            one.insert(key.clone(), value.clone());
            one.try_into::<RunConfig>().map_err(|e| bad(format!("key `{key}`: {}", e.message())))?;
            if m.value_source(key) != Some(ValueSource::CommandLine) {
                merged.insert(key.clone(), value.clone());
            }
        }
        self.run = merged.try_into().map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
        Ok(self)
    }
}

/// The run directory `c` names.
pub fn run_dir(c: &RunConfig) -> PathBuf {
    c.out.clone().unwrap_or_else(|| {
        let name = c
            .name
            .clone()
            .unwrap_or_else(|| format!("{}{}-seed{}", c.model, if c.cuttlefish { "-cuttlefish" } else { "" }, c.seed));
        Path::new("runs").join(name)
    })
}

/// The resolved options as TOML, with a header saying what the file is.
pub fn to_toml(c: &RunConfig) -> String {
    let body = toml::to_string(c).expect("options serialise");
    format!("# cuttle train options of this run (cuttle train --config FILE reads this format)\n{body}")
}

/// "line N: " for where a TOML error starts (1-based), or nothing when it has no place.
fn at_line(text: &str, e: &toml::de::Error) -> String {
    // Newlines before the error, plus one: an error at the very start of a line is on
    // that line, not the one before.
    e.span().map_or(String::new(), |r| format!("line {}: ", text[..r.start.min(text.len())].matches('\n').count() + 1))
}

/// The options a run directory saved when it started.
pub fn from_run_dir(dir: &Path) -> Result<RunConfig, cuttle::Error> {
    let path = dir.join(FILE);
    let bad = |what: String| cuttle::Error::Config(format!("run {}: {what}", path.display()));
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => cuttle::Error::Config(format!(
            "{} is not a run directory: it has no {FILE} (cuttle train writes one in each run's directory)",
            dir.display()
        )),
        _ => bad(e.to_string()),
    })?;
    let mut c: RunConfig = toml::from_str(&text).map_err(|e| bad(format!("{}{}", at_line(&text, &e), e.message())))?;
    c.out = Some(dir.to_path_buf());
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle::cuttlefish::FactorizeMode;
    use cuttle::train::Schedule;

    fn parse(args: &[&str]) -> TrainArgs {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            a: TrainArgs,
        }
        <Only as clap::Parser>::parse_from([&["cuttle"], args].concat()).a
    }

    /// The flags' defaults, an empty TOML file and an empty JSON object are one config:
    /// the library's `RunConfig::default`.
    #[test]
    fn defaults_are_one_source() {
        let d = RunConfig::default();
        assert_eq!(parse(&[]).run, d, "flags");
        assert_eq!(toml::from_str::<RunConfig>("").unwrap(), d, "TOML");
        assert_eq!(RunConfig::from_json("{}").unwrap(), d, "JSON");
        // Every key of the config is a flag, and every flag but the per-invocation ones a key.
        let mut flags: Vec<String> = TrainArgs::augment_args(clap::Command::new("x"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|id| !["config", "json", "resume", "force"].contains(&id.as_str()))
            .collect();
        flags.sort();
        assert_eq!(flags, RunConfig::keys());
    }

    /// The main job (`cuttle` without a subcommand) as it always was: Cuttlefish on
    /// ResNet-6 and the built-in data, 6 epochs of batch 64 at a one-cycle peak of 0.05 with
    /// SGD, as its run saves them (resolved; the optimizer keys that came with AdamW say
    /// SGD, no smoothing, no clipping, no warm-up).
    #[test]
    fn the_main_job_is_unchanged() {
        let expected = "model = \"resnet6\"\ndata = \"builtin\"\nepochs = 6\nbatch = 64\nlr = 0.05\n\
            schedule = \"onecycle\"\nwarmup_epochs = 0.0\noptimizer = \"sgd\"\nmomentum = 0.9\nweight_decay = 0.0005\n\
            nesterov = false\nbeta1 = 0.9\nbeta2 = 0.999\nadam_eps = 0.00000001\nlabel_smoothing = 0.0\nclip_grad = 0.0\n\
            augment = \"auto\"\nseed = 0\ncuttlefish = true\nfactorize = \"auto\"\nfrobenius_decay = 0.0001\n\
            extra_bn = false\nrank_floor = 0.0\nauto_margin = 0.1\nreport_every = 20\n";
        assert_eq!(toml::to_string(&TrainArgs::main_job().run.resolved()).unwrap(), expected);
        // Unresolved, the model-dependent keys are absent (the model's defaults).
        let bare = toml::to_string(&TrainArgs::main_job().run).unwrap();
        assert!(!bare.contains("epochs") && !bare.contains("optimizer"), "{bare}");
    }

    #[test]
    fn resolved_options_round_trip_through_toml() {
        let mut a = parse(&["--train-subset", "300", "--schedule", "multistep", "--out", "x"]).run;
        a.factorize = FactorizeMode::List(vec!["conv2".into(), "conv3".into()]);
        a.rewarm_epochs = Some(1);
        assert_eq!(a.schedule, Some(Schedule::MultiStep));
        let back: RunConfig = toml::from_str(&to_toml(&a)).unwrap();
        assert_eq!(back, a);
        let r = a.resolved();
        assert_eq!(toml::from_str::<RunConfig>(&to_toml(&r)).unwrap(), r);
        // The transformer flags parse.
        let t = parse(&["--model", "vit-mini", "--optimizer", "adamw", "--clip-grad", "1", "--warmup-epochs", "0.5"]);
        assert_eq!((t.run.clip_grad, t.run.warmup_epochs), (Some(1.0), Some(0.5)));
        assert_eq!(t.run.optimizer, Some(cuttle::train::OptimizerKind::AdamW));
    }

    #[test]
    fn default_run_directory_names_model_method_and_seed() {
        let mut a = RunConfig::default();
        assert_eq!(run_dir(&a), Path::new("runs/resnet6-seed0"));
        a.cuttlefish = true;
        a.seed = 3;
        assert_eq!(run_dir(&a), Path::new("runs/resnet6-cuttlefish-seed3"));
        a.name = Some("mine".into());
        assert_eq!(run_dir(&a), Path::new("runs/mine"));
    }
}
