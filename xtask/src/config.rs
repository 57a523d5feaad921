//! The TOML training configuration of `cargo xtask train` (files under `configs/`).
//!
//! Unknown keys are rejected (`deny_unknown_fields`) and every value is checked by
//! [`TrainConfig::validate`], whose messages name the file and the key.

use anyhow::{bail, Context as _, Result};
use data::Task;
use fmg::{StageSchedule, StrategyKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Procedural or stored image source (SPEC section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    DeadLeaves,
    Grf,
    Markov,
    /// A folder of PNG/JPEG images (`dir`).
    Folder,
}

pub use train::LossKind;

/// Learning-rate schedule: cosine annealing (Table 7) or constant (Table 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// One cosine over all stages (the authors' code).
    Cosine,
    /// A cosine restarted at every Full-Multiscale stage.
    CosinePerStage,
    Constant,
}

impl LrSchedule {
    /// Driver settings (defaults elsewhere) that run this schedule from initial rate `lr`.
    pub fn driver_config(self, lr: f64) -> fmg::DriverConfig {
        let (lr_min, lr_restart_per_stage) = match self {
            LrSchedule::Cosine => (0.0, false),
            LrSchedule::CosinePerStage => (0.0, true),
            LrSchedule::Constant => (lr, false),
        };
        fmg::DriverConfig {
            lr,
            lr_min,
            lr_restart_per_stage,
            ..Default::default()
        }
    }
}

/// Per-level batch allocation of the MGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocation {
    /// `N_l = 2^l N_0` (or `train.batch`).
    Fixed,
    /// MLMC-optimal `N_l ∝ sqrt(V_l / C_l)` from online variances (SPEC section 3).
    Adaptive,
}

/// `[train.optimizer]`: Adam on the MGE gradient (default), or a matrix-free second-order
/// optimizer of the `optim` crate that re-evaluates the iteration's MGE loss
/// (`fmg::SecondOrderUpdate`), with that crate's settings as further keys.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OptimizerChoice {
    /// Adam (Kingma & Ba 2014) with `train.lr` and `train.lr_schedule` (no further keys).
    Adam {},
    /// Gauss-Newton-CG (002 section 3): least squares, so MSE and single-scale only.
    GaussNewton(optim::GaussNewtonConfig),
    /// CG-Steihaug trust region (003 eq. 3.7).
    Steihaug(optim::SteihaugConfig),
}

impl Default for OptimizerChoice {
    fn default() -> Self {
        OptimizerChoice::Adam {}
    }
}

impl OptimizerChoice {
    /// The `optim` config of a second-order choice (`None` for Adam).
    pub fn second_order(&self) -> Option<optim::OptimizerConfig> {
        match *self {
            OptimizerChoice::Adam {} => None,
            OptimizerChoice::GaussNewton(c) => Some(optim::OptimizerConfig::GaussNewton(c)),
            OptimizerChoice::Steihaug(c) => Some(optim::OptimizerConfig::Steihaug(c)),
        }
    }
}

/// A whole training configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub task: Task,
    /// `models::ModelConfig` as a TOML table (`kind = "unet"`, ...), checked by the models crate.
    pub model: toml::Table,
    pub data: DataConfig,
    pub train: TrainSection,
}

/// `[data]`: where images come from and at which mesh.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training images.
    pub source: SourceKind,
    /// Folder of training images when `source = "folder"`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Folder of test images (default: the shipped photos in `datasets/photos`).
    #[serde(default = "default_test_dir")]
    pub test_dir: PathBuf,
    /// Finest mesh: images are `size x size`.
    pub size: usize,
    /// Image channels: 3 (colour, matching the shipped photos) or 1 (grey).
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// Number of test images scored at the end (all when larger than the folder).
    #[serde(default = "default_test_images")]
    pub test_images: usize,
    /// Number of images of the fixed validation set (drawn from the training source, never trained on).
    #[serde(default = "default_validation_images")]
    pub validation_images: usize,
    /// Loader threads (results do not depend on it).
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Gaussian blur width in pixels for deblurring (001 Appendix D: 3).
    #[serde(default = "default_blur_sigma")]
    pub blur_sigma: f64,
    /// Spectral exponent of the Gaussian random field source.
    #[serde(default = "default_grf_beta")]
    pub grf_beta: f64,
}

/// `[train]`: the optimisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Default strategy (`--strategy` overrides it).
    #[serde(default = "default_strategy")]
    pub strategy: StrategyKind,
    /// Number of mesh levels L; when absent, [`TrainConfig::parse`] chooses it by the guideline
    /// of 001 section 4 ([`guideline_levels`]) and sets `levels_auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<usize>,
    /// True when `levels` was chosen by the guideline rather than given (logged by the run).
    #[serde(skip)]
    pub levels_auto: bool,
    /// Base batch size N_0 (finest-level batch of the MGE, and the practical single-scale batch).
    pub n0: usize,
    /// Explicit per-level batch sizes (finest first); default `2^l N_0`.
    #[serde(default)]
    pub batch: Option<Vec<usize>>,
    /// Single-scale batch size; default `N_0`.
    #[serde(default)]
    pub single_batch: Option<usize>,
    /// Iterations of single-scale and multiscale training.
    pub iterations: usize,
    /// Iterations of the coarsest full-multiscale stage.
    #[serde(default)]
    pub fmg_iterations: Option<usize>,
    #[serde(default = "default_fmg_schedule")]
    pub fmg_schedule: StageSchedule,
    /// Hot start between full-multiscale stages: "identity" or "galerkin".
    #[serde(default)]
    pub hot_start: fmg::HotStart,
    /// Stop a stage when the validation loss has not improved for this many validations.
    #[serde(default)]
    pub early_stopping_patience: Option<usize>,
    pub lr: f64,
    #[serde(default = "default_lr_schedule")]
    pub lr_schedule: LrSchedule,
    #[serde(default = "default_loss")]
    pub loss: LossKind,
    /// "coarsen", "crop" or "both".
    #[serde(default)]
    pub subsampling: grids::Subsampling,
    /// "average", "injection" or "full-weighting".
    #[serde(default)]
    pub restriction: grids::Restriction,
    /// Noise-consistent restriction of the denoising input (SPEC section 3).
    #[serde(default)]
    pub noise_consistent: bool,
    #[serde(default = "default_allocation")]
    pub allocation: Allocation,
    /// Per-term gradient statistics (variance ratios) every this many iterations (0: never).
    #[serde(default = "default_stats_every")]
    pub stats_every: usize,
    /// Write a checkpoint every this many iterations (and at the end).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Evaluate the validation loss every this many iterations.
    #[serde(default = "default_validate_every")]
    pub validate_every: usize,
    #[serde(default)]
    pub seed: u64,
    /// Split of distributed training under `mpirun`, `"data"` or `"level"` (issue 18,
    /// docs/distributed.md); `train --distributed` overrides it. Absent: one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<mge::Split>,
    /// `[train.optimizer]` (default `kind = "adam"`).
    #[serde(default)]
    pub optimizer: OptimizerChoice,
}

fn default_test_dir() -> PathBuf {
    PathBuf::from("datasets/photos")
}
fn default_channels() -> usize {
    3
}
fn default_test_images() -> usize {
    64
}
fn default_validation_images() -> usize {
    16
}
fn default_threads() -> usize {
    2
}
fn default_blur_sigma() -> f64 {
    3.0
}
fn default_grf_beta() -> f64 {
    3.0
}
fn default_strategy() -> StrategyKind {
    StrategyKind::Multiscale
}
fn default_fmg_schedule() -> StageSchedule {
    StageSchedule::Halving
}
fn default_lr_schedule() -> LrSchedule {
    LrSchedule::Cosine
}
fn default_loss() -> LossKind {
    LossKind::Mse
}
fn default_allocation() -> Allocation {
    Allocation::Fixed
}
fn default_stats_every() -> usize {
    10
}
fn default_checkpoint_every() -> usize {
    500
}
fn default_validate_every() -> usize {
    100
}

impl DataConfig {
    /// `[data]` with `source` at mesh `size` and every other key at its default (what a file
    /// giving only `source` and `size` means).
    pub fn new(source: SourceKind, size: usize) -> Self {
        Self {
            source,
            dir: None,
            test_dir: default_test_dir(),
            size,
            channels: default_channels(),
            test_images: default_test_images(),
            validation_images: default_validation_images(),
            threads: default_threads(),
            blur_sigma: default_blur_sigma(),
            grf_beta: default_grf_beta(),
        }
    }
}

impl TrainSection {
    /// The `fmg` strategy of kind `kind` under these settings and its iteration count:
    /// single-scale with `single_batch` (default `N_0`), Full-Multiscale with `fmg_schedule` and
    /// `fmg_iterations` (default `iterations`).
    pub fn fmg_strategy(&self, kind: StrategyKind) -> (fmg::Strategy, usize) {
        let iters = match kind {
            StrategyKind::FullMultiscale => self.fmg_iterations.unwrap_or(self.iterations),
            StrategyKind::Single | StrategyKind::Multiscale => self.iterations,
        };
        (
            kind.with(self.single_batch.unwrap_or(self.n0), self.fmg_schedule),
            iters,
        )
    }

    /// `[train]` with base batch `n0`, `iterations` and learning rate `lr`, every other key at
    /// its default (what a file giving only these three means; `levels` absent).
    pub fn new(n0: usize, iterations: usize, lr: f64) -> Self {
        Self {
            strategy: default_strategy(),
            levels: None,
            levels_auto: false,
            n0,
            batch: None,
            single_batch: None,
            iterations,
            fmg_iterations: None,
            fmg_schedule: default_fmg_schedule(),
            hot_start: fmg::HotStart::default(),
            early_stopping_patience: None,
            lr,
            lr_schedule: default_lr_schedule(),
            loss: default_loss(),
            subsampling: grids::Subsampling::default(),
            restriction: grids::Restriction::default(),
            noise_consistent: false,
            allocation: default_allocation(),
            stats_every: default_stats_every(),
            checkpoint_every: default_checkpoint_every(),
            validate_every: default_validate_every(),
            seed: 0,
            distributed: None,
            optimizer: OptimizerChoice::default(),
        }
    }
}

/// Smallest coarsest mesh the level-count guideline keeps (001 section 4: "typically >= 8x8").
pub const MIN_COARSEST_MESH: usize = 8;

/// The guideline of 001 section 4 for L when the config gives none: the largest L (at most 8)
/// whose coarsest mesh `n / 2^(L-1)` is an integer, at least [`MIN_COARSEST_MESH`], divisible by
/// the model's down-sampling `factor` (and even for super-resolution); 1 when no L > 1 qualifies.
pub fn guideline_levels(n: usize, factor: usize, superres: bool) -> usize {
    (2..=8)
        .rev()
        .find(|&l| {
            let c = 1usize << (l - 1);
            n.is_multiple_of(c)
                && n / c >= MIN_COARSEST_MESH
                && (n / c).is_multiple_of(factor.max(1))
                && (!superres || (n / c).is_multiple_of(2))
        })
        .unwrap_or(1)
}

impl TrainConfig {
    /// Read, parse and validate `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parse and validate TOML `text`; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let mut cfg: TrainConfig = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: invalid config: {e}", origin.display()))?;
        if cfg.train.levels.is_none() {
            let model: models::ModelConfig = toml::Value::Table(cfg.model.clone())
                .try_into()
                .map_err(|e| anyhow::anyhow!("{}: [model]: {e}", origin.display()))?;
            let superres = cfg.task == Task::Superres;
            cfg.train.levels = Some(guideline_levels(
                cfg.data.size,
                model.downsampling_factor(),
                superres,
            ));
            cfg.train.levels_auto = true;
        }
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// The TOML text of this configuration (written beside every run).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("cannot serialise the config")
    }

    /// The number of mesh levels L (`train.levels`, or the guideline's choice made by `parse`).
    pub fn levels(&self) -> usize {
        self.train.levels.unwrap_or(1)
    }

    /// Per-level MGE batch sizes, finest first: `train.batch` or `2^l N_0`.
    pub fn level_batches(&self) -> Vec<usize> {
        let t = &self.train;
        t.batch
            .clone()
            .unwrap_or_else(|| (0..self.levels()).map(|l| t.n0 << l).collect())
    }

    /// Check every value; errors name `origin` and the key.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let f = origin.display();
        let d = &self.data;
        let t = &self.train;
        let levels = self.levels();
        if !(1..=8).contains(&levels) {
            bail!("{f}: train.levels = {levels}: must be between 1 and 8");
        }
        let coarsest = 1usize << (levels - 1);
        if d.size < 4 * coarsest || !d.size.is_multiple_of(coarsest) {
            bail!(
                "{f}: data.size = {}: must be a multiple of 2^(levels-1) = {coarsest} and at least {} so the coarsest mesh has 4 pixels a side",
                d.size,
                4 * coarsest
            );
        }
        if self.task == Task::Superres && !(d.size / coarsest).is_multiple_of(2) {
            bail!("{f}: data.size = {}: super-resolution needs an even coarsest mesh (size / 2^(levels-1) even)", d.size);
        }
        if d.source == SourceKind::Folder && d.dir.is_none() {
            bail!("{f}: data.dir is required when data.source = \"folder\"");
        }
        if let Some(dir) = &d.dir {
            if !dir.is_dir() {
                bail!(
                    "{f}: data.dir = {:?}: not a folder",
                    dir.display().to_string()
                );
            }
        }
        if d.channels != 1 && d.channels != 3 {
            bail!("{f}: data.channels = {}: must be 1 or 3", d.channels);
        }
        at_most(&f, "data.size", d.size, MAX_SIZE)?;
        positive(&f, "data.test_images", d.test_images)?;
        at_most(&f, "data.test_images", d.test_images, MAX_IMAGES)?;
        positive(&f, "data.validation_images", d.validation_images)?;
        at_most(
            &f,
            "data.validation_images",
            d.validation_images,
            MAX_IMAGES,
        )?;
        positive(&f, "data.threads", d.threads)?;
        at_most(&f, "data.threads", d.threads, MAX_THREADS)?;
        positive_f(&f, "data.blur_sigma", d.blur_sigma)?;
        positive_f(&f, "data.grf_beta", d.grf_beta)?;
        positive(&f, "train.n0", t.n0)?;
        at_most(&f, "train.n0", t.n0, MAX_BATCH)?;
        if let Some(b) = &t.batch {
            if b.len() != levels {
                bail!("{f}: train.batch has {} entries: must have one per level (train.levels = {levels})", b.len());
            }
            if b.contains(&0) {
                bail!("{f}: train.batch = {b:?}: every batch size must be at least 1");
            }
            if let Some(big) = b.iter().find(|&&n| n > MAX_BATCH) {
                bail!("{f}: train.batch = {b:?}: every batch size must be at most {MAX_BATCH} ({big} is not)");
            }
        }
        if let Some(b) = t.single_batch {
            positive(&f, "train.single_batch", b)?;
            at_most(&f, "train.single_batch", b, MAX_BATCH)?;
        }
        positive(&f, "train.iterations", t.iterations)?;
        at_most(&f, "train.iterations", t.iterations, MAX_ITERATIONS)?;
        if let Some(i) = t.fmg_iterations {
            positive(&f, "train.fmg_iterations", i)?;
            at_most(&f, "train.fmg_iterations", i, MAX_ITERATIONS)?;
        }
        if let Some(p) = t.early_stopping_patience {
            positive(&f, "train.early_stopping_patience", p)?;
            at_most(&f, "train.early_stopping_patience", p, MAX_ITERATIONS)?;
        }
        at_most(&f, "train.stats_every", t.stats_every, MAX_ITERATIONS)?;
        positive_f(&f, "train.lr", t.lr)?;
        if t.lr > 1.0 {
            bail!("{f}: train.lr = {}: must be at most 1", t.lr);
        }
        if t.noise_consistent && self.task != Task::Denoise {
            bail!("{f}: train.noise_consistent = true: only meaningful for task = \"denoise\"");
        }
        if t.allocation == Allocation::Adaptive && t.stats_every == 0 {
            bail!("{f}: train.stats_every = 0: adaptive allocation needs the per-term statistics (at least 1)");
        }
        positive(&f, "train.checkpoint_every", t.checkpoint_every)?;
        at_most(
            &f,
            "train.checkpoint_every",
            t.checkpoint_every,
            MAX_ITERATIONS,
        )?;
        positive(&f, "train.validate_every", t.validate_every)?;
        at_most(&f, "train.validate_every", t.validate_every, MAX_ITERATIONS)?;
        if !self.model.contains_key("kind") {
            bail!("{f}: model.kind is missing (e.g. kind = \"unet\")");
        }
        self.check_optimizer(origin, t.strategy)
    }

    /// Check `train.optimizer` for a run with `strategy` (the config's or `--strategy`): its
    /// own ranges, and that a least-squares residual exists where it needs one (MSE loss and
    /// a single term: single-scale, or one level).
    pub fn check_optimizer(&self, origin: &Path, strategy: StrategyKind) -> Result<()> {
        let f = origin.display();
        let Some(opt) = self.train.optimizer.second_order() else {
            return Ok(());
        };
        opt.validate()
            .map_err(|e| anyhow::anyhow!("{f}: train.optimizer: {e}"))?;
        if opt.closure_kind() != optim::ClosureKind::Residual {
            return Ok(());
        }
        let key = match opt {
            optim::OptimizerConfig::GaussNewton(_) => "train.optimizer.kind = \"gauss-newton\"",
            optim::OptimizerConfig::Steihaug(_) => "train.optimizer.objective = \"residual\"",
        };
        if self.train.loss != LossKind::Mse {
            bail!("{f}: {key} needs train.loss = \"mse\" (a least-squares residual f - y)");
        }
        if strategy != StrategyKind::Single && self.levels() > 1 {
            bail!(
                "{f}: {key} needs train.strategy = \"single\" (or train.levels = 1), not {:?}: a multiscale loss is a sum of differences of terms, no least-squares residual",
                strategy.name()
            );
        }
        Ok(())
    }
}

/// Bounds of the size-like keys (what fits in memory is checked by a run's estimate).
pub const MAX_SIZE: usize = 16384;
pub const MAX_BATCH: usize = 65536;
pub const MAX_IMAGES: usize = 65536;
pub const MAX_THREADS: usize = 256;
pub const MAX_ITERATIONS: usize = 100_000_000;

fn at_most(f: &impl std::fmt::Display, key: &str, v: usize, max: usize) -> Result<()> {
    if v > max {
        bail!("{f}: {key} = {v}: must be at most {max}");
    }
    Ok(())
}

fn positive(f: &impl std::fmt::Display, key: &str, v: usize) -> Result<()> {
    if v == 0 {
        bail!("{f}: {key} = 0: must be at least 1");
    }
    Ok(())
}

fn positive_f(f: &impl std::fmt::Display, key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{f}: {key} = {v}: must be a positive number");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
task = "denoise"

[model]
kind = "unet"

[data]
source = "dead-leaves"
size = 32

[train]
levels = 3
n0 = 2
iterations = 10
lr = 5e-4
"#;

    fn parse(text: &str) -> Result<TrainConfig> {
        TrainConfig::parse(text, Path::new("configs/test.toml"))
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.train.strategy, StrategyKind::Multiscale);
        assert_eq!(c.level_batches(), vec![2, 4, 8]);
        assert_eq!(c.data.test_dir, PathBuf::from("datasets/photos"));
        // Round trip through the TOML written beside each run.
        let again = parse(&c.to_toml().unwrap()).unwrap();
        assert_eq!(again.to_toml().unwrap(), c.to_toml().unwrap());
        let per_stage =
            parse(&GOOD.replace("lr = 5e-4", "lr = 5e-4\nlr_schedule = \"cosine-per-stage\""))
                .unwrap();
        assert_eq!(per_stage.train.lr_schedule, LrSchedule::CosinePerStage);
    }

    /// `DataConfig::new` and `TrainSection::new` hold the defaults a file would get.
    #[test]
    fn constructors_agree_with_the_file_defaults() {
        let c = parse(&GOOD.replace("levels = 3\n", "")).unwrap();
        let mut data = DataConfig::new(SourceKind::DeadLeaves, 32);
        let mut train = TrainSection::new(2, 10, 5e-4);
        assert_eq!(
            toml::to_string(&data).unwrap(),
            toml::to_string(&c.data).unwrap()
        );
        train.levels = c.train.levels;
        assert_eq!(
            toml::to_string(&train).unwrap(),
            toml::to_string(&c.train).unwrap()
        );
        data.size = 64;
        assert_ne!(
            toml::to_string(&data).unwrap(),
            toml::to_string(&c.data).unwrap()
        );
    }

    #[test]
    fn each_strategy_kind_takes_its_settings() {
        let mut t = TrainSection::new(2, 10, 5e-4);
        let single = fmg::Strategy::Single { batch: 2 };
        assert_eq!(t.fmg_strategy(StrategyKind::Single), (single, 10));
        t.single_batch = Some(6);
        t.fmg_iterations = Some(40);
        t.fmg_schedule = StageSchedule::Equal;
        let single = fmg::Strategy::Single { batch: 6 };
        assert_eq!(t.fmg_strategy(StrategyKind::Single), (single, 10));
        let ms = fmg::Strategy::Multiscale;
        assert_eq!(t.fmg_strategy(StrategyKind::Multiscale), (ms, 10));
        let fmg = fmg::Strategy::FullMultiscale {
            schedule: StageSchedule::Equal,
        };
        assert_eq!(t.fmg_strategy(StrategyKind::FullMultiscale), (fmg, 40));
    }

    #[test]
    fn unknown_key_names_the_key_and_the_file() {
        let e = err(&GOOD.replace("lr = 5e-4", "lr = 5e-4\nlearning_rate = 1"));
        assert!(
            e.contains("configs/test.toml") && e.contains("learning_rate"),
            "{e}"
        );
        let e = err(&GOOD.replace("size = 32", "size = 32\nsizee = 3"));
        assert!(e.contains("sizee"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            ("levels = 3", "levels = 0", "train.levels"),
            ("size = 32", "size = 30", "data.size"),
            ("n0 = 2", "n0 = 0", "train.n0"),
            ("lr = 5e-4", "lr = -1.0", "train.lr"),
            (
                "lr = 5e-4",
                "lr = 5e-4\nsubsampling = \"zoom\"",
                // toml names the line and the allowed values (serde enum).
                "expected one of `coarsen`, `crop`, `both`",
            ),
            (
                "lr = 5e-4",
                "lr = 5e-4\nstrategy = \"multi-scale\"",
                "expected one of `single`, `multiscale`, `full-multiscale`",
            ),
            (
                "lr = 5e-4",
                "lr = 5e-4\nfmg_schedule = \"halve\"",
                "expected `halving` or `equal`",
            ),
            ("lr = 5e-4", "lr = 5e-4\nbatch = [1, 2]", "train.batch"),
            (
                "lr = 5e-4",
                "lr = 5e-4\ncheckpoint_every = 0",
                "train.checkpoint_every",
            ),
            (
                "source = \"dead-leaves\"",
                "source = \"folder\"",
                "data.dir",
            ),
            ("kind = \"unet\"", "channels = 3", "model.kind"),
        ];
        for (from, to, key) in cases {
            let e = err(&GOOD.replace(from, to));
            assert!(
                e.contains(key) && e.contains("configs/test.toml"),
                "{to}: {e}"
            );
        }
        let e = err(&GOOD.replace("task = \"denoise\"", "task = \"colorize\""));
        assert!(e.contains("colorize") && e.contains("task"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, failure_persistence: None, ..Default::default() })]

        /// Proptest over bytes: any text, or the good config with a few bytes changed, parses
        /// or is an error naming the file, never a panic.
        #[test]
        fn any_config_text_never_panics(
            flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 0..4),
            random in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let mut b = GOOD.as_bytes().to_vec();
            for (pos, val) in flips {
                let i = pos.index(b.len());
                b[i] = val;
            }
            for bytes in [b, random] {
                let text = String::from_utf8_lossy(&bytes);
                if let Err(e) = parse(&text) {
                    proptest::prop_assert!(format!("{e:#}").contains("configs/test.toml"), "{e:#}");
                }
            }
        }
    }

    /// resources: every size-like key is bounded (`train.n0 = 100000000` no longer grows in
    /// memory silently); what fits in memory is then the run's estimate.
    #[test]
    fn size_like_keys_are_bounded() {
        let cases = [
            ("n0 = 2", "n0 = 100000000", "train.n0"),
            ("size = 32", "size = 32768", "data.size"),
            (
                "lr = 5e-4",
                "lr = 5e-4\nbatch = [1, 2, 100000000]",
                "train.batch",
            ),
            (
                "lr = 5e-4",
                "lr = 5e-4\nsingle_batch = 100000000",
                "train.single_batch",
            ),
            (
                "iterations = 10",
                "iterations = 1000000000",
                "train.iterations",
            ),
            (
                "lr = 5e-4",
                "lr = 5e-4\nfmg_iterations = 1000000000",
                "train.fmg_iterations",
            ),
            (
                "lr = 5e-4",
                "lr = 5e-4\ncheckpoint_every = 1000000000",
                "train.checkpoint_every",
            ),
            (
                "lr = 5e-4",
                "lr = 5e-4\nvalidate_every = 1000000000",
                "train.validate_every",
            ),
            (
                "lr = 5e-4",
                "lr = 5e-4\nstats_every = 1000000000",
                "train.stats_every",
            ),
            (
                "size = 32",
                "size = 32\nvalidation_images = 10000000",
                "data.validation_images",
            ),
            (
                "size = 32",
                "size = 32\ntest_images = 10000000",
                "data.test_images",
            ),
            ("size = 32", "size = 32\nthreads = 100000", "data.threads"),
        ];
        for (from, to, key) in cases {
            let e = err(&GOOD.replace(from, to));
            assert!(e.contains(key) && e.contains("at most"), "{to}: {e}");
        }
    }

    /// `text` with a `[train.optimizer]` table of `body` (after `[train]`, the last section).
    pub(crate) fn with_optimizer(text: &str, body: &str) -> String {
        format!("{text}\n[train.optimizer]\n{body}\n")
    }

    #[test]
    fn optimizer_is_selected_and_checked() {
        assert_eq!(
            parse(GOOD).unwrap().train.optimizer,
            OptimizerChoice::Adam {}
        );
        let single = GOOD.replace("n0 = 2", "n0 = 2\nstrategy = \"single\"");
        let c = parse(&with_optimizer(
            &single,
            "kind = \"steihaug\"\nradius_init = 0.5",
        ))
        .unwrap();
        let Some(optim::OptimizerConfig::Steihaug(s)) = c.train.optimizer.second_order() else {
            panic!("{:?}", c.train.optimizer)
        };
        assert_eq!(s.radius_init, 0.5);
        // The written config selects the same optimizer.
        assert_eq!(
            parse(&c.to_toml().unwrap()).unwrap().train.optimizer,
            c.train.optimizer
        );
        for kind in ["adam", "gauss-newton"] {
            parse(&with_optimizer(&single, &format!("kind = \"{kind}\""))).unwrap();
        }
        let gn = "kind = \"gauss-newton\"";
        let cases = [
            // Gauss-Newton's residual exists only for a single-scale MSE loss.
            (with_optimizer(GOOD, gn), "train.strategy"),
            (
                with_optimizer(
                    &single.replace("lr = 5e-4", "lr = 5e-4\nloss = \"ssim\""),
                    gn,
                ),
                "train.loss",
            ),
            (
                with_optimizer(GOOD, "kind = \"steihaug\"\nobjective = \"residual\""),
                "train.optimizer.objective",
            ),
            // Unknown keys and kinds, out-of-range values.
            (
                with_optimizer(&single, "kind = \"steihaug\"\nradius = 1.0"),
                "radius",
            ),
            (
                with_optimizer(&single, "kind = \"adam\"\nbeta1 = 0.9"),
                "beta1",
            ),
            (with_optimizer(&single, "kind = \"lbfgs\""), "lbfgs"),
            (
                with_optimizer(&single, "kind = \"steihaug\"\nradius_init = -1.0"),
                "radius_init",
            ),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(
                e.contains(key) && e.contains("configs/test.toml"),
                "{key}: {e}"
            );
        }
        // A multiscale Gauss-Newton config is refused with the reason.
        let e = err(&with_optimizer(GOOD, gn));
        assert!(
            e.contains("gauss-newton") && e.contains("\"multiscale\""),
            "{e}"
        );
        // Steihaug on the MGE loss is fine with any strategy.
        parse(&with_optimizer(GOOD, "kind = \"steihaug\"")).unwrap();
    }

    #[test]
    fn guideline_keeps_the_coarsest_mesh_at_least_8x8() {
        // 001 section 4: 64x64 -> L = 4 (coarsest 8x8); 256x256 -> 6.
        assert_eq!(guideline_levels(64, 1, false), 4);
        assert_eq!(guideline_levels(256, 1, false), 6);
        assert_eq!(guideline_levels(32, 4, false), 3);
        // A down-sampling factor of 16 needs a coarsest mesh divisible by 16.
        assert_eq!(guideline_levels(64, 16, false), 3);
        // 96 = 3 * 32: coarsest 12 at L = 4 (not 6 at L = 5, below 8).
        assert_eq!(guideline_levels(96, 1, false), 4);
        // Super-resolution needs an even coarsest mesh: 72 -> 18 at L = 3, not 9 at L = 4.
        assert_eq!(guideline_levels(72, 1, true), 3);
        assert_eq!(guideline_levels(72, 1, false), 4);
        // Too small or odd: a single level.
        assert_eq!(guideline_levels(12, 1, false), 1);
        assert_eq!(guideline_levels(9, 1, false), 1);
        // At most 8 levels.
        assert_eq!(guideline_levels(4096, 1, false), 8);
        // Independent check over sizes: the choice satisfies the rule and L + 1 does not.
        for n in 4..=300usize {
            for factor in [1usize, 2, 4, 8, 16] {
                let l = guideline_levels(n, factor, false);
                let ok = |l: usize| {
                    let c = 1usize << (l - 1);
                    n % c == 0 && n / c >= 8 && (n / c).is_multiple_of(factor)
                };
                assert!(l == 1 || ok(l), "n {n} factor {factor} L {l}");
                assert!(
                    l == 8 || (l + 1..=8).all(|m| !ok(m)),
                    "n {n} factor {factor} L {l}"
                );
            }
        }
    }

    #[test]
    fn missing_levels_are_chosen_by_the_guideline() {
        let c = parse(
            &GOOD
                .replace("levels = 3\n", "")
                .replace("size = 32", "size = 64"),
        )
        .unwrap();
        // UNet (factor 4) at 64: L = 4 gives 8x8, divisible by 4.
        assert_eq!((c.levels(), c.train.levels_auto), (4, true));
        assert_eq!(c.level_batches(), vec![2, 4, 8, 16]);
        let five = GOOD
            .replace("levels = 3\n", "")
            .replace("kind = \"unet\"", "kind = \"unet5\"");
        let c = parse(&five.replace("size = 32", "size = 64")).unwrap();
        assert_eq!(c.levels(), 3, "unet5 down-samples by 16: coarsest 16x16");
        // The written config carries the choice explicitly.
        assert!(c.to_toml().unwrap().contains("levels = 3"));
        let given = parse(GOOD).unwrap();
        assert_eq!((given.levels(), given.train.levels_auto), (3, false));
    }
}

#[cfg(test)]
mod shipped_configs {
    use super::*;

    #[test]
    fn every_shipped_config_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                TrainConfig::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
                n += 1;
            }
        }
        assert!(n >= 8, "only {n} configs in {}", dir.display());
    }
}
