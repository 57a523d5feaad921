//! `cargo xtask train` (one model from a TOML config) and `cargo xtask eval` (score a
//! checkpoint on a folder of images).
//!
//! Training composes the crates: `data` (images, degradations) -> `mge` (the estimator, #WU)
//! -> `fmg` (stages, cosine learning rate, early stopping) with the resumable [`Adam`] of this
//! runner or a second-order `optim` optimizer (`[train.optimizer]`). Progress, checkpoints,
//! validation, the loss history and its plots live here.

use crate::adam::{Adam, SharedAdam};
use crate::checkpointing;
use crate::common::{ensure_out_dir, Context};
use crate::config::{Allocation, FmgSchedule, LossKind, SourceKind, Strategy, Task, TrainConfig};
use crate::plot::{line_plot, Axes, Series};
use anyhow::{bail, Context as _, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use data::{Degradation, Degraded, Loader, SharedSource};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{rngs::StdRng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training configuration (see `configs/`).
    #[arg(long)]
    pub config: PathBuf,
    /// Overrides `train.strategy` of the config.
    #[arg(long, value_enum)]
    pub strategy: Option<Strategy>,
    /// Continue from the last checkpoint in `--out`.
    #[arg(long)]
    pub resume: bool,
    /// Output folder: checkpoints, `train.log`, `history.csv`, plots, `final.safetensors`.
    #[arg(long)]
    pub out: PathBuf,
}

/// One point of the loss history (every iteration; `val_loss` where validated).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub iteration: u64,
    pub stage: usize,
    pub level: usize,
    pub loss: f64,
    pub wu: f64,
    pub wall_s: f64,
    /// Wall time of the training steps alone: `wall_s` less validation and checkpoints.
    #[serde(default)]
    pub train_s: f64,
    pub val_loss: Option<f64>,
    /// Per-term variance ratios `V_l / V_fine` (SPEC section 3, smoothed), finest term first, on
    /// the iterations that measured per-term statistics (`train.stats_every`, or every
    /// iteration under adaptive allocation): same #WU, 2-4x the backward work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variance: Option<Vec<Option<f64>>>,
    /// Wall time of this iteration's step when it measured statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_step_s: Option<f64>,
}

/// What a finished run returns.
pub struct RunOutcome {
    pub history: Vec<HistoryPoint>,
    pub wu: f64,
    pub wall_s: f64,
    /// Training steps alone (validation and checkpoints excluded).
    pub train_s: f64,
    pub final_checkpoint: PathBuf,
    /// Last per-term variance ratios `V_l / V_fine` (empty for single-scale).
    pub variance_ratios: Vec<Option<f64>>,
}

/// Trainer state saved in every checkpoint beside the weights and the optimizer moments.
#[derive(Serialize, Deserialize)]
struct State {
    iterations_done: u64,
    wu_numer: u128,
    wu_denom: u128,
    wall_s: f64,
    loader_position: u64,
    history: Vec<HistoryPoint>,
    /// Second-order runs: the optimizer config continuing from the last step (adapted damping
    /// or trust radius); Adam's moments are in `optim.safetensors` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    optimizer: Option<optim::OptimizerConfig>,
}

/// The optimizer state a checkpoint saves.
enum OptimizerState {
    /// Adam's moments and step count (`optim.safetensors`).
    Adam(Rc<RefCell<Adam>>),
    /// The second-order config continued after the last step ([`State::optimizer`]).
    SecondOrder(optim::OptimizerConfig),
}

/// The config's `[model]` table as a `models::ModelConfig`.
pub fn model_config(cfg: &TrainConfig, origin: &Path) -> Result<models::ModelConfig> {
    toml::Value::Table(cfg.model.clone())
        .try_into()
        .map_err(|e| anyhow::anyhow!("{}: [model]: {e}", origin.display()))
}

/// Training and validation image sources of the config. Procedural sources serve both (the
/// validation stream uses another seed, so its images are never drawn in training); a folder
/// holds `data.validation_images` of its photos out of training
/// ([`data::PhotoFolder::split_validation`], seeded by `train.seed`).
pub fn sources(cfg: &TrainConfig) -> Result<(SharedSource, SharedSource)> {
    let d = &cfg.data;
    let seed = cfg.train.seed;
    let c = d.channels;
    let procedural: SharedSource = match d.source {
        SourceKind::DeadLeaves => Arc::new(data::DeadLeaves::new(seed).with_channels(c)),
        SourceKind::Grf => Arc::new(data::GaussianRandomField::new(seed, d.grf_beta).with_channels(c)),
        SourceKind::Markov => Arc::new(data::MarkovField::new(seed).with_channels(c)),
        SourceKind::Folder => {
            let dir = d.dir.as_ref().context("data.dir is required for data.source = \"folder\"")?;
            let (train, validation) = photos(dir, c)?
                .split_validation(d.validation_images, seed)
                .with_context(|| format!("data.validation_images = {}", d.validation_images))?;
            return Ok((Arc::new(train), Arc::new(validation)));
        }
    };
    Ok((procedural.clone(), procedural))
}

/// A folder of photos with `channels` channels (grey when 1).
pub fn photos(dir: &Path, channels: usize) -> Result<data::PhotoFolder> {
    Ok(data::PhotoFolder::open(dir).with_context(|| format!("image folder {}", dir.display()))?.grayscale(channels == 1))
}

/// The degradation of `task` (001 section 4, Appendix D).
pub fn degradation(task: Task, blur_sigma: f64) -> Degradation {
    match task {
        Task::Denoise => Degradation::Denoise,
        Task::Deblur => Degradation::Deblur { sigma: blur_sigma },
        Task::Inpaint => Degradation::Inpaint,
        Task::Superres => Degradation::SuperRes,
    }
}

/// Fresh degraded batches whose randomness depends only on the stream position, so a resumed
/// run draws exactly what the uninterrupted one drew (`position` is shared with the hooks
/// that checkpoint it).
struct ResumableSampler {
    loader: Loader,
    degradation: Degradation,
    seed: u64,
    device: Device,
    position: Rc<Cell<u64>>,
}

impl mge::Sampler for ResumableSampler {
    fn draw(&mut self, count: usize) -> mge::Result<Degraded> {
        let mut rng = StdRng::seed_from_u64(data::mix_seed(self.seed, self.loader.position()));
        let clean = self.loader.next_batch(count, &self.device)?;
        self.position.set(self.loader.position());
        Ok(self.degradation.apply(&clean, &mut rng)?)
    }
}

/// Mean-over-pixels training loss (SPEC section 0): MSE, or negative SSIM (Table 8) whose
/// window is physical (SPEC section 6): standard on the finest mesh `cfg.data.size`, and
/// `mesh_factor` times narrower in pixels on a coarser level, so the two sides of a telescoping
/// term are the same functional.
fn loss_fn(cfg: &TrainConfig) -> Result<Box<mge::LossFn<'static>>> {
    Ok(match cfg.train.loss {
        LossKind::Mse => Box::new(|p: &Tensor, t: &Tensor| (p - t)?.sqr()),
        LossKind::Ssim => {
            let (finest, levels) = (cfg.data.size, cfg.levels());
            let subsampling: grids::Subsampling =
                cfg.train.subsampling.parse().map_err(|e| anyhow::anyhow!("train.subsampling: {e:?}"))?;
            Box::new(move |p: &Tensor, t: &Tensor| {
                let level = (finest / t.dim(3)?.max(1)).max(1).trailing_zeros() as usize;
                let factor = subsampling.mesh_factor(level, levels) as f64;
                data::metrics::ssim_loss_with(p, t, data::metrics::SsimWindow::STANDARD.coarsened(factor))
            })
        }
    })
}

/// A fixed validation batch drawn from the validation source of [`sources`] (a stream the
/// training stream never reaches), degraded once with a fixed seed.
fn validation_set(cfg: &TrainConfig, source: SharedSource, device: &Device) -> Result<Degraded> {
    const VALIDATION_SALT: u64 = 0x7A11_DA7E_0000_0001;
    let mut loader = Loader::new(source, cfg.data.size, cfg.train.seed ^ VALIDATION_SALT, cfg.data.threads);
    let clean = loader.next_batch(cfg.data.validation_images, device)?;
    let mut rng = StdRng::seed_from_u64(data::mix_seed(cfg.train.seed, VALIDATION_SALT));
    Ok(degradation(cfg.task, cfg.data.blur_sigma).apply(&clean, &mut rng)?)
}

/// Mean training loss of `model` on the validation batch (finest mesh).
fn validation_loss(model: &dyn models::Model, loss: &mge::LossFn, v: &Degraded) -> Result<f64> {
    let pred = model.forward(&v.input, v.t.as_ref())?;
    Ok(loss(&pred, &v.target)?.mean_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Progress, validation, history and checkpoints, called by the `fmg` driver.
struct RunHooks<'a> {
    model: &'a dyn models::Model,
    loss: &'a mge::LossFn<'a>,
    validation: Degraded,
    varmap: &'a VarMap,
    model_cfg: &'a models::ModelConfig,
    optimizer: OptimizerState,
    position: Rc<Cell<u64>>,
    out: &'a Path,
    checkpoint_every: u64,
    total_iters: u64,
    stages: usize,
    wall_offset: f64,
    /// Training time before this session (resume), and validation + checkpoint time in it.
    train_offset: f64,
    overhead_s: f64,
    history: Vec<HistoryPoint>,
    ratios: Vec<Option<f64>>,
    bar: ProgressBar,
    /// Restriction of the run, defining the Galerkin hot start's stencil prolongation.
    restriction: grids::Restriction,
}

impl RunHooks<'_> {
    fn save(&self, iterations_done: u64, wu: mge::Fraction, wall_s: f64) -> Result<PathBuf> {
        let state = State {
            iterations_done,
            wu_numer: wu.numer(),
            wu_denom: wu.denom(),
            wall_s,
            loader_position: self.position.get(),
            history: self.history.clone(),
            optimizer: match &self.optimizer {
                OptimizerState::Adam(_) => None,
                OptimizerState::SecondOrder(c) => Some(*c),
            },
        };
        checkpointing::save(self.out, iterations_done, &state, |dir| {
            save_model(&dir.join("model.safetensors"), self.model_cfg, self.varmap)?;
            match &self.optimizer {
                OptimizerState::Adam(adam) => adam.borrow().save(&dir.join("optim.safetensors")),
                OptimizerState::SecondOrder(_) => Ok(()),
            }
        })
    }
}

impl fmg::Hooks for RunHooks<'_> {
    /// Galerkin hot start (SPEC section 4, 002 eq. 4.14): every 3x3 stencil trained on mesh
    /// `2^from h` is replaced in place by its prolongation to mesh `2^to h`.
    fn prolong(&mut self, from: usize, to: usize) -> std::result::Result<(), String> {
        let fine = models::transfer::prolong_network(self.varmap, self.restriction, grids::Prolongation::default())
            .map_err(|e| format!("Galerkin hot start from mesh 2^{from}h to 2^{to}h: {e}"))?;
        let fine = fine.data().lock().map_err(|_| "poisoned VarMap".to_string())?;
        let vars = self.varmap.data().lock().map_err(|_| "poisoned VarMap".to_string())?;
        for (name, var) in vars.iter() {
            let new = fine.get(name).ok_or_else(|| format!("Galerkin hot start lost variable {name}"))?;
            var.set(new.as_tensor()).map_err(|e| format!("Galerkin hot start, {name}: {e}"))?;
        }
        tracing::info!(from, to, "Galerkin hot start: prolonged every 3x3 stencil");
        Ok(())
    }

    fn validate(&mut self, _level: usize) -> std::result::Result<Option<f64>, String> {
        let clock = std::time::Instant::now();
        let v = validation_loss(self.model, self.loss, &self.validation).map(Some).map_err(|e| format!("{e:#}"));
        self.overhead_s += clock.elapsed().as_secs_f64();
        v
    }

    fn on_iteration(&mut self, rec: &fmg::IterRecord) -> std::result::Result<fmg::Control, String> {
        let wall_s = self.wall_offset + rec.wall_s;
        let wu = rec.wu_total.to_f64();
        let measured = rec.terms.len() > 1 && rec.terms.iter().any(|t| t.variance.is_some());
        self.history.push(HistoryPoint {
            iteration: rec.iteration,
            stage: rec.stage,
            level: rec.level,
            loss: rec.loss,
            wu,
            wall_s,
            train_s: self.train_offset + rec.wall_s - self.overhead_s,
            val_loss: rec.val_loss,
            variance: measured.then(|| rec.variance_ratios.clone()),
            stats_step_s: measured.then_some(rec.step_s),
        });
        if !rec.variance_ratios.is_empty() {
            self.ratios = rec.variance_ratios.clone();
        }
        let ratios = fmt_ratios(&self.ratios);
        let mut step = String::new();
        if let (OptimizerState::SecondOrder(c), Some(r)) = (&mut self.optimizer, &rec.second_order) {
            *c = c.continued(r);
            let (name, value) = match (r.radius, r.damping) {
                (Some(radius), _) => ("radius", radius),
                (_, damping) => ("damping", damping.unwrap_or(f64::NAN)),
            };
            tracing::debug!(
                iteration = rec.iteration,
                accepted = r.accepted,
                ratio = r.ratio,
                name,
                value,
                loss_before = r.loss_before,
                loss_after = r.loss_after,
                cg_iterations = r.cg_iterations,
                forward_passes = r.forward_passes,
                "second-order step"
            );
            step = format!(" {} rho {:.2} {name} {value:.1e}", if r.accepted { "accepted" } else { "rejected" }, r.ratio);
        }
        self.bar.set_position(rec.iteration + 1);
        self.bar.set_message(format!(
            "stage {}/{} (mesh 2^{}h) loss {:.4e} #WU {:.0} ({:.1} WU/s){step}{}{}",
            rec.stage + 1,
            self.stages,
            rec.level,
            rec.loss,
            wu,
            rec.wu.to_f64() / rec.step_s.max(1e-9),
            if ratios.is_empty() { String::new() } else { format!(" var ratios {ratios}") },
            rec.val_loss.map_or(String::new(), |v| format!(" val {v:.4e}")),
        ));
        if let Some(v) = rec.val_loss {
            tracing::info!(iteration = rec.iteration, stage = rec.stage, loss = rec.loss, val_loss = v, wu, wall_s, ratios = %ratios, "validation");
        }
        let done = rec.iteration + 1;
        if done % self.checkpoint_every == 0 || done == self.total_iters {
            let clock = std::time::Instant::now();
            self.save(done, rec.wu_total, wall_s).map_err(|e| format!("checkpoint at iteration {done}: {e:#}"))?;
            self.overhead_s += clock.elapsed().as_secs_f64();
        }
        Ok(fmg::Control::Continue)
    }
}

fn fmt_ratios(r: &[Option<f64>]) -> String {
    r.iter().map(|v| v.map_or("-".into(), |v| format!("{v:.2}"))).collect::<Vec<_>>().join("/")
}

/// Save model weights and config with the models crate's checkpoint format.
fn save_model(path: &Path, cfg: &models::ModelConfig, varmap: &VarMap) -> Result<()> {
    models::checkpoint::save(path, cfg, varmap, &Default::default())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The `fmg` strategy and iteration count of `strategy` under `cfg`.
fn fmg_strategy(cfg: &TrainConfig, strategy: Strategy) -> (fmg::Strategy, usize) {
    let t = &cfg.train;
    match strategy {
        Strategy::Single => (fmg::Strategy::Single { batch: t.single_batch.unwrap_or(t.n0) }, t.iterations),
        Strategy::Multiscale => (fmg::Strategy::Multiscale, t.iterations),
        Strategy::FullMultiscale => {
            let schedule = match t.fmg_schedule {
                FmgSchedule::Halving => mge::StageSchedule::Halving,
                FmgSchedule::Equal => mge::StageSchedule::Equal,
            };
            (fmg::Strategy::FullMultiscale { schedule }, t.fmg_iterations.unwrap_or(t.iterations))
        }
    }
}

/// Write a fresh initialisation of `cfg`'s model to `path` (for [`Start::Init`]).
pub fn save_initial(cfg: &TrainConfig, origin: &Path, path: &Path, device: &Device) -> Result<()> {
    let model_cfg = model_config(cfg, origin)?;
    let varmap = VarMap::new();
    models::build(&model_cfg, models::init::seeded_var_builder(&varmap, cfg.train.seed, DType::F32, device))
        .with_context(|| format!("{}: [model]", origin.display()))?;
    save_model(path, &model_cfg, &varmap)
}

/// Where a run's parameters come from.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// A fresh initialisation seeded by `train.seed` ([`models::init::seeded_var_builder`]).
    Fresh,
    /// The last checkpoint in the output folder (fresh when there is none).
    Resume,
    /// The weights of a `models::checkpoint` file of the same configuration, so that runs
    /// compared with each other start from identical parameters.
    Init(&'a Path),
}

/// Train `cfg` with `strategy` into `out`, starting as `start` says.
pub fn train_run(
    cfg: &TrainConfig,
    origin: &Path,
    strategy: Strategy,
    out: &Path,
    start: Start,
    device: &Device,
) -> Result<RunOutcome> {
    ensure_out_dir(out)?;
    let _log = crate::common::RunLog::open(&out.join("train.log"))?;
    let mut used = cfg.clone();
    used.train.strategy = strategy;
    std::fs::write(out.join("config.toml"), used.to_toml()?)?;
    let model_cfg = model_config(cfg, origin)?;
    let mut varmap = VarMap::new();
    let model = models::build(&model_cfg, models::init::seeded_var_builder(&varmap, cfg.train.seed, DType::F32, device))
        .with_context(|| format!("{}: [model]", origin.display()))?;
    if let Start::Init(path) = start {
        models::checkpoint::load_into(path, &model_cfg, &varmap)
            .with_context(|| format!("initial weights {}", path.display()))?;
    }
    let t = &cfg.train;
    let levels = cfg.levels();
    let coarsest = cfg.data.size >> (levels - 1);
    let factor = model.downsampling_factor();
    if t.levels_auto {
        tracing::info!(
            levels,
            coarsest,
            factor,
            "train.levels not given: chose L = {levels} by 001 section 4's guideline (coarsest mesh {coarsest}x{coarsest} >= {m}x{m}, divisible by the model's down-sampling factor {factor})",
            m = crate::config::MIN_COARSEST_MESH
        );
    }
    if coarsest % factor != 0 {
        bail!(
            "{}: data.size = {}: the coarsest mesh ({coarsest}) must be a multiple of the model's down-sampling factor {factor}",
            origin.display(),
            cfg.data.size
        );
    }
    let plan = mge::LevelPlan {
        levels,
        first_level: 0,
        batch: cfg.level_batches(),
        subsampling: t.subsampling.parse().map_err(|e| anyhow::anyhow!("train.subsampling: {e:?}"))?,
        restriction: t.restriction.parse().map_err(|e| anyhow::anyhow!("train.restriction: {e:?}"))?,
        noise_consistent: t.noise_consistent,
    };
    let (fstrategy, iters) = fmg_strategy(cfg, strategy);
    let stages = fmg::stages(fstrategy, &plan, iters)?;
    let driver_cfg = fmg::DriverConfig {
        hot_start: t.hot_start.parse()?,
        validate_every: t.validate_every,
        patience: t.early_stopping_patience,
        min_delta: 0.0,
        stats_every: if strategy == Strategy::Single { 0 } else { t.stats_every },
        adaptive: (t.allocation == Allocation::Adaptive).then_some(t.stats_every.max(1)),
        seed: t.seed,
        // Per-sample models (group/layer norm) give the same gradient fused; MgNet's
        // batch norm would see a different batch.
        fused_levels: model_cfg.kind() != "mgnet",
        ..t.lr_schedule.driver_config(t.lr)
    };
    let driver = fmg::Driver::new(stages, driver_cfg)?;
    let total_iters = driver.total_iters();

    let (source, validation_source) = sources(cfg)?;
    let validation = validation_set(cfg, validation_source, device)?;
    let position = Rc::new(Cell::new(0));
    let mut sampler = ResumableSampler {
        loader: Loader::new(source, cfg.data.size, t.seed, cfg.data.threads),
        degradation: degradation(cfg.task, cfg.data.blur_sigma),
        seed: t.seed,
        device: device.clone(),
        position: position.clone(),
    };
    let vars = crate::adam::sorted_vars(&varmap)?;
    cfg.check_optimizer(origin, strategy)?;
    let mut optimizer = match t.optimizer.second_order() {
        None => OptimizerState::Adam(Rc::new(RefCell::new(Adam::from_varmap(&varmap)?))),
        Some(c) => OptimizerState::SecondOrder(c),
    };
    let mut acct = mge::Accountant::new();
    let resume = matches!(start, Start::Resume);
    let (mut start, mut wall_offset, mut history) = (0u64, 0.0, Vec::new());
    if resume {
        match checkpointing::load_latest::<State>(out)? {
            Some(ck) => {
                varmap
                    .load(ck.dir.join("model.safetensors"))
                    .with_context(|| format!("checkpoint {}: model weights", ck.dir.display()))?;
                let s = ck.state;
                match (&mut optimizer, s.optimizer) {
                    (OptimizerState::Adam(adam), _) => adam.borrow_mut().load(&ck.dir.join("optim.safetensors"))?,
                    (OptimizerState::SecondOrder(c), Some(saved))
                        if std::mem::discriminant(c) == std::mem::discriminant(&saved) =>
                    {
                        *c = saved
                    }
                    (OptimizerState::SecondOrder(_), _) => tracing::warn!(
                        "checkpoint {} has no state of train.optimizer: its damping or trust radius restarts from the config",
                        ck.dir.display()
                    ),
                }
                acct = mge::Accountant::with_total(mge::Fraction::new(s.wu_numer, s.wu_denom)?);
                sampler.loader.set_position(s.loader_position);
                position.set(s.loader_position);
                (start, wall_offset, history) = (s.iterations_done, s.wall_s, s.history);
                tracing::info!("resuming {} from iteration {start} (checkpoint of step {}: {})", out.display(), ck.step, ck.dir.display());
            }
            None => tracing::warn!("--resume: no checkpoint in {}, starting from scratch", out.display()),
        }
    }
    if start >= total_iters {
        bail!("{}: the run already finished ({start} of {total_iters} iterations)", out.display());
    }
    let loss = loss_fn(cfg)?;
    let bar = ProgressBar::new(total_iters).with_position(start);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:25} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("{} {}", cfg.task.name(), strategy.name()));
    let mut hooks = RunHooks {
        model: model.as_ref(),
        loss: loss.as_ref(),
        validation,
        varmap: &varmap,
        model_cfg: &model_cfg,
        optimizer,
        position,
        out,
        checkpoint_every: t.checkpoint_every as u64,
        total_iters,
        stages: driver.stages().len(),
        wall_offset,
        train_offset: history.last().map_or(0.0, |h: &HistoryPoint| h.train_s),
        overhead_s: 0.0,
        history: std::mem::take(&mut history),
        ratios: Vec::new(),
        bar,
        restriction: plan.restriction,
    };
    let (mut adam, mut first, mut second);
    let update: &mut dyn fmg::Update = match &hooks.optimizer {
        OptimizerState::Adam(a) => {
            adam = SharedAdam { adam: a.clone(), lr: t.lr };
            first = fmg::FirstOrder(&mut adam);
            &mut first
        }
        OptimizerState::SecondOrder(c) => {
            second = fmg::SecondOrderUpdate::new(c.build(vars.clone())?);
            &mut second
        }
    };
    let fwd = |x: &Tensor, tt: Option<&Tensor>| model.forward(x, tt);
    let result = driver.run_with(&fwd, loss.as_ref(), &mut sampler, &vars, update, &mut acct, start, &mut hooks);
    hooks.bar.finish();
    if let Err(e) = result {
        if let fmg::Error::NonFinite { iteration, level, loss } = &e {
            bail!(
                "training diverged: loss = {loss} at iteration {iteration} (mesh 2^{level}h); the last good checkpoint is kept in {}",
                checkpointing::checkpoints_dir(out).display()
            );
        }
        return Err(e.into());
    }
    let final_checkpoint = out.join("final.safetensors");
    save_model(&final_checkpoint, &model_cfg, &varmap)?;
    let history = hooks.history;
    write_history(&out.join("history.csv"), &history)?;
    plot_history(out, &[(strategy.name().to_string(), history.clone())])?;
    let last = history.last();
    Ok(RunOutcome {
        wu: last.map_or(0.0, |h| h.wu),
        wall_s: last.map_or(0.0, |h| h.wall_s),
        train_s: last.map_or(0.0, |h| h.train_s),
        history,
        final_checkpoint,
        variance_ratios: hooks.ratios,
    })
}

/// `history.csv`: `iteration,stage,level,loss,wu,wall_s,train_s,val_loss`.
pub fn write_history(path: &Path, h: &[HistoryPoint]) -> Result<()> {
    let mut s = String::from("iteration,stage,level,loss,wu,wall_s,train_s,val_loss\n");
    for p in h {
        let v = p.val_loss.map(|v| format!("{v:.6e}")).unwrap_or_default();
        s.push_str(&format!("{},{},{},{:.6e},{:.3},{:.3},{:.3},{v}\n", p.iteration, p.stage, p.level, p.loss, p.wu, p.wall_s, p.train_s));
    }
    std::fs::write(path, s).with_context(|| format!("cannot write {}", path.display()))
}

/// `val_loss_vs_wu.png` and `val_loss_vs_time.png` in `dir`, one curve per named history.
pub fn plot_history(dir: &Path, runs: &[(String, Vec<HistoryPoint>)]) -> Result<()> {
    for (file, x_label, x) in [
        ("val_loss_vs_wu.png", "#WU", (|p: &HistoryPoint| p.wu) as fn(&HistoryPoint) -> f64),
        ("val_loss_vs_time.png", "training time (s, validation excluded)", |p: &HistoryPoint| p.train_s),
    ] {
        let series: Vec<Series> = runs
            .iter()
            .map(|(name, h)| Series {
                name: name.clone(),
                points: h.iter().filter_map(|p| p.val_loss.map(|v| (x(p), v))).collect(),
            })
            .collect();
        if series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        let axes = Axes { title: "validation loss", x_label, y_label: "validation loss", log_y: true };
        line_plot(&dir.join(file), &axes, &series)?;
    }
    Ok(())
}

pub fn run_train(a: TrainArgs, ctx: &Context) -> Result<()> {
    let cfg = TrainConfig::load(&a.config)?;
    let strategy = a.strategy.unwrap_or(cfg.train.strategy);
    let start = if a.resume { Start::Resume } else { Start::Fresh };
    let r = train_run(&cfg, &a.config, strategy, &a.out, start, &ctx.device)?;
    let last_val = r.history.iter().rev().find_map(|p| p.val_loss);
    println!(
        "{} {}: {} iterations, #WU {:.1}, wall {:.1} s, final validation loss {}, checkpoint {}",
        cfg.task.name(),
        strategy.name(),
        r.history.last().map_or(0, |p| p.iteration + 1),
        r.wu,
        r.wall_s,
        last_val.map_or("-".into(), |v| format!("{v:.5e}")),
        r.final_checkpoint.display()
    );
    if !r.variance_ratios.is_empty() {
        println!("last per-term variance ratios V_l / V_fine: {}", fmt_ratios(&r.variance_ratios));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::with_optimizer;

    const TINY: &str = r#"
task = "denoise"
[model]
kind = "unet"
channels = [4, 8, 8]
[data]
source = "dead-leaves"
size = 16
validation_images = 4
[train]
levels = 2
n0 = 2
iterations = 12
lr = 2e-3
checkpoint_every = 6
validate_every = 3
stats_every = 0
"#;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-train-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&d).ok();
        d
    }

    #[test]
    fn resume_reproduces_the_uninterrupted_run() {
        let origin = Path::new("tiny.toml");
        let text = TINY.replace("checkpoint_every = 6", "checkpoint_every = 5");
        // Adam (moments in optim.safetensors) and CG-Steihaug (radius in the trainer state).
        for text in [text.clone(), with_optimizer(&text, "kind = \"steihaug\"\ncg_max_iters = 3")] {
            resume_reproduces(&TrainConfig::parse(&text, origin).unwrap());
        }
    }

    fn resume_reproduces(cfg: &TrainConfig) {
        let (origin, cfg) = (Path::new("tiny.toml"), cfg.clone());
        let (full, part) = (tmp("full"), tmp("part"));
        let a = train_run(&cfg, origin, Strategy::FullMultiscale, &full, Start::Fresh, &Device::Cpu).unwrap();
        // Stages of 12 and 6 iterations, checkpoints every 5: an interrupted run whose last
        // checkpoint is the one after 15 iterations (inside the second stage).
        let (ck, name) = (checkpointing::checkpoints_dir(&part), "step-00000015");
        std::fs::create_dir_all(ck.join(name)).unwrap();
        for f in std::fs::read_dir(checkpointing::checkpoints_dir(&full).join(name)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, ck.join(name).join(f.file_name().unwrap())).unwrap();
        }
        std::fs::write(ck.join("LATEST"), name).unwrap();
        let b = train_run(&cfg, origin, Strategy::FullMultiscale, &part, Start::Resume, &Device::Cpu).unwrap();
        let curve = |h: &[HistoryPoint]| h.iter().map(|p| (p.iteration, p.loss, p.wu, p.val_loss)).collect::<Vec<_>>();
        assert_eq!(a.history.len(), 18);
        assert_eq!(curve(&a.history), curve(&b.history));
        // A damaged checkpoint is a clear error, not a silent restart.
        std::fs::write(ck.join(name).join("model.safetensors"), b"garbage").unwrap();
        std::fs::write(ck.join("LATEST"), name).unwrap();
        let e = train_run(&cfg, origin, Strategy::FullMultiscale, &part, Start::Resume, &Device::Cpu).err().unwrap();
        assert!(format!("{e:#}").contains("corrupted"), "{e:#}");
        std::fs::remove_dir_all(&full).ok();
        std::fs::remove_dir_all(&part).ok();
    }

    #[test]
    fn history_records_the_variance_ratios_where_measured() {
        let origin = Path::new("tiny.toml");
        let cfg = TrainConfig::parse(&TINY.replace("stats_every = 0", "stats_every = 4"), origin).unwrap();
        let out = tmp("variance");
        let r = train_run(&cfg, origin, Strategy::Multiscale, &out, Start::Fresh, &Device::Cpu).unwrap();
        let measured: Vec<&HistoryPoint> = r.history.iter().filter(|p| p.variance.is_some()).collect();
        assert_eq!(measured.iter().map(|p| p.iteration).collect::<Vec<_>>(), [0, 4, 8]);
        for p in measured {
            let v = p.variance.as_ref().unwrap();
            assert_eq!(v.len(), 2);
            assert!(v.iter().all(|r| r.is_some_and(|r| r.is_finite() && r > 0.0)), "{v:?}");
            assert!(p.stats_step_s.is_some_and(|s| s > 0.0));
        }
        assert!(r.train_s > 0.0 && r.train_s <= r.wall_s, "{} vs {}", r.train_s, r.wall_s);
        std::fs::remove_dir_all(&out).ok();
    }

    #[test]
    fn folder_source_keeps_validation_photos_out_of_training() {
        let dir = data::photos_dir();
        let text = TINY.replace("source = \"dead-leaves\"", &format!("source = \"folder\"\ndir = {dir:?}"));
        let cfg = TrainConfig::parse(&text, Path::new("tiny.toml")).unwrap();
        let (train, validation) = sources(&cfg).unwrap();
        let n = data::ImageSource::len(&data::PhotoFolder::open(&dir).unwrap()).unwrap();
        assert_eq!((train.len(), validation.len()), (Some(n - 4), Some(4)));
        let too_many = TrainConfig::parse(&text.replace("validation_images = 4", &format!("validation_images = {n}")), Path::new("tiny.toml")).unwrap();
        let e = format!("{:#}", sources(&too_many).err().unwrap());
        assert!(e.contains("data.validation_images") && e.contains("photos"), "{e}");
    }

    #[test]
    fn seed_fixes_the_initial_weights_and_the_whole_run() {
        let origin = Path::new("tiny.toml");
        let cfg = |seed: u64| {
            let text = TINY.replace("iterations = 12", &format!("iterations = 3\nseed = {seed}"));
            TrainConfig::parse(&text, origin).unwrap()
        };
        let weights = |path: &Path| {
            let (_, varmap, _) = models::checkpoint::load(path, &Device::Cpu).unwrap();
            let vars = varmap.data().lock().unwrap();
            let mut named: Vec<(String, Vec<f32>)> =
                vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())).collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            named
        };
        let dir = tmp("seeds");
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a.safetensors"), dir.join("b.safetensors"), dir.join("c.safetensors"));
        save_initial(&cfg(5), origin, &a, &Device::Cpu).unwrap();
        save_initial(&cfg(5), origin, &b, &Device::Cpu).unwrap();
        save_initial(&cfg(6), origin, &c, &Device::Cpu).unwrap();
        assert!(weights(&a) == weights(&b), "same seed, other initial weights");
        assert!(weights(&a) != weights(&c), "other seed, same initial weights");
        // Two fresh runs with one seed give the same curve; another seed another one.
        let run = |seed: u64, name: &str| {
            let r = train_run(&cfg(seed), origin, Strategy::Multiscale, &dir.join(name), Start::Fresh, &Device::Cpu).unwrap();
            r.history.iter().map(|p| (p.loss, p.val_loss)).collect::<Vec<_>>()
        };
        let (x, y, z) = (run(5, "x"), run(5, "y"), run(6, "z"));
        assert_eq!(x, y);
        assert_ne!(x, z);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn every_strategy_lowers_the_validation_loss() {
        let origin = Path::new("tiny.toml");
        let cfg = TrainConfig::parse(&TINY.replace("iterations = 12", "iterations = 24"), origin).unwrap();
        for s in [Strategy::Single, Strategy::Multiscale, Strategy::FullMultiscale] {
            let out = tmp(s.name());
            let r = train_run(&cfg, origin, s, &out, Start::Fresh, &Device::Cpu).unwrap();
            let v: Vec<f64> = r.history.iter().filter_map(|p| p.val_loss).collect();
            assert!(v.last().unwrap() < v.first().unwrap(), "{}: {v:?}", s.name());
            assert!(out.join("final.safetensors").exists() && out.join("val_loss_vs_wu.png").exists());
            std::fs::remove_dir_all(&out).ok();
        }
    }

    /// Validation loss of the weights in `init` (a [`save_initial`] file of `cfg`).
    fn initial_validation_loss(cfg: &TrainConfig, init: &Path) -> f64 {
        let (model_cfg, varmap, _) = models::checkpoint::load(init, &Device::Cpu).unwrap();
        let model = models::build(&model_cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
        let val = validation_set(cfg, sources(cfg).unwrap().1, &Device::Cpu).unwrap();
        validation_loss(model.as_ref(), loss_fn(cfg).unwrap().as_ref(), &val).unwrap()
    }

    #[test]
    fn second_order_optimizers_lower_the_validation_loss() {
        let origin = Path::new("tiny.toml");
        let steihaug = "kind = \"steihaug\"\ncg_max_iters = 5";
        let gauss_newton = "kind = \"gauss-newton\"\ncg_max_iters = 5";
        let single = TINY.replace("levels = 2", "levels = 2\nstrategy = \"single\"");
        for (strategy, body) in [(Strategy::Multiscale, steihaug), (Strategy::Single, gauss_newton)] {
            let text = if strategy == Strategy::Single { &single } else { TINY };
            let cfg = TrainConfig::parse(&with_optimizer(text, body), origin).unwrap();
            let out = tmp(strategy.name());
            let init = out.with_extension("init.safetensors");
            save_initial(&cfg, origin, &init, &Device::Cpu).unwrap();
            let before = initial_validation_loss(&cfg, &init);
            let r = train_run(&cfg, origin, strategy, &out, Start::Init(&init), &Device::Cpu).unwrap();
            let v: Vec<f64> = r.history.iter().filter_map(|p| p.val_loss).collect();
            println!("{} {body:?}: validation loss {before:.4} -> {v:.4?}, #WU {}", strategy.name(), r.wu);
            assert!(*v.last().unwrap() < before, "{}: {before} -> {v:?}", strategy.name());
            std::fs::remove_file(&init).ok();
            // The checkpoint carries the adapted damping or radius, not Adam moments.
            let ck = checkpointing::load_latest::<State>(&out).unwrap().unwrap();
            assert!(ck.state.optimizer.is_some() && !ck.dir.join("optim.safetensors").exists());
            std::fs::remove_dir_all(&out).ok();
        }
        // --strategy cannot turn a single-scale Gauss-Newton config multiscale.
        let cfg = TrainConfig::parse(&with_optimizer(TINY, gauss_newton), origin).unwrap_err();
        assert!(format!("{cfg:#}").contains("train.strategy"), "{cfg:#}");
        let cfg = TrainConfig::parse(&with_optimizer(&single, gauss_newton), origin).unwrap();
        let out = tmp("gn-multiscale");
        let e = train_run(&cfg, origin, Strategy::Multiscale, &out, Start::Fresh, &Device::Cpu).err().unwrap();
        assert!(format!("{e:#}").contains("\"multiscale\""), "{e:#}");
        std::fs::remove_dir_all(&out).ok();
    }

    #[test]
    fn galerkin_hot_start_prolongs_the_weights_between_stages() {
        let origin = Path::new("tiny.toml");
        let text = TINY.replace("stats_every = 0", "stats_every = 0\nhot_start = \"galerkin\"");
        let cfg = TrainConfig::parse(&text, origin).unwrap();
        let (g, i) = (tmp("galerkin"), tmp("identity"));
        let init = std::env::temp_dir().join(format!("xtask-train-init-{}.safetensors", std::process::id()));
        save_initial(&cfg, origin, &init, &Device::Cpu).unwrap();
        let a = train_run(&cfg, origin, Strategy::FullMultiscale, &g, Start::Init(&init), &Device::Cpu).unwrap();
        let mut id = cfg.clone();
        id.train.hot_start = "identity".into();
        let b = train_run(&id, origin, Strategy::FullMultiscale, &i, Start::Init(&init), &Device::Cpu).unwrap();
        assert!(a.history.iter().all(|p| p.loss.is_finite()));
        // Same first stage; the second stage starts from different (prolonged) weights.
        let stage = |h: &[HistoryPoint], s| h.iter().filter(|p| p.stage == s).map(|p| p.loss).collect::<Vec<_>>();
        assert_eq!(stage(&a.history, 0), stage(&b.history, 0));
        assert_ne!(stage(&a.history, 1)[0], stage(&b.history, 1)[0]);
        std::fs::remove_file(&init).ok();
        std::fs::remove_dir_all(&g).ok();
        std::fs::remove_dir_all(&i).ok();
    }

    #[test]
    fn a_non_finite_loss_names_the_iteration_and_keeps_the_last_good_checkpoint() {
        let origin = Path::new("tiny.toml");
        let mut cfg = TrainConfig::parse(&TINY.replace("checkpoint_every = 6", "checkpoint_every = 1"), origin).unwrap();
        // Past validation on purpose: the first step throws every weight to ~1e30.
        cfg.train.lr = 1e30;
        let out = tmp("nan");
        let e = format!("{:#}", train_run(&cfg, origin, Strategy::Single, &out, Start::Fresh, &Device::Cpu).err().unwrap());
        assert!(e.contains("diverged") && e.contains("at iteration"), "{e}");
        let iteration: u64 = e.split("at iteration ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(iteration >= 1, "{e}");
        // The checkpoint after the last finite iteration verifies and its weights load.
        let ck = checkpointing::load_latest::<State>(&out).unwrap().unwrap();
        assert_eq!(ck.state.iterations_done, iteration);
        models::checkpoint::load(&ck.dir.join("model.safetensors"), &Device::Cpu).unwrap();
        std::fs::remove_dir_all(&out).ok();
    }

    /// A `MakeWriter` collecting the log in memory.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_chosen_level_count_is_logged() {
        let origin = Path::new("tiny.toml");
        let cfg = TrainConfig::parse(&TINY.replace("levels = 2\n", "").replace("iterations = 12", "iterations = 2"), origin).unwrap();
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let out = tmp("auto-levels");
        tracing::subscriber::with_default(subscriber, || {
            train_run(&cfg, origin, Strategy::Single, &out, Start::Fresh, &Device::Cpu).unwrap();
        });
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        // 16x16 UNet (factor 4): L = 2 keeps an 8x8 coarsest mesh.
        assert!(text.contains("chose L = 2") && text.contains("coarsest mesh 8x8"), "{text}");
        std::fs::remove_dir_all(&out).ok();
    }
}
