//! What the `reproduce` experiments share beyond `reproduce.rs`: the size presets of each
//! protocol (quick / full / smoke) with their scale factors against the paper's, the training
//! configuration of one run, and "train, then score on the fixed test set" with reuse of runs
//! already finished in the output folder (an interrupted experiment continues where it stopped).

use crate::commands::eval::write_scores;
use crate::commands::train_cmd::{save_initial, train_run, HistoryPoint, Start};
use crate::config::{Allocation, DataConfig, LrSchedule, SourceKind, TrainConfig, TrainSection};
use crate::reproduce::{Protocol, Record};
use anyhow::{Context as _, Result};
use candle_core::{Device, Tensor};
use data::Task;
use fmg::StageSchedule;
use fmg::StrategyKind;
use grids::Subsampling;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use train::evaluate::{Scores, TestSet, TestSpec};
use train::LossKind;

/// Size of an experiment: meshes, widths, batches and iterations.
#[derive(Debug, Clone)]
pub struct Preset {
    pub protocol: Protocol,
    /// Finest mesh n.
    pub size: usize,
    pub levels: usize,
    /// Base batch `N_0` of denoising, deblurring and inpainting (001 Table 7: 16).
    pub n0: usize,
    /// Base batch `N_0` of super-resolution (001 Table 8's #WU 30k / 4.6k / 7.9k imply 8).
    pub sr_n0: usize,
    /// Iterations of single-scale and multiscale, and of the coarsest full-multiscale stage,
    /// for denoising, deblurring and inpainting (001 Table 7: 2000).
    pub iterations: usize,
    /// The same for super-resolution (001 Table 8: 250).
    pub sr_iterations: usize,
    pub unet_channels: [usize; 3],
    pub resnet_hidden: usize,
    pub espcn_hidden: [usize; 4],
    /// SR ResNet hidden channels and blocks (001 Table 8: 100 and 9).
    pub srresnet: (usize, usize),
    pub validation_images: usize,
    /// Validations per run.
    pub validations: usize,
    /// Test images: `None` = every shipped photo whole, `Some(k)` = k random patches.
    pub test_patches: Option<usize>,
    /// Table 2 trains only single-practical, single-equal-wu, multiscale and full-multiscale
    /// with coarsening: `single-paper` (batch `sum_l N_l`, 15x the others' at L = 4) and
    /// cropping, which lost in every quick run and in 001, do not fit the standard protocol's
    /// hour.
    pub core_strategies_only: bool,
}

impl Preset {
    /// The paper's protocol (001 Tables 7-8).
    pub fn full() -> Self {
        Self {
            protocol: Protocol::Full,
            size: 64,
            levels: 4,
            n0: 16,
            sr_n0: 8,
            iterations: 2000,
            sr_iterations: 250,
            unet_channels: [32, 64, 128],
            resnet_hidden: 128,
            espcn_hidden: [64, 64, 32, 32],
            srresnet: (100, 9),
            validation_images: 64,
            validations: 40,
            test_patches: Some(256),
            core_strategies_only: false,
        }
    }

    /// About 30 minutes for all of Table 2 on 2 CPU cores, sized from a measured pair: the 7
    /// runs of denoising with this UNet took 268 s at 120 iterations on a loaded machine
    /// (single-paper alone 112 s); see docs/training.md.
    pub fn quick() -> Self {
        Self {
            protocol: Protocol::Quick,
            size: 32,
            levels: 3,
            n0: 2,
            sr_n0: 2,
            iterations: 80,
            sr_iterations: 60,
            unet_channels: [8, 16, 32],
            resnet_hidden: 16,
            espcn_hidden: [16, 16, 8, 8],
            srresnet: (16, 3),
            validation_images: 8,
            validations: 6,
            test_patches: Some(32),
            core_strategies_only: false,
        }
    }

    /// About an hour on 2 CPU cores for `table2 --standard --seeds 3 --tasks denoise,deblur`:
    /// the paper's mesh (64x64) and levels (L = 4), the quick protocol's narrow widths, 10x
    /// its iterations (800; a full-multiscale UNet's validation loss levels off in its last
    /// two stages at this count) and only the core strategies
    /// ([`Preset::core_strategies_only`]); docs/training.md, "The standard protocol".
    pub fn standard() -> Self {
        Self {
            protocol: Protocol::Standard,
            size: 64,
            levels: 4,
            n0: 2,
            sr_n0: 2,
            iterations: 800,
            sr_iterations: 250,
            unet_channels: [8, 16, 32],
            resnet_hidden: 16,
            espcn_hidden: [16, 16, 8, 8],
            srresnet: (16, 3),
            validation_images: 16,
            validations: 10,
            test_patches: Some(64),
            core_strategies_only: true,
        }
    }

    /// Seconds, for the tests.
    pub fn smoke() -> Self {
        Self {
            protocol: Protocol::Smoke,
            size: 16,
            levels: 2,
            n0: 1,
            sr_n0: 1,
            iterations: 4,
            sr_iterations: 4,
            unet_channels: [2, 4, 4],
            resnet_hidden: 4,
            espcn_hidden: [4, 4, 2, 2],
            srresnet: (4, 1),
            validation_images: 2,
            validations: 2,
            test_patches: Some(3),
            core_strategies_only: false,
        }
    }

    pub fn of(protocol: Protocol, smoke: bool) -> Self {
        match (smoke, protocol) {
            (true, _) | (false, Protocol::Smoke) => Self::smoke(),
            (false, Protocol::Quick) => Self::quick(),
            (false, Protocol::Standard) => Self::standard(),
            (false, Protocol::Full) => Self::full(),
        }
    }

    /// The protocol's name (`smoke`, `quick`, `standard`, `full`).
    pub fn name(&self) -> &'static str {
        self.protocol.name()
    }

    /// `N_0` of `task`: [`Preset::sr_n0`] for super-resolution, [`Preset::n0`] otherwise.
    pub fn task_n0(&self, task: Task) -> usize {
        match task {
            Task::Superres => self.sr_n0,
            Task::Denoise | Task::Deblur | Task::Inpaint => self.n0,
        }
    }

    pub fn task_iterations(&self, task: Task) -> usize {
        match task {
            Task::Superres => self.sr_iterations,
            Task::Denoise | Task::Deblur | Task::Inpaint => self.iterations,
        }
    }

    /// Deblurring PSF width, scaled with the mesh so the blur covers the same part of the image
    /// as 001's sigma = 3 px at 64x64.
    pub fn blur_sigma(&self) -> f64 {
        3.0 * self.size as f64 / 64.0
    }

    /// Lines comparing this preset with the paper's protocol.
    pub fn scale_factors(&self) -> String {
        self.scale_factors_with_levels(&self.levels.to_string(), "4")
    }

    /// [`Preset::scale_factors`] for an experiment that sets the levels itself (`ours`,
    /// against the paper's `paper`), e.g. table6's "2, 3, 4".
    pub fn scale_factors_with_levels(&self, ours: &str, paper: &str) -> String {
        let p = Self::full();
        let mut s = String::new();
        let r = |a: usize, b: usize| a as f64 / b as f64;
        let _ = writeln!(
            s,
            "protocol `{}` against the paper's (001 Tables 7-8):",
            self.name()
        );
        let _ = writeln!(
            s,
            "- mesh {}x{} (paper 64x64, x{:.2}); levels L = {ours} (paper {paper})",
            self.size,
            self.size,
            r(self.size, p.size),
        );
        let _ = writeln!(
            s,
            "- N0 = {} (paper 16, x{:.3}); super-resolution N0 = {} (paper 8, x{:.3}); per-level batches 2^l N0",
            self.n0,
            r(self.n0, p.n0),
            self.sr_n0,
            r(self.sr_n0, p.sr_n0)
        );
        let _ = writeln!(
            s,
            "- iterations {} (paper 2000, x{:.3}); super-resolution {} (paper 250, x{:.3})",
            self.iterations,
            r(self.iterations, p.iterations),
            self.sr_iterations,
            r(self.sr_iterations, p.sr_iterations)
        );
        let _ = writeln!(
            s,
            "- widths: UNet {:?} (paper [32, 64, 128]), ResNet {} hidden (paper 128), ESPCN {:?} (paper [64, 64, 32, 32]), SR ResNet {}x{} (paper 100x9)",
            self.unet_channels, self.resnet_hidden, self.espcn_hidden, self.srresnet.0, self.srresnet.1
        );
        let _ = writeln!(
            s,
            "- deblurring PSF sigma {:.2} px (paper 3 px at 64x64); training images: procedural dead leaves (paper STL10/CelebA/Urban100); test images: {} of the shipped photos (datasets/photos)",
            self.blur_sigma(),
            match self.test_patches {
                Some(k) => format!("{k} random patches"),
                None => "every one".into(),
            }
        );
        s
    }

    /// The `[model]` table of `model` (`unet`, `resnet`, `espcn`; `resnet` is the SR ResNet
    /// for super-resolution) for `task`.
    pub fn model_table(&self, task: Task, model: &str) -> Result<toml::Table> {
        let int = |v: usize| toml::Value::Integer(v as i64);
        let ints = |v: &[usize]| toml::Value::Array(v.iter().map(|&c| int(c)).collect());
        let cond = toml::Value::Boolean(task == Task::Denoise);
        let entries = match (task, model) {
            (Task::Superres, "espcn") => vec![
                ("kind", "espcn".into()),
                ("hidden", ints(&self.espcn_hidden)),
            ],
            (Task::Superres, "resnet") => vec![
                ("kind", "srresnet".into()),
                ("hidden", int(self.srresnet.0)),
                ("blocks", int(self.srresnet.1)),
            ],
            (_, "unet") => vec![
                ("kind", "unet".into()),
                ("channels", ints(&self.unet_channels)),
                ("noise_conditioning", cond),
            ],
            (_, "resnet") => vec![
                ("kind", "resnet".into()),
                ("hidden", int(self.resnet_hidden)),
                ("noise_conditioning", cond),
            ],
            (t, m) => anyhow::bail!("model {m:?} is not one of Table 2's models for {t}"),
        };
        Ok(entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect())
    }
}

/// One training run of an experiment: how it appears in `results.csv` and how it trains.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub task: Task,
    pub model: String,
    /// `results.csv` strategy name (`single-paper`, ..., `full-multiscale`).
    pub label: String,
    /// `-` for single-scale.
    pub subsampling: String,
    pub strategy: StrategyKind,
    pub levels: usize,
    pub single_batch: Option<usize>,
    pub iterations: usize,
    /// Appended to the folder name (e.g. `b600` for a #WU budget, `L4`), may be empty.
    pub tag: String,
    /// What the run changes beyond its strategy (`table2 --recipes`, `table5 --recipes`).
    pub recipe: Recipe,
}

/// A multiscale recipe on top of a strategy (`table2 --recipes`, `table5 --recipes`, issue 15
/// item 9; the rows: [`recipe_specs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recipe {
    /// The strategy as it is.
    #[default]
    Plain,
    /// `train.noise_consistent`: the coarse side of each term sees noise restricted with the
    /// image, i.e. the same noisy sample on both meshes (denoising only).
    NoiseConsistent,
    /// `train.allocation = "adaptive"`: MLMC-optimal batches from the measured variances.
    Adaptive,
    /// Mesh-free convolutions (`conv = "mfc"`, 000) in the model.
    Mfc,
}

impl Recipe {
    /// Suffix of the table row and folder name (`""` for [`Recipe::Plain`]).
    pub fn suffix(self) -> &'static str {
        match self {
            Recipe::Plain => "",
            Recipe::NoiseConsistent => "+noise-consistent",
            Recipe::Adaptive => "+adaptive",
            Recipe::Mfc => "+mfc",
        }
    }
}

/// The recipe rows of `--recipes` (`table2`, `table5`) that apply to `task`, in table order:
/// (strategy label, recipe), coarsening for the multiscale ones. Multiscale with the
/// noise-consistent restriction (denoising only), multiscale and full-multiscale with adaptive
/// batches, and single-practical, multiscale and full-multiscale with mesh-free convolutions
/// (not for super-resolution).
pub fn recipe_specs(task: Task) -> Vec<(&'static str, Recipe)> {
    const ROWS: [(&str, Recipe); 6] = [
        ("multiscale", Recipe::NoiseConsistent),
        ("multiscale", Recipe::Adaptive),
        ("full-multiscale", Recipe::Adaptive),
        ("single-practical", Recipe::Mfc),
        ("multiscale", Recipe::Mfc),
        ("full-multiscale", Recipe::Mfc),
    ];
    ROWS.into_iter()
        .filter(|(_, recipe)| match recipe {
            Recipe::NoiseConsistent => task == Task::Denoise,
            Recipe::Mfc => task != Task::Superres,
            Recipe::Plain | Recipe::Adaptive => true,
        })
        .collect()
}

impl RunSpec {
    /// Folder of the run inside the experiment's folder.
    pub fn dir_name(&self) -> String {
        let mut s = format!("{}-{}-{}", self.task.name(), self.model, self.label);
        if self.subsampling != "-" {
            s.push('-');
            s.push_str(&self.subsampling);
        }
        if !self.tag.is_empty() {
            s.push('-');
            s.push_str(&self.tag);
        }
        s
    }

    /// A denoising run: single-scale with batch `n0`, multiscale or full-multiscale with
    /// coarsening (`label` names the strategy: `single-practical`, `multiscale`,
    /// `full-multiscale`), no recipe. [`RunSpec::new`] builds any task's.
    pub fn denoise(
        model: &str,
        label: &str,
        levels: usize,
        n0: usize,
        iterations: usize,
        tag: String,
    ) -> Result<Self> {
        let (strategy, subsampling) = label_strategy(label)?;
        let single_batch = (strategy == StrategyKind::Single).then_some(n0);
        Ok(Self {
            task: Task::Denoise,
            model: model.into(),
            label: label.into(),
            subsampling: subsampling.into(),
            strategy,
            levels,
            single_batch,
            iterations,
            tag,
            recipe: Recipe::Plain,
        })
    }

    /// A run of `task` under `preset` (its levels and the task's `N_0`): strategy `label` as in
    /// [`RunSpec::denoise`] with `recipe` on top (the label and folder carry the recipe's
    /// suffix, e.g. `multiscale+mfc`).
    pub fn new(
        task: Task,
        model: &str,
        label: &str,
        recipe: Recipe,
        preset: &Preset,
        iterations: usize,
        tag: String,
    ) -> Result<Self> {
        let mut spec = Self::denoise(
            model,
            label,
            preset.levels,
            preset.task_n0(task),
            iterations,
            tag,
        )?;
        spec.task = task;
        spec.label.push_str(recipe.suffix());
        spec.recipe = recipe;
        Ok(spec)
    }

    /// The #WU this run will spend, from the closed forms (001 Appendix B).
    pub fn planned_wu(&self, preset: &Preset) -> Result<f64> {
        let train = self.train_section(preset, 0)?;
        let plan = mge::LevelPlan::multiscale(self.levels, train.n0)?;
        let (strategy, iters) = train.fmg_strategy(self.strategy);
        Ok(fmg::stages_wu(&fmg::stages(strategy, &plan, iters)?)?.to_f64())
    }

    /// The `[train]` section of this run under `preset`, seeded by `seed`.
    fn train_section(&self, preset: &Preset, seed: u64) -> Result<TrainSection> {
        let full = preset.protocol == Protocol::Full;
        let lr = if full { 5e-4 } else { 2e-3 };
        let (lr, lr_schedule, loss, fmg_schedule) = match self.task {
            Task::Superres => (
                1e-3,
                LrSchedule::Constant,
                LossKind::Ssim,
                StageSchedule::Equal,
            ),
            Task::Inpaint => (lr, LrSchedule::Cosine, LossKind::Mse, StageSchedule::Equal),
            Task::Denoise | Task::Deblur => (
                lr,
                LrSchedule::Cosine,
                LossKind::Mse,
                StageSchedule::Halving,
            ),
        };
        let every = (self.iterations / preset.validations.max(1)).max(1);
        let mut train = TrainSection::new(preset.task_n0(self.task), self.iterations, lr);
        train.levels = Some(self.levels);
        train.single_batch = self.single_batch;
        train.fmg_schedule = fmg_schedule;
        train.lr_schedule = lr_schedule;
        train.loss = loss;
        train.subsampling = match self.subsampling.as_str() {
            "-" => Subsampling::Coarsen,
            name => name.parse()?,
        };
        // Per-term statistics (SPEC section 3) once per validation interval.
        train.stats_every = if self.strategy == StrategyKind::Single {
            0
        } else {
            every
        };
        train.checkpoint_every = 4 * self.iterations;
        train.validate_every = every;
        train.seed = seed;
        match self.recipe {
            Recipe::Plain | Recipe::Mfc => {}
            Recipe::NoiseConsistent => train.noise_consistent = true,
            Recipe::Adaptive => train.allocation = Allocation::Adaptive,
        }
        Ok(train)
    }

    /// The training configuration of this run under `preset`, seeded by `seed`.
    pub fn config(&self, preset: &Preset, seed: u64) -> Result<TrainConfig> {
        let mut model = preset.model_table(self.task, &self.model)?;
        if self.recipe == Recipe::Mfc {
            model.insert("conv".into(), "mfc".into());
        }
        let mut data = DataConfig::new(SourceKind::DeadLeaves, preset.size);
        data.validation_images = preset.validation_images;
        data.blur_sigma = preset.blur_sigma();
        let cfg = TrainConfig {
            task: self.task,
            model,
            data,
            train: self.train_section(preset, seed)?,
        };
        cfg.validate(Path::new(&format!("<{}>", self.dir_name())))?;
        Ok(cfg)
    }
}

/// The strategy and subsampling of a `results.csv` strategy label of a denoising run:
/// `multiscale` and `full-multiscale` coarsen, `single-paper`, `single-practical` and
/// `single-equal-wu` are single-scale (subsampling `-`).
pub fn label_strategy(label: &str) -> Result<(StrategyKind, &'static str)> {
    Ok(match label {
        "multiscale" => (StrategyKind::Multiscale, "coarsen"),
        "full-multiscale" => (StrategyKind::FullMultiscale, "coarsen"),
        "single-paper" | "single-practical" | "single-equal-wu" => (StrategyKind::Single, "-"),
        other => anyhow::bail!(
            "unknown strategy label {other:?} (expected multiscale, full-multiscale, single-paper, single-practical or single-equal-wu)"
        ),
    })
}

/// A finished and scored run: its record, loss history and test-set predictions.
pub struct Finished {
    pub record: Record,
    pub history: Vec<HistoryPoint>,
    pub prediction: Tensor,
    pub scores: Scores,
}

/// `outcome.json` beside a finished run, so a rerun of the experiment reuses it when its
/// whole specification ([`run_spec`]) is unchanged.
#[derive(Serialize, Deserialize)]
struct Outcome {
    #[serde(default)]
    spec: String,
    wu: f64,
    wall_s: f64,
    #[serde(default)]
    train_s: f64,
    history: Vec<HistoryPoint>,
}

/// Everything that determines a run's result: the code ([`crate::reproduce::code_version`]),
/// the protocol, the strategy and the whole training configuration (seed included).
fn run_spec(spec: &RunSpec, preset: &Preset, cfg: &TrainConfig) -> Result<String> {
    Ok(format!(
        "code {}\nprotocol {}\nrun {} ({} {})\n{}",
        crate::reproduce::code_version(),
        preset.name(),
        spec.dir_name(),
        spec.strategy.name(),
        spec.iterations,
        cfg.to_toml()?
    ))
}

/// Writes the initial weights of `cfg` to `path` unless the file there was made from the same
/// code, model and seed (recorded in `path.spec`).
fn ensure_initial(cfg: &TrainConfig, origin: &Path, path: &Path, device: &Device) -> Result<()> {
    let sidecar = path.with_extension("spec");
    let expected = format!(
        "code {}\nseed {}\n{}",
        crate::reproduce::code_version(),
        cfg.train.seed,
        toml::to_string(&cfg.model)?
    );
    if path.exists() && std::fs::read_to_string(&sidecar).ok().as_deref() == Some(expected.as_str())
    {
        return Ok(());
    }
    save_initial(cfg, origin, path, device)?;
    crate::common::write_atomic(&sidecar, expected.as_bytes())
}

/// Train `spec` under `dir/<run>/` from the initial weights `dir/<task>-<model>-init.safetensors`
/// (written by the first run of the pair, so every strategy starts from the same parameters),
/// or reuse the run when it already finished there; score its final model on `test` and write
/// `scores.csv` (per image) beside it.
pub fn train_and_score(
    spec: &RunSpec,
    preset: &Preset,
    seed: u64,
    dir: &Path,
    test: &TestSet,
    device: &Device,
) -> Result<Finished> {
    let out = dir.join(spec.dir_name());
    let outcome_path = out.join("outcome.json");
    let final_ckpt = out.join("final.safetensors");
    let cfg = spec.config(preset, seed)?;
    let expected = run_spec(spec, preset, &cfg)?;
    let previous: Option<Outcome> = match std::fs::read_to_string(&outcome_path) {
        Ok(text) if final_ckpt.exists() => Some(
            serde_json::from_str(&text).with_context(|| format!("{}", outcome_path.display()))?,
        ),
        _ => None,
    };
    let outcome = match previous {
        Some(o) if o.spec == expected => o,
        previous => {
            if previous.is_some() {
                tracing::info!("{}: finished with another specification (code, protocol, seed or config); training it again", out.display());
            }
            if out.exists() {
                std::fs::remove_dir_all(&out)
                    .with_context(|| format!("cannot clear run {}", out.display()))?;
            }
            let origin = PathBuf::from(spec.dir_name());
            let init = dir.join(format!(
                "{}-{}-init.safetensors",
                spec.task.name(),
                spec.model
            ));
            ensure_initial(&cfg, &origin, &init, device)?;
            let r = train_run(
                &cfg,
                &origin,
                spec.strategy,
                &out,
                Start::Init(&init),
                device,
            )
            .with_context(|| format!("run {}", spec.dir_name()))?;
            let o = Outcome {
                spec: expected,
                wu: r.wu,
                wall_s: r.wall_s,
                train_s: r.train_s,
                history: r.history,
            };
            crate::common::write_atomic(&outcome_path, serde_json::to_string(&o)?.as_bytes())?;
            o
        }
    };
    let (cfg, varmap, _) = models::checkpoint::load(&final_ckpt, device)
        .with_context(|| format!("cannot load {}", final_ckpt.display()))?;
    let model = models::build(
        &cfg,
        candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, device),
    )?;
    let prediction = test.predict(model.as_ref())?;
    let scores = test.score(&prediction)?;
    write_scores(&out.join("scores.csv"), &test.names, &scores)?;
    let metric = spec.task.metric();
    let record = Record {
        task: spec.task.name().into(),
        model: spec.model.clone(),
        strategy: spec.label.clone(),
        subsampling: spec.subsampling.clone(),
        wu: outcome.wu,
        wall_s: outcome.wall_s,
        metric,
        seed,
        train_s: outcome.train_s,
        data_s: outcome.history.last().map_or(0.0, |p| p.data_s),
        per_image: scores.metric(metric).to_vec(),
        p_value: None,
    };
    Ok(Finished {
        record,
        history: outcome.history,
        prediction,
        scores,
    })
}

/// The paired two-sided t-test of `r` against `base` on their per-image test metrics
/// (p-value, Cohen's d_z, mean difference `r - base`); `None` with fewer than 2 images.
pub fn compare(r: &Record, base: &Record) -> Option<data::TTest> {
    data::paired_t_test(&r.per_image, &base.per_image).ok()
}

/// Test set of `task` for `preset`, identical for every run of the task.
pub fn test_set(task: Task, preset: &Preset, seed: u64, device: &Device) -> Result<TestSet> {
    let spec = TestSpec {
        patches: preset.test_patches,
        blur_sigma: preset.blur_sigma(),
        seed: seed ^ 0x07E5_75E7,
        ..TestSpec::new(task, preset.size)
    };
    let dir = data::photos_dir();
    TestSet::load(&dir, &spec, device).with_context(|| format!("test images in {}", dir.display()))
}

/// Progress lines to stdout and to `DIR/progress.log`.
pub struct Progress {
    file: std::fs::File,
    start: std::time::Instant,
}

impl Progress {
    pub fn new(dir: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("progress.log"))?;
        Ok(Self {
            file,
            start: std::time::Instant::now(),
        })
    }
    pub fn line(&mut self, msg: &str) {
        let line = format!("[{:7.1} s] {msg}", self.start.elapsed().as_secs_f64());
        println!("{line}");
        let _ = writeln!(self.file, "{line}");
    }
    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// Validation curves of `runs` against #WU and wall time, as `DIR/<stem>-val_loss_vs_{wu,time}.png`.
pub fn plot_runs(dir: &Path, stem: &str, runs: &[(String, Vec<HistoryPoint>)]) -> Result<()> {
    let tmp = dir.join(format!(".plot-{stem}"));
    crate::commands::train_cmd::plot_history(&tmp, runs)?;
    for f in ["val_loss_vs_wu.png", "val_loss_vs_time.png"] {
        let from = tmp.join(f);
        if from.exists() {
            std::fs::rename(&from, dir.join(format!("{stem}-{f}")))?;
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
    Ok(())
}

/// `DIR/variance.csv` (`seed,run,iteration,wu,term,ratio`: the per-term variance ratios
/// `V_l / V_fine` of every multiscale run, SPEC section 3) and `DIR/variance.png` (one curve
/// per run and term against #WU), plus a markdown note of the statistics' cost.
pub fn write_variance(dir: &Path, runs: &[(u64, String, Vec<HistoryPoint>)]) -> Result<String> {
    let mut csv = String::from("seed,run,iteration,wu,term,ratio\n");
    let mut series = Vec::new();
    let mut note = String::from("\nPer-term variance ratios `V_l / V_fine` (SPEC section 3), last measurement per run (`variance.csv`, `variance.png`); each measurement is a pass of its own over the iteration's draws (2-4 backward passes per term), outside the run's #WU and training time, so both are given here:\n\n| seed | run | ratios (finest term first) | measurements | their #WU | run's #WU | their time s | training s |\n|---|---|---|---|---|---|---|---|\n");
    for (seed, name, history) in runs {
        let measured: Vec<&HistoryPoint> =
            history.iter().filter(|p| p.variance.is_some()).collect();
        if measured.is_empty() {
            continue;
        }
        let terms = measured
            .iter()
            .map(|p| p.variance.as_ref().map_or(0, Vec::len))
            .max()
            .unwrap_or(0);
        for term in 0..terms {
            let mut points = Vec::new();
            for p in &measured {
                if let Some(Some(r)) = p.variance.as_ref().and_then(|v| v.get(term).copied()) {
                    writeln!(
                        csv,
                        "{seed},{name},{},{:.3},{term},{r:.6e}",
                        p.iteration, p.wu
                    )?;
                    if r > 0.0 && r.is_finite() {
                        points.push((p.wu, r));
                    }
                }
            }
            if !points.is_empty() && seed == &runs[0].0 {
                series.push(crate::report::plot::Series {
                    name: format!("{name} term {term}"),
                    points,
                });
            }
        }
        let last = measured
            .last()
            .and_then(|p| p.variance.clone())
            .unwrap_or_default();
        let stats_s: f64 = measured.iter().filter_map(|p| p.stats_step_s).sum();
        let stats_wu: f64 = measured.iter().filter_map(|p| p.stats_wu).sum();
        let last_point = history.last();
        writeln!(
            note,
            "| {seed} | {name} | {} | {} | {stats_wu:.0} | {:.0} | {stats_s:.1} | {:.1} |",
            last.iter()
                .map(|v| v.map_or("-".into(), |v| format!("{v:.3}")))
                .collect::<Vec<_>>()
                .join(" / "),
            measured.len(),
            last_point.map_or(0.0, |p| p.wu),
            last_point.map_or(0.0, |p| p.train_s)
        )?;
    }
    crate::common::write_atomic(&dir.join("variance.csv"), csv.as_bytes())?;
    if !series.is_empty() {
        let axes = crate::report::plot::Axes {
            title: "per-term variance ratio V_l / V_fine",
            x_label: "#WU",
            y_label: "V_l / V_fine",
            log_y: true,
        };
        crate::report::plot::line_plot(&dir.join("variance.png"), &axes, &series)?;
    }
    Ok(note)
}

/// [`write_variance`] of `runs`, its note appended to `DIR/results.md`.
pub fn append_variance_note(dir: &Path, runs: &[(u64, String, Vec<HistoryPoint>)]) -> Result<()> {
    let note = write_variance(dir, runs)?;
    let path = dir.join("results.md");
    let mut md = std::fs::read_to_string(&path).context("results.md")?;
    md.push_str(&note);
    std::fs::write(&path, md).context("results.md")
}

/// The mean of `f` over `records` (NaN for none, [`crate::reproduce::mean`]).
pub fn avg(records: &[&Record], f: impl Fn(&Record) -> f64) -> f64 {
    crate::reproduce::mean(&records.iter().map(|r| f(r)).collect::<Vec<_>>())
}

/// One-line summary of a finished run.
pub fn summary(f: &Finished) -> String {
    let r = &f.record;
    let last_val = f.history.iter().rev().find_map(|p| p.val_loss);
    format!(
        "{} {} {} {}: #WU {:.0}, wall {:.1} s, val loss {}, test {} {:.4} (psnr {:.2} dB, ssim {:.4})",
        r.task,
        r.model,
        r.strategy,
        r.subsampling,
        r.wu,
        r.wall_s,
        last_val.map_or("-".into(), |v| format!("{v:.4e}")),
        r.metric.name(),
        r.mean(),
        crate::reproduce::mean(&f.scores.psnr),
        crate::reproduce::mean(&f.scores.ssim),
    )
}

/// [`fmg::Driver::run`] from its first iteration, as `train::Trainer` runs its loop: inside
/// `train::threads::warm` (the pool's other workers kept awake).
pub fn run_driver<O: candle_nn::Optimizer, S: mge::Sampler + ?Sized>(
    driver: &fmg::Driver,
    problem: fmg::Problem<S>,
    opt: &mut O,
    acct: &mut mge::Accountant,
    hooks: &mut dyn for<'o> fmg::Hooks<fmg::FirstOrder<'o, O>, S>,
) -> fmg::Result<Vec<fmg::IterRecord>> {
    train::threads::warm(|| driver.run(problem, opt, acct, driver.state_at(0)?, hooks))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every strategy label of the tables maps to its kind; an unknown label is an error, never a
    /// silent single-scale run.
    #[test]
    fn labels_name_their_strategy_and_typos_are_errors() {
        for (label, kind, sub) in [
            ("multiscale", StrategyKind::Multiscale, "coarsen"),
            ("full-multiscale", StrategyKind::FullMultiscale, "coarsen"),
            ("single-paper", StrategyKind::Single, "-"),
            ("single-practical", StrategyKind::Single, "-"),
            ("single-equal-wu", StrategyKind::Single, "-"),
        ] {
            assert_eq!(label_strategy(label).unwrap(), (kind, sub));
        }
        let e = label_strategy("multi-scale").unwrap_err().to_string();
        assert!(e.contains("multi-scale"), "{e}");
        let e = RunSpec::denoise("unet", "fullmultiscale", 2, 1, 4, String::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("fullmultiscale"), "{e}");
    }

    /// The recipe rows that apply per task, and a recipe run's label, folder and batch.
    #[test]
    fn recipe_rows_per_task_and_their_runs() {
        let names = |t| {
            recipe_specs(t)
                .into_iter()
                .map(|(s, r)| format!("{s}{}", r.suffix()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Task::Denoise),
            [
                "multiscale+noise-consistent",
                "multiscale+adaptive",
                "full-multiscale+adaptive",
                "single-practical+mfc",
                "multiscale+mfc",
                "full-multiscale+mfc"
            ]
        );
        assert_eq!(names(Task::Deblur), names(Task::Denoise)[1..]);
        assert_eq!(names(Task::Inpaint), names(Task::Deblur));
        assert_eq!(
            names(Task::Superres),
            ["multiscale+adaptive", "full-multiscale+adaptive"]
        );
        let full = Preset::full();
        let s = RunSpec::new(
            Task::Superres,
            "espcn",
            "single-practical",
            Recipe::Adaptive,
            &full,
            10,
            "b5".into(),
        )
        .unwrap();
        assert_eq!(s.dir_name(), "superres-espcn-single-practical+adaptive-b5");
        assert_eq!(
            (s.single_batch, s.levels, s.recipe),
            (Some(8), 4, Recipe::Adaptive)
        );
    }

    #[test]
    fn model_tables_are_the_presets_models() {
        let quick = Preset::quick();
        let t = quick.model_table(Task::Denoise, "unet").unwrap();
        let want: toml::Table =
            toml::from_str("kind = \"unet\"\nchannels = [8, 16, 32]\nnoise_conditioning = true")
                .unwrap();
        assert_eq!(t, want);
        let t = quick.model_table(Task::Superres, "resnet").unwrap();
        assert_eq!(t["kind"].as_str(), Some("srresnet"));
        let e = quick.model_table(Task::Denoise, "espcn").unwrap_err();
        assert!(e.to_string().contains("espcn"), "{e}");
    }

    #[test]
    fn averages_over_records_are_nan_for_none() {
        let r = |wu| Record {
            task: "denoise".into(),
            model: "unet".into(),
            strategy: "multiscale".into(),
            subsampling: "coarsen".into(),
            wu,
            wall_s: 1.0,
            metric: data::Metric::Mse,
            seed: 0,
            train_s: 1.0,
            data_s: 0.0,
            per_image: vec![0.1],
            p_value: None,
        };
        let (a, b) = (r(2.0), r(4.0));
        assert_eq!(avg(&[&a, &b], |r| r.wu), 3.0);
        assert!(avg(&[], |r| r.wu).is_nan());
    }
}
