//! The training driver: stages coarse to fine (001 Algorithm 2), each an MGE (001 Algorithm 1)
//! with an Adam-type or second-order update ([`crate::update`]), cosine learning rate, hot
//! start and early stopping.

use crate::early_stop::EarlyStopping;
use crate::lr::CosineLr;
use crate::schedule::Stage;
use crate::update::{FirstOrder, Recorder, Replay, Update};
use crate::{Error, Result};
use candle_core::Var;
use candle_nn::Optimizer;
use mge::{
    Accountant, Adaptive, Estimator, Fraction, GradientMode, LossFn, ModelFn, Sampler, TermStats,
};
use std::time::Instant;

/// How a stage starts from the previous (coarser) stage's parameters (SPEC section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HotStart {
    /// Reuse the weights as they are (003 found this generalises best).
    #[default]
    Identity,
    /// Galerkin prolongation of every 3x3 stencil (002 section 4), done by [`Hooks::prolong`].
    Galerkin,
}

impl std::str::FromStr for HotStart {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "identity" => Ok(HotStart::Identity),
            "galerkin" => Ok(HotStart::Galerkin),
            _ => Err(Error::Invalid(format!(
                "hot_start {s:?}: expected \"identity\" or \"galerkin\""
            ))),
        }
    }
}

/// Settings of a [`Driver`].
#[derive(Debug, Clone, PartialEq)]
pub struct DriverConfig {
    /// Initial learning rate of the cosine schedule.
    pub lr: f64,
    /// Final learning rate.
    pub lr_min: f64,
    /// Restart the cosine at every stage (`T = I_s`, from `lr` down to `lr_min` within each
    /// stage) instead of one cosine over all stages (`T = sum_s I_s`, the authors' code). With
    /// one cosine under the halving schedule the finest stage is the last `1 / (2^L - 1)` of
    /// the run, at rates below `(1 + cos(pi (1 - 1 / (2^L - 1)))) / 2` of `lr` (L = 3: 4.9%).
    pub lr_restart_per_stage: bool,
    /// Hot start between stages.
    pub hot_start: HotStart,
    /// Call [`Hooks::validate`] every this many iterations (0: never).
    pub validate_every: usize,
    /// End a stage after this many validations without improvement (`None`: never).
    pub patience: Option<usize>,
    /// Minimum improvement of the validation loss that resets the patience.
    pub min_delta: f64,
    /// Per-term gradient statistics ([`GradientMode::PerTerm`]) every this many iterations
    /// (0: never; 1: every iteration).
    pub stats_every: usize,
    /// MLMC-optimal allocation per stage (`Some(probe_every)`), budget = the stage plan's
    /// closed-form #WU per iteration; implies per-term statistics every iteration.
    pub adaptive: Option<usize>,
    /// Seed of the estimator's subsampling choices.
    pub seed: u64,
    /// Run the model applications that share a mesh as one call
    /// ([`mge::Estimator::set_fused_levels`]); only for models without batch statistics.
    pub fused_levels: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            lr: 5e-4,
            lr_min: 1e-6,
            lr_restart_per_stage: false,
            hot_start: HotStart::Identity,
            validate_every: 0,
            patience: None,
            min_delta: 0.0,
            stats_every: 0,
            adaptive: None,
            seed: 0,
            fused_levels: false,
        }
    }
}

/// One training iteration as the runner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct IterRecord {
    /// Global iteration (0-based, over all stages).
    pub iteration: u64,
    /// Index of the stage (0 = first run, the coarsest for Full-Multiscale).
    pub stage: usize,
    /// Finest level of the stage.
    pub level: usize,
    /// MGE loss of the iteration (sum of its terms).
    pub loss: f64,
    /// Learning rate of the schedule (not used by second-order updates).
    pub lr: f64,
    /// #WU of this iteration, re-evaluations of a second-order update included.
    pub wu: Fraction,
    /// Cumulative #WU (the accountant's total after this iteration).
    pub wu_total: Fraction,
    /// Seconds this iteration took (estimator + optimizer step).
    pub step_s: f64,
    /// Seconds since [`Driver::run`] started.
    pub wall_s: f64,
    /// Per-term statistics.
    pub terms: Vec<TermStats>,
    /// `V_l / V_fine` per level from running estimates (empty without statistics).
    pub variance_ratios: Vec<Option<f64>>,
    /// Validation loss when validated at this iteration.
    pub val_loss: Option<f64>,
    /// What a second-order update did (ratio, acceptance, radius or damping); `None` for
    /// first-order optimizers.
    pub second_order: Option<optim::StepReport>,
}

/// What the driver should do after a progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// Stop the whole run now (records so far are returned).
    Stop,
}

/// Caller-supplied hooks, so `fmg` needs no model internals. All have no-op defaults.
pub trait Hooks {
    /// Galerkin hot start: prolong every weight from the mesh of level `from` to `to = from-1`.
    fn prolong(&mut self, from: usize, to: usize) -> std::result::Result<(), String> {
        Err(format!(
            "Galerkin hot start from level {from} to {to} needs a prolong hook"
        ))
    }
    /// Validation loss of the current parameters (the stage's finest level is given).
    fn validate(&mut self, _level: usize) -> std::result::Result<Option<f64>, String> {
        Ok(None)
    }
    /// Progress and checkpoints: called after every optimizer step.
    fn on_iteration(&mut self, _rec: &IterRecord) -> std::result::Result<Control, String> {
        Ok(Control::Continue)
    }
    /// Called when a stage ends (after its last iteration or early stop).
    fn on_stage_end(&mut self, _stage: usize, _level: usize) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Hooks that do nothing (identity hot start, no validation).
pub struct NoHooks;
impl Hooks for NoHooks {}

/// What a [`Driver`] trains: `model(input, t)`, its per-sample mean `loss(pred, target)`, the
/// sampler of fresh finest-mesh batches (001 eq. 6: every term its own batch) and the
/// variables the gradient is taken for.
pub struct Problem<'p> {
    /// The network (e.g. `&|x, t| net.forward(x, t)`).
    pub model: &'p ModelFn<'p>,
    /// The training loss.
    pub loss: &'p LossFn<'p>,
    /// Fresh degraded batches on the finest mesh.
    pub sampler: &'p mut dyn Sampler,
    /// The trained variables.
    pub vars: &'p [Var],
}

/// Runs a list of stages (single-scale, MGE or Full-Multiscale; see [`crate::schedule`]).
#[derive(Debug, Clone)]
pub struct Driver {
    stages: Vec<Stage>,
    cfg: DriverConfig,
    parallel: Option<mge::Parallel>,
}

impl Driver {
    /// A driver over `stages` (coarsest first).
    pub fn new(stages: Vec<Stage>, cfg: DriverConfig) -> Result<Self> {
        if stages.is_empty() {
            return Err(Error::Invalid("no stages".into()));
        }
        if !(cfg.lr > 0.0 && cfg.lr_min >= 0.0 && cfg.lr_min <= cfg.lr) {
            return Err(Error::Invalid(format!(
                "lr = {} and lr_min = {} must satisfy 0 <= lr_min <= lr, lr > 0",
                cfg.lr, cfg.lr_min
            )));
        }
        if cfg.adaptive == Some(0) {
            return Err(Error::Invalid(
                "adaptive probe_every must be at least 1".into(),
            ));
        }
        for s in &stages {
            s.plan.validate()?;
        }
        Ok(Driver {
            stages,
            cfg,
            parallel: None,
        })
    }

    /// Splits every iteration of every stage over the ranks of `parallel`
    /// ([`mge::Estimator::set_parallel`]): each rank computes its share and all ranks step
    /// on the same all-reduced gradient, loss and #WU. Every rank must run the same driver
    /// from the same parameters; per-term statistics (`stats_every`, `adaptive`) are refused.
    pub fn with_parallel(mut self, parallel: Option<mge::Parallel>) -> Self {
        self.parallel = parallel;
        self
    }

    /// The settings (learning rate, validation, statistics, hot start).
    pub fn config(&self) -> &DriverConfig {
        &self.cfg
    }

    /// The stages.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Total iterations over all stages (`T` of the cosine schedule).
    pub fn total_iters(&self) -> u64 {
        self.stages.iter().map(|s| s.iters as u64).sum()
    }

    /// Trains `problem` from global iteration `start` (0 for a fresh run; a resumed run
    /// passes the number of iterations already done, with parameters, optimizer, accountant
    /// and sampler restored by the caller) with a candle-nn optimizer stepping on the MGE
    /// gradient. Returns one record per iteration run.
    pub fn run<O: Optimizer>(
        &self,
        problem: Problem,
        opt: &mut O,
        acct: &mut Accountant,
        start: u64,
        hooks: &mut dyn Hooks,
    ) -> Result<Vec<IterRecord>> {
        let mut update = FirstOrder(opt);
        self.run_with(problem, &mut update, acct, start, hooks)
    }

    /// [`Driver::run`] with any [`Update`], e.g. a [`crate::SecondOrderUpdate`]. Each
    /// iteration records the batches the estimator draws and hands the update a closure that
    /// re-evaluates the same MGE loss on them at the current parameters; every model
    /// application of a re-evaluation is recorded in `acct` as a full application (forward
    /// and backward), an upper bound for the forward-only ones.
    pub fn run_with(
        &self,
        problem: Problem,
        update: &mut dyn Update,
        acct: &mut Accountant,
        start: u64,
        hooks: &mut dyn Hooks,
    ) -> Result<Vec<IterRecord>> {
        let Problem {
            model,
            loss,
            sampler,
            vars,
        } = problem;
        let lr = CosineLr {
            lr0: self.cfg.lr,
            lr_min: self.cfg.lr_min,
            total: self.total_iters(),
        };
        let clock = Instant::now();
        let mut records = Vec::new();
        let mut first_global = 0u64;
        for (si, stage) in self.stages.iter().enumerate() {
            let end = first_global + stage.iters as u64;
            if end <= start {
                first_global = end;
                continue;
            }
            let level = stage.level();
            if si > 0 && start <= first_global && self.cfg.hot_start == HotStart::Galerkin {
                let from = self.stages[si - 1].level();
                for l in (level..from).rev() {
                    hook(hooks.prolong(l + 1, l))?;
                }
            }
            let mut est = Estimator::new(stage.plan.clone(), GradientMode::Total, self.cfg.seed)?;
            est.set_fused_levels(self.cfg.fused_levels);
            est.set_parallel(self.parallel.clone());
            let mut adaptive = match self.cfg.adaptive {
                Some(probe) => Some(Adaptive::new(
                    stage.plan.clone(),
                    stage.plan.wu_per_iter()?.to_f64(),
                    probe,
                    0.9,
                )?),
                None => None,
            };
            let mut tracker = mge::VarianceTracker::new(stage.plan.levels, 0.9);
            let mut stopper = self
                .cfg
                .patience
                .map(|p| EarlyStopping::new(p, self.cfg.min_delta));
            for k in start.max(first_global)..end {
                let t0 = Instant::now();
                let mut mode = match self.cfg.stats_every {
                    0 => GradientMode::Total,
                    e if (k - first_global).is_multiple_of(e as u64) => GradientMode::PerTerm,
                    _ => GradientMode::Total,
                };
                if let Some(a) = &adaptive {
                    est.set_plan(a.plan(k - first_global)?)?;
                    mode = GradientMode::PerTerm;
                }
                est.set_mode(mode);
                let rate = match self.cfg.lr_restart_per_stage {
                    true => CosineLr {
                        total: stage.iters as u64,
                        ..lr
                    }
                    .at(k - first_global),
                    false => lr.at(k),
                };
                update.set_learning_rate(rate);
                let wu0 = acct.total();
                let mut recorder = Recorder::new(sampler);
                let step = est.step(model, loss, &mut recorder, vars, k, acct)?;
                let draws = recorder.into_draws();
                if !step.loss.is_finite() {
                    return Err(Error::NonFinite {
                        iteration: k,
                        level,
                        loss: step.loss,
                    });
                }
                let second_order = update.update(&step, &mut || {
                    est.loss(model, loss, &mut Replay::new(&draws), k, acct)
                })?;
                tracker.observe(&step.terms);
                if let Some(a) = &mut adaptive {
                    a.observe(&step.terms);
                }
                let val_loss = match self.cfg.validate_every {
                    e if e > 0
                        && ((k - first_global + 1).is_multiple_of(e as u64) || k + 1 == end) =>
                    {
                        hook(hooks.validate(level))?
                    }
                    _ => None,
                };
                let rec = IterRecord {
                    iteration: k,
                    stage: si,
                    level,
                    loss: step.loss,
                    lr: rate,
                    wu: acct.total().checked_sub(wu0)?,
                    wu_total: acct.total(),
                    step_s: t0.elapsed().as_secs_f64(),
                    wall_s: clock.elapsed().as_secs_f64(),
                    terms: step.terms,
                    variance_ratios: adaptive
                        .as_ref()
                        .map_or(tracker.ratios(), |a| a.tracker().ratios()),
                    val_loss,
                    second_order,
                };
                let control = hook(hooks.on_iteration(&rec))?;
                records.push(rec);
                if control == Control::Stop {
                    return Ok(records);
                }
                if let (Some(s), Some(v)) = (&mut stopper, val_loss) {
                    if s.update(v) {
                        break;
                    }
                }
            }
            hook(hooks.on_stage_end(si, level))?;
            first_global = end;
        }
        Ok(records)
    }
}

/// A hook's error as a typed [`Error::Hook`].
fn hook<T>(r: std::result::Result<T, String>) -> Result<T> {
    r.map_err(Error::Hook)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Configuration files and `FromStr` spell the hot starts the same way.
    #[test]
    fn hot_start_serde_and_from_str_agree() {
        for (v, name) in [
            (HotStart::Identity, "identity"),
            (HotStart::Galerkin, "galerkin"),
        ] {
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{name}\""));
            assert_eq!(name.parse::<HotStart>().unwrap(), v);
        }
        assert!("warm".parse::<HotStart>().is_err());
    }
}
