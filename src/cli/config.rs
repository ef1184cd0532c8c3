//! `cuttle train` options: flags, a TOML config file under them, and the resolved
//! `config.toml` each run saves (which `--resume`, `eval` and `export` read back).
//!
//! A config file uses the flags' names with underscores (`train_subset = 3000`).
//! Precedence: a flag given on the command line, then the file, then the default.
//! Unknown keys and values of the wrong type are errors naming the file and the key.

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use cuttle::cuttlefish::FactorizeMode;
use cuttle::train::{AugmentKind, Schedule};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The resolved options of a run, as saved in its directory.
pub const FILE: &str = "config.toml";

#[derive(Args, Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct TrainArgs {
    /// Read options from this TOML file (keys as the flags, with `_` for `-`); flags
    /// given here override it.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Model: resnet18, resnet8, resnet6, vgg19 or cnn.
    #[arg(long, default_value = "resnet6")]
    pub model: String,
    /// Data: cifar10:DIR, cifar100:DIR, folder:DIR (train/ and test/ of class folders),
    /// mnist:DIR, fashion-mnist:DIR, or builtin (the Fashion-MNIST subset inside cuttle).
    #[arg(long, default_value = "builtin")]
    pub data: String,
    #[arg(long, default_value_t = 6)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub lr: f32,
    /// constant, multistep (x0.1 at 50% and 75%) or onecycle.
    #[arg(long, default_value = "onecycle")]
    #[serde(with = "text")]
    pub schedule: Schedule,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f32,
    #[arg(long)]
    pub nesterov: bool,
    /// auto (crop+flip for RGB), none or crop-flip.
    #[arg(long, default_value = "auto")]
    #[serde(with = "text")]
    pub augment: AugmentKind,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only this many training images (class-balanced), for quick runs.
    #[arg(long)]
    pub train_subset: Option<usize>,
    /// Use only this many test images (class-balanced).
    #[arg(long)]
    pub test_subset: Option<usize>,
    /// One JSON object per epoch (and a final report) on stdout instead of text.
    #[arg(long)]
    #[serde(skip)]
    pub json: bool,
    /// Name of the run: its directory is runs/NAME [default: MODEL-seedSEED, with
    /// -cuttlefish for Cuttlefish runs].
    #[arg(long)]
    pub name: Option<String>,
    /// Run directory, instead of runs/NAME.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Cuttlefish: train full-rank while watching stable ranks, then factorize.
    #[arg(long)]
    pub cuttlefish: bool,
    /// Which layers to factorize: auto (time each on this adapter, keep what pays),
    /// reference (the paper's fixed choice) or a comma-separated list of conv names.
    #[arg(long, default_value = "auto")]
    #[serde(with = "text")]
    pub factorize: FactorizeMode,
    /// Frobenius decay on factor pairs (0 disables; exclusive with --extra-bn).
    #[arg(long, default_value_t = 1e-4)]
    pub frobenius_decay: f32,
    /// A BatchNorm between the two factors instead of Frobenius decay.
    #[arg(long)]
    pub extra_bn: bool,
    /// Lower bound on each rank as a fraction of full rank.
    #[arg(long, default_value_t = 0.0)]
    pub rank_floor: f64,
    /// Epochs of learning-rate re-warm after the switch [default: 5 with multistep, else 0].
    #[arg(long)]
    pub rewarm_epochs: Option<usize>,
    /// Continue the run in this directory from its last checkpoint, with its own settings
    /// (other options are ignored). The result is bit-identical to an uninterrupted run.
    #[arg(long)]
    #[serde(skip)]
    pub resume: Option<PathBuf>,
}

/// Options that belong to one invocation, not to a run's settings.
const NOT_IN_FILE: [&str; 3] = ["config", "json", "resume"];

impl TrainArgs {
    /// The run directory these options name.
    pub fn run_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            let name = self.name.clone().unwrap_or_else(|| {
                format!("{}{}-seed{}", self.model, if self.cuttlefish { "-cuttlefish" } else { "" }, self.seed)
            });
            Path::new("runs").join(name)
        })
    }

    /// Applies `--config FILE` under the flags that `m` (the `train` matches) shows were
    /// given on the command line.
    pub fn with_config_file(self: Box<Self>, m: &ArgMatches) -> Result<TrainArgs, cuttle::Error> {
        let Some(path) = self.config.clone() else { return Ok(*self) };
        let bad = |what: String| cuttle::Error::Config(format!("config file {}: {what}", path.display()));
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let file: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map_or(0, |r| text[..r.start].lines().count().max(1));
            bad(format!("line {line}: {}", e.message()))
        })?;
        let known: Vec<String> = TrainArgs::augment_args(clap::Command::new("x"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|id| !NOT_IN_FILE.contains(&id.as_str()))
            .collect();
        let base = toml::Table::try_from(&*self).expect("options serialise");
        let mut merged = base.clone();
        for (key, value) in &file {
            if !known.contains(key) {
                return Err(bad(format!("unknown key `{key}`; known keys: {}", known.join(", "))));
            }
            // Each key on its own over the defaults, so a type error names its key.
            let mut one = base.clone();
            one.insert(key.clone(), value.clone());
            one.try_into::<TrainArgs>().map_err(|e| bad(format!("key `{key}`: {}", e.message())))?;
            if m.value_source(key) != Some(ValueSource::CommandLine) {
                merged.insert(key.clone(), value.clone());
            }
        }
        let mut out: TrainArgs = merged.try_into().map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
        (out.config, out.json, out.resume) = (self.config, self.json, self.resume);
        Ok(out)
    }

    /// The resolved options as TOML, with a header saying what the file is.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("options serialise");
        format!("# cuttle train options of this run (cuttle train --config FILE reads this format)\n{body}")
    }

    /// The options a run directory saved when it started.
    pub fn from_run_dir(dir: &Path) -> Result<TrainArgs, cuttle::Error> {
        let path = dir.join(FILE);
        let bad = |what: String| cuttle::Error::Config(format!("run {}: {what}", path.display()));
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let mut a: TrainArgs = toml::from_str(&text).map_err(|e| bad(e.message().to_string()))?;
        a.out = Some(dir.to_path_buf());
        Ok(a)
    }
}

/// The train options' defaults, for tests and the main job.
pub fn defaults() -> TrainArgs {
    #[derive(clap::Parser)]
    struct Only {
        #[command(flatten)]
        a: TrainArgs,
    }
    <Only as clap::Parser>::parse_from(["cuttle"]).a
}

/// Serde through `Display` / `FromStr`, for option types that are written as words.
mod text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_options_round_trip_through_toml() {
        let mut a = defaults();
        a.train_subset = Some(300);
        a.factorize = FactorizeMode::List(vec!["conv2".into(), "conv3".into()]);
        let back: TrainArgs = toml::from_str(&a.to_toml()).unwrap();
        assert_eq!(toml::to_string(&back).unwrap(), toml::to_string(&a).unwrap());
    }

    #[test]
    fn default_run_directory_names_model_method_and_seed() {
        let mut a = defaults();
        assert_eq!(a.run_dir(), Path::new("runs/resnet6-seed0"));
        a.cuttlefish = true;
        a.seed = 3;
        assert_eq!(a.run_dir(), Path::new("runs/resnet6-cuttlefish-seed3"));
        a.name = Some("mine".into());
        assert_eq!(a.run_dir(), Path::new("runs/mine"));
    }
}
