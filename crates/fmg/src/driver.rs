//! The training driver: stages coarse to fine (001 Algorithm 2), each an MGE (001 Algorithm 1)
//! with an Adam-type or second-order update ([`crate::update`]), cosine learning rate, hot
//! start and early stopping.

use crate::early_stop::EarlyStopping;
use crate::hooks::{Context, Control, Hooks};
use crate::lr::CosineLr;
use crate::schedule::Stage;
use crate::state::DriverState;
use crate::update::{FirstOrder, Recorder, Replay, Update};
use crate::{Error, Result};
use candle_core::Var;
use candle_nn::Optimizer;
use mge::{
    Accountant, Adaptive, Estimator, Fraction, GradientMode, LossFn, ModelFn, Sampler, TermStats,
    VarianceTracker,
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
    /// (0: never; 1: every iteration), measured in a pass of their own on the iteration's draws
    /// at its parameters: the training step itself is the same for every value.
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
    /// Seconds this iteration's training took (estimator + optimizer step), without
    /// [`IterRecord::stats_s`].
    pub step_s: f64,
    /// Seconds of the diagnostic per-term statistics pass (`stats_every`; 0 on the other
    /// iterations and with adaptive allocation, whose statistics are part of its step).
    pub stats_s: f64,
    /// #WU of that pass (its model applications on the replayed draws), outside
    /// [`IterRecord::wu`] and [`IterRecord::wu_total`].
    pub stats_wu: Fraction,
    /// Seconds of [`IterRecord::step_s`] spent in the sampler: drawing and degrading the
    /// iteration's fresh batches (with a loader that renders ahead, what was not ready).
    pub data_s: f64,
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

impl IterRecord {
    /// The per-term variance ratios `V_l / V_fine` (SPEC section 3) when this iteration
    /// measured per-term statistics of two or more terms; `None` on the other iterations and
    /// on single-level stages (whose running ratios are carried in [`IterRecord::variance_ratios`]).
    pub fn measured_ratios(&self) -> Option<&[Option<f64>]> {
        let measured = self.terms.len() > 1 && self.terms.iter().any(|t| t.variance.is_some());
        measured.then_some(self.variance_ratios.as_slice())
    }
}

/// What a [`Driver`] trains: `model(input, t)`, its per-sample mean `loss(pred, target)`, the
/// sampler of fresh finest-mesh batches (001 eq. 6: every term its own batch) and the
/// variables the gradient is taken for.
pub struct Problem<'p, S: ?Sized = dyn Sampler> {
    /// The network (e.g. `&|x, t| net.forward(x, t)`).
    pub model: &'p ModelFn<'p>,
    /// The training loss.
    pub loss: &'p LossFn<'p>,
    /// Fresh degraded batches on the finest mesh (its concrete type reaches the hooks'
    /// [`Context`]).
    pub sampler: &'p mut S,
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

    /// The number of ranks every iteration is split over (1 without [`Driver::with_parallel`]).
    pub fn ranks(&self) -> usize {
        self.parallel.as_ref().map_or(1, |p| p.comm.size())
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

    /// The state of a run about to start global iteration `next_iteration`, with fresh
    /// estimates (a new run: `state_at(0)`); `total_iters()` gives the state of a run that
    /// is over.
    pub fn state_at(&self, next_iteration: u64) -> Result<DriverState> {
        let total = self.total_iters();
        if next_iteration > total {
            return Err(Error::Invalid(format!(
                "iteration {next_iteration} is past the schedule's {total} iterations"
            )));
        }
        let mut first = 0u64;
        for (stage, s) in self.stages.iter().enumerate() {
            if next_iteration < first + s.iters as u64 {
                return Ok(DriverState {
                    next_iteration,
                    ..self.stage_start(stage, first)
                });
            }
            first += s.iters as u64;
        }
        Ok(self.stage_start(self.stages.len(), total))
    }

    /// The state at the first iteration (`first`) of `stage`, with fresh estimates.
    fn stage_start(&self, stage: usize, first: u64) -> DriverState {
        let levels = self.stages.get(stage).map_or(0, |s| s.plan.levels);
        DriverState {
            next_iteration: first,
            stage,
            tracker: VarianceTracker::new(levels, TRACKER_DECAY),
            adaptive: self
                .cfg
                .adaptive
                .map(|_| VarianceTracker::new(levels, TRACKER_DECAY)),
            early_stop: self
                .cfg
                .patience
                .map(|p| EarlyStopping::new(p, self.cfg.min_delta)),
        }
    }

    /// Refuses a `state` that does not belong to this driver's stages and settings.
    fn check_state(&self, state: &DriverState) -> Result<()> {
        let mismatch = |why: String| Err(Error::Invalid(format!("resume state: {why}")));
        let fresh = self.state_at(state.next_iteration)?;
        if state.stage != fresh.stage
            && !(state.stage == fresh.stage + 1 && state.stage <= self.stages.len())
        {
            return mismatch(format!(
                "iteration {} is in stage {}, the state says stage {}",
                state.next_iteration, fresh.stage, state.stage
            ));
        }
        let levels = self.stages.get(state.stage).map_or(0, |s| s.plan.levels);
        if state.tracker.levels() != levels
            || state.adaptive.as_ref().map(|t| t.levels()) != self.cfg.adaptive.map(|_| levels)
        {
            return mismatch(format!(
                "its variance estimates do not match stage {}'s {levels} levels and the \
                 adaptive setting",
                state.stage
            ));
        }
        if state.early_stop.is_some() != self.cfg.patience.is_some() {
            return mismatch("early stopping is set in one of the state and the driver".into());
        }
        Ok(())
    }

    /// Trains `problem` from `start` (`state_at(0)` for a fresh run; a resumed run passes the
    /// [`Context::state`] saved with its checkpoint, with parameters, optimizer, accountant
    /// and sampler restored by the caller) with a candle-nn optimizer stepping on the MGE
    /// gradient. Returns one record per iteration run.
    pub fn run<O: Optimizer, S: Sampler + ?Sized>(
        &self,
        problem: Problem<S>,
        opt: &mut O,
        acct: &mut Accountant,
        start: DriverState,
        hooks: &mut dyn for<'o> Hooks<FirstOrder<'o, O>, S>,
    ) -> Result<Vec<IterRecord>> {
        let mut update = FirstOrder(opt);
        self.run_with(problem, &mut update, acct, start, hooks)
    }

    /// [`Driver::run`] with any [`Update`], e.g. a [`crate::SecondOrderUpdate`]. Each
    /// iteration records the batches the estimator draws and hands the update a closure that
    /// re-evaluates the same MGE loss on them at the current parameters; every model
    /// application of a re-evaluation is recorded in `acct` as a full application (forward
    /// and backward), an upper bound for the forward-only ones.
    ///
    /// A stage that early stopping ends hands the next iteration to the next stage; the
    /// [`Context::state`] after it says so, so a resume does not re-enter the ended stage.
    pub fn run_with<U: Update + ?Sized, S: Sampler + ?Sized>(
        &self,
        problem: Problem<S>,
        update: &mut U,
        acct: &mut Accountant,
        start: DriverState,
        hooks: &mut dyn Hooks<U, S>,
    ) -> Result<Vec<IterRecord>> {
        self.check_state(&start)?;
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
        let firsts: Vec<u64> = self
            .stages
            .iter()
            .scan(0u64, |first, s| {
                let f = *first;
                *first += s.iters as u64;
                Some(f)
            })
            .collect();
        let start_stage = start.stage;
        let mut state = start;
        for (si, stage) in self.stages.iter().enumerate().skip(start_stage) {
            let first_global = firsts[si];
            let end = first_global + stage.iters as u64;
            let level = stage.level();
            if si > start_stage {
                state = self.stage_start(si, first_global);
            }
            let resumed_inside = si == start_stage && state.next_iteration > first_global;
            if si > 0 && !resumed_inside && self.cfg.hot_start == HotStart::Galerkin {
                let from = self.stages[si - 1].level();
                for l in (level..from).rev() {
                    hooks.prolong(l + 1, l).map_err(Error::Hook)?;
                }
            }
            let mut est = Estimator::new(stage.plan.clone(), GradientMode::Total, self.cfg.seed)?;
            est.set_fused_levels(self.cfg.fused_levels);
            est.set_parallel(self.parallel.clone());
            let mut adaptive = match (self.cfg.adaptive, state.adaptive.take()) {
                (Some(probe), Some(saved)) => Some(
                    Adaptive::new(
                        stage.plan.clone(),
                        stage.plan.wu_per_iter()?.to_f64(),
                        probe,
                        TRACKER_DECAY,
                    )?
                    .with_tracker(saved)?,
                ),
                _ => None,
            };
            for k in state.next_iteration..end {
                let t0 = Instant::now();
                // Adaptive allocation needs the per-term statistics to train; otherwise they
                // are a diagnostic measured in a pass of their own (below).
                let diagnostic = adaptive.is_none()
                    && self.cfg.stats_every > 0
                    && (k - first_global).is_multiple_of(self.cfg.stats_every as u64);
                let mode = match &adaptive {
                    Some(a) => {
                        est.set_plan(a.plan(k - first_global)?)?;
                        GradientMode::PerTerm
                    }
                    None => GradientMode::Total,
                };
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
                let mut recorder = Recorder::new(&mut *sampler);
                let mut step = est.step(model, loss, &mut recorder, vars, k, acct)?;
                let data_s = recorder.seconds();
                let draws = recorder.into_draws();
                if !step.loss.is_finite() {
                    return Err(Error::NonFinite {
                        iteration: k,
                        level,
                        loss: step.loss,
                    });
                }
                let (mut stats_s, mut stats_wu) = (0.0, Fraction::ZERO);
                if diagnostic {
                    // The same draws at the same parameters, per term; its gradient and #WU
                    // are discarded, so the training is the same whatever `stats_every` is.
                    let t = Instant::now();
                    est.set_mode(GradientMode::PerTerm);
                    let mut spent = Accountant::new();
                    let per_term =
                        est.step(model, loss, &mut Replay::new(&draws), vars, k, &mut spent);
                    est.set_mode(GradientMode::Total);
                    step.terms = per_term?.terms;
                    stats_s = t.elapsed().as_secs_f64();
                    stats_wu = spent.total();
                }
                let second_order = update.update(&step, &mut || {
                    est.loss(model, loss, &mut Replay::new(&draws), k, acct)
                })?;
                state.tracker.observe(&step.terms);
                if let Some(a) = &mut adaptive {
                    a.observe(&step.terms);
                }
                let val_loss = match self.cfg.validate_every {
                    e if e > 0
                        && ((k - first_global + 1).is_multiple_of(e as u64) || k + 1 == end) =>
                    {
                        hooks.validate(level).map_err(Error::Hook)?
                    }
                    _ => None,
                };
                let stop_stage = match (&mut state.early_stop, val_loss) {
                    (Some(s), Some(v)) => s.update(v),
                    _ => false,
                };
                let rec = IterRecord {
                    iteration: k,
                    stage: si,
                    level,
                    loss: step.loss,
                    lr: rate,
                    wu: acct.total().checked_sub(wu0)?,
                    wu_total: acct.total(),
                    step_s: t0.elapsed().as_secs_f64() - stats_s,
                    stats_s,
                    stats_wu,
                    data_s,
                    wall_s: clock.elapsed().as_secs_f64(),
                    terms: step.terms,
                    variance_ratios: adaptive
                        .as_ref()
                        .map_or(state.tracker.ratios(), |a| a.tracker().ratios()),
                    val_loss,
                    second_order,
                };
                let after = match stop_stage || k + 1 == end {
                    true => self.stage_start(si + 1, end),
                    false => DriverState {
                        next_iteration: k + 1,
                        stage: si,
                        tracker: state.tracker.clone(),
                        adaptive: adaptive.as_ref().map(|a| a.tracker().clone()),
                        early_stop: state.early_stop.clone(),
                    },
                };
                let ctx = Context {
                    update: &*update,
                    sampler: &*sampler,
                    state: &after,
                };
                let control = hooks.on_iteration(&rec, ctx).map_err(Error::Hook)?;
                records.push(rec);
                if control == Control::Stop {
                    return Ok(records);
                }
                if stop_stage {
                    break;
                }
            }
            hooks.on_stage_end(si, level).map_err(Error::Hook)?;
        }
        Ok(records)
    }
}

/// Weight of the old estimate in the running variance averages.
const TRACKER_DECAY: f64 = 0.9;

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
