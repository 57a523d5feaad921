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
use mge::{Accountant, Fraction, LoaderSampler};
use optim::{Adam, SharedAdam};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
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

/// The progress callback of [`Trainer::on_progress`]; an `Err` stops the run.
pub type ProgressFn<'a> = dyn FnMut(&Progress) -> std::result::Result<(), String> + 'a;

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
    adam: Option<Rc<RefCell<Adam>>>,
    validation: Option<Degraded>,
    out: Option<(PathBuf, u64)>,
    hot_start: grids::Restriction,
    model_config: Option<models::ModelConfig>,
    record: Option<String>,
    progress: Option<Box<ProgressFn<'a>>>,
    acct: Accountant,
    start: u64,
    wall_offset: f64,
    history: Vec<HistoryPoint>,
    finished: bool,
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
            wall_offset: 0.0,
            history: Vec::new(),
            finished: false,
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

    /// Called after every iteration; an `Err` stops the run with [`Error::Callback`].
    pub fn on_progress(
        mut self,
        f: impl FnMut(&Progress) -> std::result::Result<(), String> + 'a,
    ) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// The driver (stages, total iterations).
    pub fn driver(&self) -> &fmg::Driver {
        &self.driver
    }

    /// Restores the newest checkpoint of the folder given to [`Trainer::with_checkpoints`]:
    /// parameters, optimizer state, #WU, sampler position and history. `None` when the folder
    /// has no checkpoint (the run starts afresh).
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
        load_weights(self.varmap, &weights).map_err(|e| {
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
                self.adam = Some(Rc::new(RefCell::new(adam)));
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
        self.finished = s.finished || self.start >= self.driver.total_iters();
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
        let adam = match (self.optimizer, self.adam.take()) {
            (OptimizerKind::Adam, Some(a)) => Some(a),
            (OptimizerKind::Adam, None) => {
                Some(Rc::new(RefCell::new(Adam::from_varmap(self.varmap)?)))
            }
            (OptimizerKind::SecondOrder(_), _) => None,
        };
        let ratios = if self.finished {
            Vec::new()
        } else {
            self.train(&vars, adam)?
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
    fn train(&mut self, vars: &[Var], adam: Option<Rc<RefCell<Adam>>>) -> Result<Vec<Option<f64>>> {
        let lr = self.driver.config().lr;
        let position = Rc::new(Cell::new(self.sampler.position()));
        let mut sampler = TrackedSampler {
            inner: &mut self.sampler,
            position: position.clone(),
        };
        let mut hooks = Hooks {
            model: self.model,
            loss: self.loss,
            validation: self.validation.as_ref(),
            varmap: self.varmap,
            adam: adam.clone(),
            second_order: match self.optimizer {
                OptimizerKind::SecondOrder(c) => Some(c),
                OptimizerKind::Adam => None,
            },
            position,
            out: self.out.as_ref().map(|(p, e)| (p.as_path(), *e)),
            total_iters: self.driver.total_iters(),
            stages: self.driver.stages().len(),
            wall_offset: self.wall_offset,
            train_offset: self.history.last().map_or(0.0, |h| h.train_s),
            overhead_s: 0.0,
            history: std::mem::take(&mut self.history),
            ratios: Vec::new(),
            restriction: self.hot_start,
            model_config: self.model_config.as_ref(),
            record: self.record.clone(),
            progress: self.progress.as_mut(),
            diverged: None,
            last_saved: None,
            saved_finished: false,
        };
        let (mut shared, mut first, mut second);
        let update: &mut dyn fmg::Update = match (&adam, hooks.second_order) {
            (Some(a), _) => {
                shared = SharedAdam {
                    adam: a.clone(),
                    lr,
                };
                first = fmg::FirstOrder(&mut shared);
                &mut first
            }
            (None, Some(c)) => {
                second = fmg::SecondOrderUpdate::new(c.build(vars.to_vec())?);
                &mut second
            }
            (None, None) => return Err(Error::Invalid("no optimizer".into())),
        };
        let result = self.driver.run_with(
            fmg::Problem {
                model: self.model,
                loss: self.loss,
                sampler: &mut sampler,
                vars,
            },
            update,
            &mut self.acct,
            self.start,
            &mut hooks,
        );
        let kept = hooks.kept();
        if let Err(e) = result {
            if let Some(why) = hooks.diverged.take() {
                return Err(Error::Diverged { why, kept });
            }
            if let fmg::Error::NonFinite {
                iteration,
                level,
                loss,
            } = &e
            {
                return Err(Error::Diverged {
                    why: format!("loss = {loss} at iteration {iteration} (mesh 2^{level}h)"),
                    kept,
                });
            }
            return Err(e.into());
        }
        // The checkpoint of the finished run (also after early stopping).
        if hooks.out.is_some() && !hooks.saved_finished {
            let (done, wall_s) = hooks
                .history
                .last()
                .map_or((self.start, self.wall_offset), |h| {
                    (h.iteration + 1, h.wall_s)
                });
            if let Err(e) = hooks.save(done, self.acct.total(), wall_s, None, true) {
                return Err(match hooks.diverged.take() {
                    Some(why) => Error::Diverged {
                        why,
                        kept: hooks.kept(),
                    },
                    None => e,
                });
            }
        }
        self.history = hooks.history;
        Ok(hooks.ratios)
    }
}

/// Sets every variable of `varmap` from the safetensors file `path` (same names and shapes).
fn load_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    let mut saved = candle_core::safetensors::load(path, &candle_core::Device::Cpu)?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| Error::Invalid("poisoned VarMap".into()))?;
    for (name, var) in vars.iter() {
        let t = saved
            .remove(name)
            .ok_or_else(|| Error::Checkpoint(format!("no tensor {name}")))?;
        if t.dims() != var.dims() {
            return Err(Error::Checkpoint(format!(
                "{name} has shape {:?}, the model {:?}",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// The trainer's sampler, publishing its stream position to the checkpointing hooks.
struct TrackedSampler<'s> {
    inner: &'s mut LoaderSampler,
    position: Rc<Cell<u64>>,
}

impl mge::Sampler for TrackedSampler<'_> {
    fn draw(&mut self, count: usize) -> mge::Result<Degraded> {
        let d = self.inner.draw(count)?;
        self.position.set(self.inner.position());
        Ok(d)
    }
}

/// Validation, history, divergence checks, checkpoints and progress, called by the driver.
struct Hooks<'h, 'a> {
    model: &'a mge::ModelFn<'a>,
    loss: &'a mge::LossFn<'a>,
    validation: Option<&'h Degraded>,
    varmap: &'a VarMap,
    adam: Option<Rc<RefCell<Adam>>>,
    second_order: Option<optim::OptimizerConfig>,
    position: Rc<Cell<u64>>,
    out: Option<(&'h Path, u64)>,
    total_iters: u64,
    stages: usize,
    wall_offset: f64,
    /// Training time before this session (resume), and validation + checkpoint time in it.
    train_offset: f64,
    overhead_s: f64,
    history: Vec<HistoryPoint>,
    ratios: Vec<Option<f64>>,
    restriction: grids::Restriction,
    model_config: Option<&'h models::ModelConfig>,
    record: Option<String>,
    progress: Option<&'h mut Box<ProgressFn<'a>>>,
    /// Why the run stopped as diverged.
    diverged: Option<String>,
    last_saved: Option<u64>,
    saved_finished: bool,
}

impl Hooks<'_, '_> {
    fn diverge(&mut self, why: String) -> std::result::Result<(), String> {
        self.diverged = Some(why.clone());
        Err(why)
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

    fn validate_now(&self) -> std::result::Result<Option<f64>, String> {
        self.validation
            .map(|v| validation_loss(self.model, self.loss, v))
            .transpose()
            .map_err(|e| e.to_string())
    }

    /// Stop unless the parameters and the validation loss are finite after `done` iterations.
    fn check_finite(&mut self, done: u64, val: Option<f64>) -> std::result::Result<(), String> {
        if let Some(name) = non_finite_parameter(self.varmap).map_err(|e| e.to_string())? {
            return self.diverge(format!(
                "parameter {name} is not finite after iteration {done}"
            ));
        }
        let v = match val {
            Some(v) => Some(v),
            None => self.validate_now()?,
        };
        if let Some(v) = v.filter(|v| !v.is_finite()) {
            return self.diverge(format!("validation loss = {v} after iteration {done}"));
        }
        Ok(())
    }

    /// Writes the checkpoint after `iterations_done` iterations, once the parameters and the
    /// validation loss are checked finite (so `LATEST` never names a diverged state).
    fn save(
        &mut self,
        iterations_done: u64,
        wu: Fraction,
        wall_s: f64,
        val: Option<f64>,
        finished: bool,
    ) -> Result<PathBuf> {
        let Some((out, _)) = self.out else {
            return Err(Error::Invalid("no checkpoint folder".into()));
        };
        self.check_finite(iterations_done, val)
            .map_err(Error::Callback)?;
        let state = State {
            iterations_done,
            wu_numer: wu.numer(),
            wu_denom: wu.denom(),
            wall_s,
            loader_position: self.position.get(),
            history: self.history.clone(),
            optimizer: self.second_order,
            config: self.record.clone(),
            finished,
        };
        let (varmap, adam, config) = (self.varmap, self.adam.clone(), self.model_config);
        let dir = checkpoint::save(out, iterations_done, &state, |dir| {
            let weights = dir.join("model.safetensors");
            match config {
                Some(c) => models::checkpoint::save(&weights, c, varmap, &Default::default())?,
                None => varmap.save(&weights).map_err(|e| {
                    Error::Checkpoint(format!("cannot write {}: {e}", weights.display()))
                })?,
            }
            if let Some(adam) = adam {
                adam.borrow().save(&dir.join("optim.safetensors"))?;
            }
            Ok(())
        })?;
        (self.last_saved, self.saved_finished) = (Some(iterations_done), finished);
        Ok(dir)
    }
}

impl fmg::Hooks for Hooks<'_, '_> {
    /// Galerkin hot start (SPEC section 4, 002 eq. 4.14): every 3x3 stencil trained on mesh
    /// `2^from h` is replaced in place by its prolongation to mesh `2^to h`.
    fn prolong(&mut self, from: usize, to: usize) -> std::result::Result<(), String> {
        models::transfer::prolong_in_place(
            self.varmap,
            self.restriction,
            grids::Prolongation::default(),
        )
        .map_err(|e| format!("Galerkin hot start from mesh 2^{from}h to 2^{to}h: {e}"))?;
        tracing::info!(from, to, "Galerkin hot start: prolonged every 3x3 stencil");
        Ok(())
    }

    fn validate(&mut self, _level: usize) -> std::result::Result<Option<f64>, String> {
        let clock = Instant::now();
        let v = self.validate_now();
        self.overhead_s += clock.elapsed().as_secs_f64();
        v
    }

    fn on_iteration(&mut self, rec: &fmg::IterRecord) -> std::result::Result<fmg::Control, String> {
        let wall_s = self.wall_offset + rec.wall_s;
        let measured = rec.terms.len() > 1 && rec.terms.iter().any(|t| t.variance.is_some());
        self.history.push(HistoryPoint {
            iteration: rec.iteration,
            stage: rec.stage,
            level: rec.level,
            loss: rec.loss,
            wu: rec.wu_total.to_f64(),
            wall_s,
            train_s: self.train_offset + rec.wall_s - self.overhead_s,
            val_loss: rec.val_loss,
            variance: measured.then(|| rec.variance_ratios.clone()),
            stats_step_s: measured.then_some(rec.step_s),
        });
        if !rec.variance_ratios.is_empty() {
            self.ratios = rec.variance_ratios.clone();
        }
        if let (Some(c), Some(r)) = (&mut self.second_order, &rec.second_order) {
            *c = c.continued(r);
        }
        if let Some(f) = self.progress.as_mut() {
            let point = self.history.last().expect("pushed above");
            f(&Progress {
                record: rec,
                point,
                stages: self.stages,
                total_iters: self.total_iters,
                variance_ratios: &self.ratios,
            })?;
        }
        let done = rec.iteration + 1;
        if let Some(v) = rec.val_loss.filter(|v| !v.is_finite()) {
            self.diverge(format!(
                "validation loss = {v} after iteration {done} (mesh 2^{}h)",
                rec.level
            ))?;
        }
        if let Some((_, every)) = self.out {
            if done.is_multiple_of(every) || done == self.total_iters {
                let clock = Instant::now();
                if let Err(e) = self.save(
                    done,
                    rec.wu_total,
                    wall_s,
                    rec.val_loss,
                    done == self.total_iters,
                ) {
                    return Err(match &self.diverged {
                        Some(why) => why.clone(),
                        None => format!("checkpoint at iteration {done}: {e}"),
                    });
                }
                self.overhead_s += clock.elapsed().as_secs_f64();
            }
        }
        Ok(fmg::Control::Continue)
    }
}
