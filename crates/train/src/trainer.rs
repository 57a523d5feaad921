//! [`Trainer`]: any candle model trained by single-scale, multiscale (MGE, 001 eq. 6) or
//! Full-Multiscale (001 Algorithm 2) schedules of [`fmg::Driver`], with validation, history,
//! atomic verified checkpoints and exact resume.
//!
//! A run folder holds `checkpoints/step-NNNNNNNN/` (`model.safetensors`, `optim.safetensors`
//! for Adam, `state.json`: see [`crate::checkpoint`]). Everything a resumed run needs to draw
//! the same batches and take the same steps is in the checkpoint: parameters, Adam's moments or
//! the second-order optimizer's adapted settings, the #WU total, the sampler's stream position,
//! the history, and the caller's `record` (e.g. the configuration, to refuse another one).

use crate::checkpoint::{self, RunLock};
use crate::error::{Error, Result};
use crate::history::HistoryPoint;
use crate::validation::{non_finite_parameter, validation_loss};
use candle_core::Var;
use candle_nn::VarMap;
use data::Degraded;
use fmg::{Context, HookResult};
use mge::{Accountant, Fraction, LoaderSampler};
use optim::{Adam, AdamOptimizer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The optimizer a [`Trainer`] steps on the MGE gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba 2014, Algorithm 1; `optim::Adam`) at the driver's learning-rate
    /// schedule.
    Adam,
    /// A matrix-free second-order method of `optim` re-evaluating the iteration's MGE loss
    /// (`fmg::SecondOrderUpdate`).
    SecondOrder(optim::OptimizerConfig),
}

/// What [`Trainer::run`] reports after every iteration (to draw progress, log, ...).
pub struct Progress<'r> {
    /// The driver's record of the iteration.
    pub record: &'r fmg::IterRecord,
    /// The history point appended for it.
    pub point: &'r HistoryPoint,
    /// Number of stages of the schedule.
    pub stages: usize,
    /// Iterations of the whole run.
    pub total_iters: u64,
    /// The last per-term variance ratios measured (`V_l / V_fine`, finest first).
    pub variance_ratios: &'r [Option<f64>],
}

/// The progress callback of [`Trainer::on_progress`]; an `Err` (any error type) stops the run
/// with [`Error::Callback`] holding it.
pub type ProgressFn<'a> = dyn FnMut(&Progress) -> HookResult<()> + 'a;

/// Trainer state saved in every checkpoint beside the weights and the optimizer moments.
#[derive(Serialize, Deserialize)]
struct State {
    iterations_done: u64,
    wu_numer: u128,
    wu_denom: u128,
    wall_s: f64,
    loader_position: u64,
    /// The driver's stage and running estimates (adaptive allocation, early stopping);
    /// absent in checkpoints of earlier versions, which resume with fresh estimates.
    #[serde(default)]
    driver: Option<fmg::DriverState>,
    history: Vec<HistoryPoint>,
    /// Second-order runs: the optimizer config continuing from the last step (adapted damping
    /// or trust radius); Adam's moments are in `optim.safetensors` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    optimizer: Option<optim::OptimizerConfig>,
    /// The caller's record (e.g. the configuration run).
    #[serde(default)]
    config: Option<String>,
    /// True in the checkpoint written when training ended.
    #[serde(default)]
    finished: bool,
}

/// What [`Trainer::resume`] restored.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The checkpoint folder.
    pub dir: PathBuf,
    /// Iterations done.
    pub iterations_done: u64,
    /// The record the checkpoint was written with (`None` for checkpoints without one).
    pub record: Option<String>,
    /// Whether the checkpoint is of a finished run (nothing left to train).
    pub finished: bool,
}

/// What a finished [`Trainer::run`] returns.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One point per iteration, over resumes.
    pub history: Vec<HistoryPoint>,
    /// Total #WU (001 eq. 7).
    pub wu: f64,
    /// Wall time over resumes.
    pub wall_s: f64,
    /// Training steps alone (validation and checkpoints excluded).
    pub train_s: f64,
    /// Last per-term variance ratios `V_l / V_fine` (empty for single-scale).
    pub variance_ratios: Vec<Option<f64>>,
}

/// Trains the variables of `varmap` through `model` (see the crate docs for an example).
///
/// Build it with [`Trainer::new`] and the `with_*` setters, optionally [`Trainer::resume`],
/// then [`Trainer::run`]. Without [`Trainer::with_checkpoints`] nothing is written to disk.
pub struct Trainer<'a> {
    model: &'a mge::ModelFn<'a>,
    varmap: &'a VarMap,
    loss: &'a mge::LossFn<'a>,
    sampler: LoaderSampler,
    driver: fmg::Driver,
    optimizer: OptimizerKind,
    adam: Option<Adam>,
    validation: Option<Degraded>,
    out: Option<(PathBuf, u64)>,
    hot_start: grids::Restriction,
    model_config: Option<models::ModelConfig>,
    record: Option<String>,
    progress: Option<Box<ProgressFn<'a>>>,
    acct: Accountant,
    start: u64,
    driver_state: Option<fmg::DriverState>,
    wall_offset: f64,
    history: Vec<HistoryPoint>,
    finished: bool,
    warm_workers: bool,
    _lock: Option<RunLock>,
}

impl<'a> Trainer<'a> {
    /// A trainer of `varmap`'s variables: `model(input, t)` predicts, `loss(pred, target)` is
    /// a per-sample mean, `sampler` draws fresh finest-mesh batches and `driver` holds the
    /// stages (single-scale, multiscale or Full-Multiscale) and the learning-rate schedule.
    /// Adam by default; validation every `driver.validate_every` iterations once
    /// [`Trainer::with_validation`] gives a batch.
    pub fn new(
        model: &'a mge::ModelFn<'a>,
        varmap: &'a VarMap,
        loss: &'a mge::LossFn<'a>,
        sampler: LoaderSampler,
        driver: fmg::Driver,
    ) -> Self {
        Trainer {
            model,
            varmap,
            loss,
            sampler,
            driver,
            optimizer: OptimizerKind::Adam,
            adam: None,
            validation: None,
            out: None,
            hot_start: grids::Restriction::default(),
            model_config: None,
            record: None,
            progress: None,
            acct: Accountant::new(),
            start: 0,
            driver_state: None,
            wall_offset: 0.0,
            history: Vec::new(),
            finished: false,
            warm_workers: true,
            _lock: None,
        }
    }

    /// The optimizer (default [`OptimizerKind::Adam`]).
    pub fn with_optimizer(mut self, optimizer: OptimizerKind) -> Self {
        self.optimizer = optimizer;
        self
    }

    /// A fixed validation batch on the finest mesh: its loss is computed where the driver
    /// validates, and checked finite before every checkpoint.
    pub fn with_validation(mut self, batch: Degraded) -> Self {
        self.validation = Some(batch);
        self
    }

    /// Checkpoints into `out/checkpoints` every `every` iterations and at the end; takes the
    /// folder's lock (another live run in it is an [`Error::InUse`]).
    pub fn with_checkpoints(mut self, out: &Path, every: u64) -> Result<Self> {
        if every == 0 {
            return Err(Error::Invalid(
                "checkpoint interval must be at least 1".into(),
            ));
        }
        self._lock = Some(RunLock::acquire(out)?);
        self.out = Some((out.to_path_buf(), every));
        Ok(self)
    }

    /// The restriction defining the Galerkin hot start's stencil prolongation (used when the
    /// driver's hot start is Galerkin).
    pub fn with_hot_start_restriction(mut self, restriction: grids::Restriction) -> Self {
        self.hot_start = restriction;
        self
    }

    /// Writes the checkpoints' weights as `models::checkpoint` files of `config` (loadable
    /// with `models::checkpoint::load`); without it they are plain safetensors of `varmap`.
    pub fn with_model_config(mut self, config: models::ModelConfig) -> Self {
        self.model_config = Some(config);
        self
    }

    /// A text stored in every checkpoint and returned by [`Trainer::resume`] (e.g. the
    /// configuration, so that a resume with another one can be refused).
    pub fn with_record(mut self, record: String) -> Self {
        self.record = Some(record);
        self
    }

    /// Whether the training loop keeps the rayon pool's other workers awake
    /// ([`crate::threads::warm`]; default on, and off anyway when the driver splits iterations
    /// over several ranks, which share the machine's cores). It matters only on a pool worker
    /// ([`crate::threads::run`]): then the other workers spin while the run lasts, which makes
    /// small steps much faster (a quarter at 8^2) but takes those cores from anything else on the
    /// machine; turn it off when the run shares its cores.
    pub fn with_warm_workers(mut self, on: bool) -> Self {
        self.warm_workers = on;
        self
    }

    /// Called after every iteration; an `Err` stops the run with [`Error::Callback`].
    pub fn on_progress(mut self, f: impl FnMut(&Progress) -> HookResult<()> + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// The driver (stages, total iterations).
    pub fn driver(&self) -> &fmg::Driver {
        &self.driver
    }

    /// Restores the newest checkpoint of the folder given to [`Trainer::with_checkpoints`]:
    /// parameters, optimizer state, #WU, sampler position, the driver's stage and running
    /// estimates ([`fmg::DriverState`]: variances, adaptive allocation, early stopping) and
    /// history. `None` when the folder has no checkpoint (the run starts afresh).
    pub fn resume(&mut self) -> Result<Option<Resumed>> {
        let Some((out, _)) = &self.out else {
            return Err(Error::Invalid(
                "resume needs a checkpoint folder (with_checkpoints)".into(),
            ));
        };
        let Some(ck) = checkpoint::load_latest::<State>(out)? else {
            return Ok(None);
        };
        let weights = ck.dir.join("model.safetensors");
        match &self.model_config {
            Some(c) => models::checkpoint::load_into(&weights, c, self.varmap).map(|_| ()),
            None => models::checkpoint::load_weights(&weights, self.varmap),
        }
        .map_err(|e| {
            Error::Checkpoint(format!(
                "checkpoint {}: model weights: {e}",
                ck.dir.display()
            ))
        })?;
        let s = ck.state;
        match (&mut self.optimizer, s.optimizer) {
            (OptimizerKind::Adam, _) => {
                let mut adam = Adam::from_varmap(self.varmap)?;
                adam.load(&ck.dir.join("optim.safetensors"))?;
                self.adam = Some(adam);
            }
            (OptimizerKind::SecondOrder(c), Some(saved))
                if std::mem::discriminant(c) == std::mem::discriminant(&saved) =>
            {
                *c = saved
            }
            (OptimizerKind::SecondOrder(_), _) => tracing::warn!(
                "checkpoint {} has no state of this optimizer: its damping or trust radius restarts from the given settings",
                ck.dir.display()
            ),
        }
        self.acct = Accountant::with_total(Fraction::new(s.wu_numer, s.wu_denom)?);
        self.sampler.set_position(s.loader_position);
        (self.start, self.wall_offset, self.history) = (s.iterations_done, s.wall_s, s.history);
        let state = match s.driver {
            Some(state) => state,
            None => self.driver.state_at(self.start)?,
        };
        self.finished = s.finished || state.is_done(self.driver.stages().len());
        self.driver_state = Some(state);
        Ok(Some(Resumed {
            dir: ck.dir,
            iterations_done: self.start,
            record: s.config,
            finished: self.finished,
        }))
    }

    /// Trains from the first iteration not done to the end of the schedule (or an early
    /// stop), checkpointing as set; a divergence (non-finite loss, validation loss or
    /// parameter) stops with [`Error::Diverged`] and no checkpoint after it.
    pub fn run(mut self) -> Result<Outcome> {
        let vars = optim::sorted_vars(self.varmap)?;
        let ratios = if self.finished {
            Vec::new()
        } else if self.warm_workers && self.driver.ranks() == 1 {
            crate::threads::warm(|| self.train(&vars))?
        } else {
            self.train(&vars)?
        };
        if let Some(name) = non_finite_parameter(self.varmap)? {
            return Err(Error::Diverged {
                why: format!("parameter {name} is not finite at the end"),
                kept: "the final weights are not usable".into(),
            });
        }
        let last = self.history.last();
        Ok(Outcome {
            wu: last.map_or(0.0, |h| h.wu),
            wall_s: last.map_or(0.0, |h| h.wall_s),
            train_s: last.map_or(0.0, |h| h.train_s),
            history: self.history,
            variance_ratios: ratios,
        })
    }

    /// The driver loop with the hooks; returns the last variance ratios.
    fn train(&mut self, vars: &[Var]) -> Result<Vec<Option<f64>>> {
        let mut update = match self.optimizer {
            OptimizerKind::Adam => {
                let adam = match self.adam.take() {
                    Some(a) => a,
                    None => Adam::from_varmap(self.varmap)?,
                };
                TrainerUpdate::Adam(AdamOptimizer::new(adam, self.driver.config().lr))
            }
            OptimizerKind::SecondOrder(c) => {
                TrainerUpdate::SecondOrder(fmg::SecondOrderUpdate::new(c.build(vars.to_vec())?), c)
            }
        };
        let start = match self.driver_state.take() {
            Some(state) => state,
            None => self.driver.state_at(self.start)?,
        };
        let mut hooks = Hooks {
            model: self.model,
            loss: self.loss,
            validation: self.validation.as_ref(),
            varmap: self.varmap,
            out: self.out.as_ref().map(|(p, e)| (p.as_path(), *e)),
            total_iters: self.driver.total_iters(),
            stages: self.driver.stages().len(),
            wall_offset: self.wall_offset,
            train_offset: self.history.last().map_or(0.0, |h| h.train_s),
            data_s: self.history.last().map_or(0.0, |h| h.data_s),
            overhead_s: 0.0,
            history: std::mem::take(&mut self.history),
            ratios: Vec::new(),
            restriction: self.hot_start,
            model_config: self.model_config.as_ref(),
            record: self.record.clone(),
            progress: self.progress.as_mut(),
            last_saved: None,
            saved_finished: false,
        };
        let result = self.driver.run_with(
            fmg::Problem {
                model: self.model,
                loss: self.loss,
                sampler: &mut self.sampler,
                vars,
            },
            &mut update,
            &mut self.acct,
            start,
            &mut hooks,
        );
        match result {
            Ok(_) => {}
            Err(fmg::Error::Hook(e)) => {
                return Err(match e.downcast::<Error>() {
                    Ok(e) => *e,
                    Err(e) => Error::Callback(e),
                })
            }
            Err(fmg::Error::NonFinite {
                iteration,
                level,
                loss,
            }) => {
                return Err(Error::Diverged {
                    why: format!("loss = {loss} at iteration {iteration} (mesh 2^{level}h)"),
                    kept: hooks.kept(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        // The checkpoint of the finished run (also after early stopping).
        if hooks.out.is_some() && !hooks.saved_finished {
            let (done, wall_s) = hooks
                .history
                .last()
                .map_or((self.start, self.wall_offset), |h| {
                    (h.iteration + 1, h.wall_s)
                });
            let end = Saved {
                iterations_done: done,
                wu: self.acct.total(),
                wall_s,
                val: None,
                driver: self.driver.state_at(self.driver.total_iters())?,
                loader_position: self.sampler.position(),
            };
            hooks.save(&end, &update, true)?;
        }
        self.history = hooks.history;
        if let TrainerUpdate::Adam(a) = update {
            self.adam = Some(a.adam);
        }
        Ok(hooks.ratios)
    }
}

/// The trainer's optimizer as one [`fmg::Update`] type, so that its hooks can checkpoint
/// Adam's moments or the second-order method's adapted settings.
enum TrainerUpdate {
    Adam(AdamOptimizer),
    /// The second-order update and its settings, continued after every step (adapted
    /// damping or trust radius).
    SecondOrder(fmg::SecondOrderUpdate, optim::OptimizerConfig),
}

impl fmg::Update for TrainerUpdate {
    fn set_learning_rate(&mut self, lr: f64) {
        match self {
            TrainerUpdate::Adam(a) => a.lr = lr,
            TrainerUpdate::SecondOrder(s, _) => s.set_learning_rate(lr),
        }
    }

    fn update(
        &mut self,
        step: &mge::Step,
        reevaluate: &mut fmg::Reevaluate,
    ) -> fmg::Result<Option<optim::StepReport>> {
        match self {
            TrainerUpdate::Adam(a) => {
                a.adam.step(&step.grads, a.lr)?;
                Ok(None)
            }
            TrainerUpdate::SecondOrder(s, c) => {
                let report = s.update(step, reevaluate)?;
                if let Some(r) = &report {
                    *c = c.continued(r);
                }
                Ok(report)
            }
        }
    }
}

/// What a checkpoint records besides the weights and the optimizer.
struct Saved {
    iterations_done: u64,
    wu: Fraction,
    wall_s: f64,
    /// The validation loss at this iteration, if validated.
    val: Option<f64>,
    driver: fmg::DriverState,
    loader_position: u64,
}

/// Validation, history, divergence checks, checkpoints and progress, called by the driver.
struct Hooks<'h, 'a> {
    model: &'a mge::ModelFn<'a>,
    loss: &'a mge::LossFn<'a>,
    validation: Option<&'h Degraded>,
    varmap: &'a VarMap,
    out: Option<(&'h Path, u64)>,
    total_iters: u64,
    stages: usize,
    wall_offset: f64,
    /// Training time before this session (resume), and validation + checkpoint time in it.
    train_offset: f64,
    overhead_s: f64,
    /// Seconds spent drawing training batches, over resumes.
    data_s: f64,
    history: Vec<HistoryPoint>,
    ratios: Vec<Option<f64>>,
    restriction: grids::Restriction,
    model_config: Option<&'h models::ModelConfig>,
    record: Option<String>,
    progress: Option<&'h mut Box<ProgressFn<'a>>>,
    last_saved: Option<u64>,
    saved_finished: bool,
}

impl Hooks<'_, '_> {
    /// The run stops as diverged because of `why`.
    fn diverged(&self, why: String) -> Error {
        Error::Diverged {
            why,
            kept: self.kept(),
        }
    }

    /// Which checkpoint a diverged run keeps.
    fn kept(&self) -> String {
        match (self.last_saved, self.out) {
            (Some(step), Some((out, _))) => format!(
                "the last good checkpoint (after iteration {step}) is kept in {}",
                checkpoint::checkpoints_dir(out).display()
            ),
            _ => "no checkpoint of this run was written".into(),
        }
    }

    fn validate_now(&self) -> Result<Option<f64>> {
        self.validation
            .map(|v| validation_loss(self.model, self.loss, v))
            .transpose()
    }

    /// Stop unless the parameters and the validation loss are finite after `done` iterations.
    fn check_finite(&self, done: u64, val: Option<f64>) -> Result<()> {
        if let Some(name) = non_finite_parameter(self.varmap)? {
            return Err(self.diverged(format!(
                "parameter {name} is not finite after iteration {done}"
            )));
        }
        let v = match val {
            Some(v) => Some(v),
            None => self.validate_now()?,
        };
        match v.filter(|v| !v.is_finite()) {
            Some(v) => Err(self.diverged(format!("validation loss = {v} after iteration {done}"))),
            None => Ok(()),
        }
    }

    /// Writes the checkpoint `saved` with `update`'s state, once the parameters and the
    /// validation loss are checked finite (so `LATEST` never names a diverged state).
    fn save(&mut self, saved: &Saved, update: &TrainerUpdate, finished: bool) -> Result<PathBuf> {
        let Some((out, _)) = self.out else {
            return Err(Error::Invalid("no checkpoint folder".into()));
        };
        self.check_finite(saved.iterations_done, saved.val)?;
        let state = State {
            iterations_done: saved.iterations_done,
            wu_numer: saved.wu.numer(),
            wu_denom: saved.wu.denom(),
            wall_s: saved.wall_s,
            loader_position: saved.loader_position,
            driver: Some(saved.driver.clone()),
            history: self.history.clone(),
            optimizer: match update {
                TrainerUpdate::SecondOrder(_, c) => Some(*c),
                TrainerUpdate::Adam(_) => None,
            },
            config: self.record.clone(),
            finished,
        };
        let (varmap, config) = (self.varmap, self.model_config);
        let dir = checkpoint::save(out, saved.iterations_done, &state, |dir| {
            let weights = dir.join("model.safetensors");
            match config {
                Some(c) => models::checkpoint::save(&weights, c, varmap, &Default::default())?,
                None => varmap.save(&weights).map_err(|e| {
                    Error::Checkpoint(format!("cannot write {}: {e}", weights.display()))
                })?,
            }
            if let TrainerUpdate::Adam(a) = update {
                a.adam.save(&dir.join("optim.safetensors"))?;
            }
            Ok(())
        })?;
        (self.last_saved, self.saved_finished) = (Some(saved.iterations_done), finished);
        Ok(dir)
    }
}

impl fmg::Hooks<TrainerUpdate, LoaderSampler> for Hooks<'_, '_> {
    /// Galerkin hot start (SPEC section 4, 002 eq. 4.14): every 3x3 stencil trained on mesh
    /// `2^from h` is replaced in place by its prolongation to mesh `2^to h`.
    fn prolong(&mut self, from: usize, to: usize) -> HookResult<()> {
        models::transfer::prolong_in_place(
            self.varmap,
            self.restriction,
            grids::Prolongation::default(),
        )
        .map_err(|e| format!("Galerkin hot start from mesh 2^{from}h to 2^{to}h: {e}"))?;
        tracing::info!(from, to, "Galerkin hot start: prolonged every 3x3 stencil");
        Ok(())
    }

    fn validate(&mut self, _level: usize) -> HookResult<Option<f64>> {
        let clock = Instant::now();
        let v = self.validate_now()?;
        self.overhead_s += clock.elapsed().as_secs_f64();
        Ok(v)
    }

    fn on_iteration(
        &mut self,
        rec: &fmg::IterRecord,
        ctx: Context<'_, TrainerUpdate, LoaderSampler>,
    ) -> HookResult<fmg::Control> {
        let wall_s = self.wall_offset + rec.wall_s;
        // Diagnostic statistics, like validation and checkpoints, are not training time.
        self.overhead_s += rec.stats_s;
        self.data_s += rec.data_s;
        let measured = rec.measured_ratios();
        self.history.push(HistoryPoint {
            iteration: rec.iteration,
            stage: rec.stage,
            level: rec.level,
            loss: rec.loss,
            wu: rec.wu_total.to_f64(),
            wall_s,
            train_s: self.train_offset + rec.wall_s - self.overhead_s,
            data_s: self.data_s,
            val_loss: rec.val_loss,
            variance: measured.map(<[Option<f64>]>::to_vec),
            stats_step_s: measured.map(|_| rec.stats_s),
            stats_wu: measured.map(|_| rec.stats_wu.to_f64()),
        });
        if !rec.variance_ratios.is_empty() {
            self.ratios = rec.variance_ratios.clone();
        }
        if let Some(f) = self.progress.as_mut() {
            let point = self.history.last().expect("pushed above");
            f(&Progress {
                record: rec,
                point,
                stages: self.stages,
                total_iters: self.total_iters,
                variance_ratios: &self.ratios,
            })
            .map_err(Error::Callback)?;
        }
        let done = rec.iteration + 1;
        if let Some(v) = rec.val_loss.filter(|v| !v.is_finite()) {
            let why = format!(
                "validation loss = {v} after iteration {done} (mesh 2^{}h)",
                rec.level
            );
            return Err(self.diverged(why).into());
        }
        if let Some((_, every)) = self.out {
            let finished = ctx.state.is_done(self.stages);
            if done.is_multiple_of(every) || finished {
                let clock = Instant::now();
                let saved = Saved {
                    iterations_done: done,
                    wu: rec.wu_total,
                    wall_s,
                    val: rec.val_loss,
                    driver: ctx.state.clone(),
                    loader_position: ctx.sampler.position(),
                };
                self.save(&saved, ctx.update, finished)?;
                self.overhead_s += clock.elapsed().as_secs_f64();
            }
        }
        Ok(fmg::Control::Continue)
    }
}
