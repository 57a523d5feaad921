//! End-to-end training with the driver: each strategy lowers the loss; #WU of real runs equal
//! the closed forms of 001 eqs. 47-48; hooks (Galerkin, validation, early stop, stop).

#[path = "../../mge/tests/common/mod.rs"]
mod common;

use candle_core::Tensor;
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use common::*;
use fmg::{
    stages, Context, Control, Driver, DriverConfig, Hooks, HotStart, IterRecord, NoHooks,
    StageSchedule, Strategy,
};
use mge::workunits::fmg_wu;
use mge::{Accountant, LevelPlan, Sampler};

fn val_loss(net: &Tiny, val: &data::Degraded) -> f64 {
    let p = net.forward(&val.input, None).unwrap();
    mse(&p, &val.target).unwrap().to_scalar::<f32>().unwrap() as f64
}

fn train(strategy: Strategy, iters: usize, cfg: DriverConfig) -> (f64, f64, Vec<IterRecord>) {
    let mut s = SmoothSampler::new(1, 32, 1);
    s.noise_scale = 0.5;
    train_from(strategy, iters, cfg, &mut s)
}

/// [`train`] on the draws of `sampler`.
fn train_from(
    strategy: Strategy,
    iters: usize,
    cfg: DriverConfig,
    sampler: &mut dyn Sampler,
) -> (f64, f64, Vec<IterRecord>) {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 8);
    let val = SmoothSampler::new(1, 32, 99).draw(16).unwrap();
    let before = val_loss(&net, &val);
    let base = LevelPlan::multiscale(3, 4).unwrap();
    let driver = Driver::new(stages(strategy, &base, iters).unwrap(), cfg).unwrap();
    let mut opt = AdamW::new(
        vm.all_vars(),
        ParamsAdamW {
            lr: 3e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let recs = driver
        .run(
            fmg::Problem {
                model: &model,
                loss: &mse,
                sampler,
                vars: &vm.all_vars(),
            },
            &mut opt,
            &mut Accountant::new(),
            driver.state_at(0).unwrap(),
            &mut NoHooks,
        )
        .unwrap();
    (before, val_loss(&net, &val), recs)
}

#[test]
fn every_strategy_lowers_the_loss() {
    let cfg = DriverConfig {
        lr: 3e-3,
        lr_min: 3e-4,
        stats_every: 10,
        ..Default::default()
    };
    for (strategy, iters) in [
        (Strategy::Single { batch: 4 }, 60),
        (Strategy::Multiscale, 60),
        (
            Strategy::FullMultiscale {
                schedule: StageSchedule::Halving,
            },
            60,
        ),
    ] {
        let (before, after, recs) = train(strategy, iters, cfg.clone());
        println!(
            "{strategy:?}: validation loss {before:.4} -> {after:.4}, #WU {}",
            recs.last().unwrap().wu_total
        );
        assert!(
            after < 0.5 * before,
            "{strategy:?}: validation loss {before:.4} -> {after:.4}"
        );
        assert!(recs.iter().all(|r| r.loss.is_finite() && r.wall_s >= 0.0));
        assert!(recs
            .windows(2)
            .all(|w| w[1].wu_total.to_f64() > w[0].wu_total.to_f64()));
    }
}

/// The per-term statistics are a pass of their own: a run that measures them every 3
/// iterations trains exactly as one that never does (same losses, #WU and final weights, bit
/// for bit), and only the measuring iterations carry ratios and a statistics time.
#[test]
fn statistics_do_not_change_the_training() {
    let base = DriverConfig {
        lr: 3e-3,
        lr_min: 3e-4,
        ..Default::default()
    };
    let with_stats = DriverConfig {
        stats_every: 3,
        ..base.clone()
    };
    for strategy in [
        Strategy::Multiscale,
        Strategy::FullMultiscale {
            schedule: StageSchedule::Halving,
        },
    ] {
        let (_, plain_val, plain) = train(strategy, 12, base.clone());
        let (_, stats_val, stats) = train(strategy, 12, with_stats.clone());
        assert_eq!(plain_val.to_bits(), stats_val.to_bits(), "{strategy:?}");
        assert_eq!(plain.len(), stats.len());
        for (a, b) in plain.iter().zip(&stats) {
            assert_eq!(
                a.loss.to_bits(),
                b.loss.to_bits(),
                "{strategy:?}, iteration {}",
                a.iteration
            );
            assert_eq!(a.wu_total, b.wu_total);
            assert!(a.measured_ratios().is_none() && a.stats_s == 0.0);
            assert_eq!(a.stats_wu.to_f64(), 0.0);
        }
        let first = |it: u64| {
            stats
                .iter()
                .filter(|r| r.stage == stats[it as usize].stage)
                .map(|r| r.iteration)
                .min()
                .unwrap()
        };
        for r in &stats {
            let measuring = (r.iteration - first(r.iteration)) % 3 == 0;
            assert_eq!(
                r.stats_s > 0.0,
                measuring,
                "{strategy:?}, iteration {}",
                r.iteration
            );
            assert_eq!(
                r.terms.iter().any(|t| t.variance.is_some()),
                measuring,
                "{strategy:?}, iteration {}",
                r.iteration
            );
            // The pass applies the model to the iteration's draws once more: its #WU.
            let pass_wu = if measuring { r.wu.to_f64() } else { 0.0 };
            assert_eq!(r.stats_wu.to_f64(), pass_wu, "iteration {}", r.iteration);
        }
    }
}

#[test]
fn adaptive_allocation_trains_and_reports_ratios() {
    let cfg = DriverConfig {
        lr: 3e-3,
        lr_min: 3e-4,
        adaptive: Some(5),
        ..Default::default()
    };
    let (before, after, recs) = train(Strategy::Multiscale, 30, cfg);
    println!(
        "adaptive: {before:.4} -> {after:.4}, ratios {:?}",
        recs.last().unwrap().variance_ratios
    );
    assert!(after < 0.7 * before, "adaptive: {before:.4} -> {after:.4}");
    assert!(recs
        .last()
        .unwrap()
        .variance_ratios
        .iter()
        .any(Option::is_some));
}

#[test]
fn fmg_work_units_of_real_runs_equal_eqs_47_48() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 2);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    for (schedule, iters) in [(StageSchedule::Halving, 8), (StageSchedule::Equal, 2)] {
        let base = LevelPlan::multiscale(4, 1).unwrap();
        let st = stages(Strategy::FullMultiscale { schedule }, &base, iters).unwrap();
        let driver = Driver::new(st, DriverConfig::default()).unwrap();
        let mut opt = AdamW::new_lr(vm.all_vars(), 1e-3).unwrap();
        let mut acct = Accountant::new();
        let mut s = SmoothSampler::new(1, 16, 2);
        driver
            .run(
                fmg::Problem {
                    model: &model,
                    loss: &mse,
                    sampler: &mut s,
                    vars: &vm.all_vars(),
                },
                &mut opt,
                &mut acct,
                driver.state_at(0).unwrap(),
                &mut NoHooks,
            )
            .unwrap();
        let want = fmg_wu(4, 1, iters, schedule).unwrap();
        assert_eq!(acct.total(), want);
        let n0_i = mge::Fraction::from_int(iters as u128);
        let closed = match schedule {
            StageSchedule::Halving => mge::Fraction::new(115, 128).unwrap(),
            StageSchedule::Equal => mge::Fraction::new(63, 16).unwrap(),
        };
        assert_eq!(
            acct.total(),
            closed.checked_mul(n0_i).unwrap(),
            "{schedule:?}"
        );
    }
}

#[derive(Default)]
struct Recorder {
    prolongs: Vec<(usize, usize)>,
    stage_ends: Vec<usize>,
    iters: usize,
    stop_at: Option<usize>,
}

impl<U: ?Sized, S: ?Sized> Hooks<U, S> for Recorder {
    fn prolong(&mut self, from: usize, to: usize) -> fmg::HookResult<()> {
        self.prolongs.push((from, to));
        Ok(())
    }
    fn validate(&mut self, _level: usize) -> fmg::HookResult<Option<f64>> {
        Ok(Some(1.0)) // never improves: early stopping ends each stage after `patience`
    }
    fn on_iteration(
        &mut self,
        _rec: &IterRecord,
        _ctx: Context<'_, U, S>,
    ) -> fmg::HookResult<Control> {
        self.iters += 1;
        Ok(if Some(self.iters) == self.stop_at {
            Control::Stop
        } else {
            Control::Continue
        })
    }
    fn on_stage_end(&mut self, _stage: usize, level: usize) -> fmg::HookResult<()> {
        self.stage_ends.push(level);
        Ok(())
    }
}

#[test]
fn hooks_galerkin_early_stopping_resume_and_stop() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 2);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let base = LevelPlan::multiscale(3, 1).unwrap();
    let st = stages(
        Strategy::FullMultiscale {
            schedule: StageSchedule::Equal,
        },
        &base,
        10,
    )
    .unwrap();
    let cfg = DriverConfig {
        hot_start: HotStart::Galerkin,
        validate_every: 1,
        patience: Some(2),
        ..Default::default()
    };
    let driver = Driver::new(st, cfg).unwrap();
    let mut opt = AdamW::new_lr(vm.all_vars(), 1e-3).unwrap();
    let mut h = Recorder::default();
    let mut s = SmoothSampler::new(1, 8, 3);
    let recs = driver
        .run(
            fmg::Problem {
                model: &model,
                loss: &mse,
                sampler: &mut s,
                vars: &vm.all_vars(),
            },
            &mut opt,
            &mut Accountant::new(),
            driver.state_at(0).unwrap(),
            &mut h,
        )
        .unwrap();
    assert_eq!(h.prolongs, vec![(2, 1), (1, 0)]);
    assert_eq!(h.stage_ends, vec![2, 1, 0]);
    assert_eq!(
        recs.len(),
        9,
        "patience 2: a best, then 2 validations without improvement, per stage"
    );
    // Resume at global iteration 15 (stage 1, iteration 5): no prolongation into stage 1.
    let mut h = Recorder::default();
    let recs = driver
        .run(
            fmg::Problem {
                model: &model,
                loss: &mse,
                sampler: &mut s,
                vars: &vm.all_vars(),
            },
            &mut opt,
            &mut Accountant::new(),
            driver.state_at(15).unwrap(),
            &mut h,
        )
        .unwrap();
    assert_eq!((recs[0].iteration, recs[0].level), (15, 1));
    assert_eq!(h.prolongs, vec![(1, 0)]);
    // A progress hook can stop the run.
    let mut h = Recorder {
        stop_at: Some(3),
        ..Default::default()
    };
    let recs = driver
        .run(
            fmg::Problem {
                model: &model,
                loss: &mse,
                sampler: &mut s,
                vars: &vm.all_vars(),
            },
            &mut opt,
            &mut Accountant::new(),
            driver.state_at(0).unwrap(),
            &mut h,
        )
        .unwrap();
    assert_eq!(recs.len(), 3);
    // Galerkin without a prolong hook is an error naming the levels.
    let err = driver.run(
        fmg::Problem {
            model: &model,
            loss: &mse,
            sampler: &mut s,
            vars: &vm.all_vars(),
        },
        &mut opt,
        &mut Accountant::new(),
        driver.state_at(0).unwrap(),
        &mut NoHooks,
    );
    assert!(err.unwrap_err().to_string().contains("level 2"));
}

#[test]
fn non_finite_loss_is_an_error_naming_the_iteration() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 2);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t)? * f64::NAN;
    let st = stages(
        Strategy::Multiscale,
        &LevelPlan::multiscale(2, 1).unwrap(),
        3,
    )
    .unwrap();
    let driver = Driver::new(st, DriverConfig::default()).unwrap();
    let mut opt = AdamW::new_lr(vm.all_vars(), 1e-3).unwrap();
    let mut s = SmoothSampler::new(1, 8, 3);
    let err = driver
        .run(
            fmg::Problem {
                model: &model,
                loss: &mse,
                sampler: &mut s,
                vars: &vm.all_vars(),
            },
            &mut opt,
            &mut Accountant::new(),
            driver.state_at(0).unwrap(),
            &mut NoHooks,
        )
        .unwrap_err();
    assert!(
        matches!(err, fmg::Error::NonFinite { iteration: 0, .. }),
        "{err}"
    );
    let _ = opt.learning_rate();
}

#[test]
fn cosine_runs_once_over_all_stages_or_restarts_per_stage() {
    let fmg = Strategy::FullMultiscale {
        schedule: StageSchedule::Halving,
    };
    let cfg = |restart| DriverConfig {
        lr: 1e-3,
        lr_min: 0.0,
        lr_restart_per_stage: restart,
        ..Default::default()
    };
    // Stages of 8, 4, 2 iterations (L = 3, halving); T = 14 for the single cosine.
    let (_, _, global) = train(fmg, 8, cfg(false));
    let (_, _, restart) = train(fmg, 8, cfg(true));
    let cos = |k: f64, t: f64| 1e-3 * 0.5 * (1.0 + (std::f64::consts::PI * k / t).cos());
    for (k, r) in global.iter().enumerate() {
        assert!(
            (r.lr - cos(k as f64, 14.0)).abs() < 1e-12,
            "global {k}: {}",
            r.lr
        );
    }
    let firsts = [0usize, 8, 12];
    for (k, r) in restart.iter().enumerate() {
        let (s, start) = firsts
            .iter()
            .enumerate()
            .rev()
            .find(|(_, &f)| f <= k)
            .map(|(s, &f)| (s, f))
            .unwrap();
        let len = [8.0, 4.0, 2.0][s];
        assert_eq!(r.stage, s);
        assert!(
            (r.lr - cos((k - start) as f64, len)).abs() < 1e-12,
            "restart {k}: {}",
            r.lr
        );
    }
    // The finest stage (L = 3): below 5% of lr with one cosine, from the full rate with restarts.
    assert!(global[12].lr < 0.05e-3 && restart[12].lr == 1e-3);
}

/// Validates with the real finest-mesh loss, stops after iteration `stop_at` and keeps the
/// driver state of the last iteration.
struct Interrupt<'n> {
    net: &'n Tiny,
    val: data::Degraded,
    stop_at: Option<u64>,
    state: Option<fmg::DriverState>,
}

impl<U: ?Sized, S: ?Sized> Hooks<U, S> for Interrupt<'_> {
    fn validate(&mut self, _level: usize) -> fmg::HookResult<Option<f64>> {
        Ok(Some(val_loss(self.net, &self.val)))
    }
    fn on_iteration(
        &mut self,
        rec: &IterRecord,
        ctx: Context<'_, U, S>,
    ) -> fmg::HookResult<Control> {
        // Through JSON, as a checkpoint stores it.
        let json = serde_json::to_string(ctx.state)?;
        self.state = Some(serde_json::from_str(&json)?);
        Ok(match Some(rec.iteration) == self.stop_at {
            true => Control::Stop,
            false => Control::Continue,
        })
    }
}

/// What must agree bit for bit between an uninterrupted and a resumed run.
fn trace(recs: &[IterRecord]) -> Vec<(u64, usize, u64, String, Vec<usize>)> {
    recs.iter()
        .map(|r| {
            let batches = r.terms.iter().map(|t| t.batch).collect();
            (
                r.iteration,
                r.stage,
                r.loss.to_bits(),
                r.wu_total.to_string(),
                batches,
            )
        })
        .collect()
}

/// A run stopped after any iteration and resumed from the saved [`fmg::DriverState`] takes
/// exactly the uninterrupted run's steps: same iterations, stages, losses, #WU and the
/// adaptive allocation's batches, with early stopping ending the same stages. Resuming with
/// fresh estimates instead (`state_at`) does not, so the state is what makes it exact.
#[test]
fn resume_from_driver_state_is_exact_with_adaptive_batches_and_early_stopping() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 4);
    let initial: Vec<Tensor> = vm
        .all_vars()
        .iter()
        .map(|v| v.as_tensor().copy().unwrap())
        .collect();
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let base = LevelPlan::multiscale(3, 2).unwrap();
    let schedule = StageSchedule::Equal;
    let st = stages(Strategy::FullMultiscale { schedule }, &base, 6).unwrap();
    let cfg = DriverConfig {
        lr: 0.02,
        lr_min: 0.002,
        validate_every: 2,
        patience: Some(1),
        // Never "improves" by this much: a stage ends at its second validation.
        min_delta: 1e9,
        adaptive: Some(3),
        ..Default::default()
    };
    let driver = Driver::new(st, cfg).unwrap();
    let val = SmoothSampler::new(1, 16, 99).draw(4).unwrap();
    // Runs from fresh weights, sampler and accountant, stopping after `stop_at`, then resumes
    // from the saved state (or from fresh estimates at the same iteration).
    let run = |stop_at: Option<u64>, exact: bool| -> Vec<IterRecord> {
        let vars = vm.all_vars();
        for (v, t) in vars.iter().zip(&initial) {
            v.set(t).unwrap();
        }
        let mut opt = candle_nn::SGD::new(vars.clone(), 0.02).unwrap();
        let (mut s, mut acct) = (SmoothSampler::new(1, 16, 7), Accountant::new());
        let mut hooks = Interrupt {
            net: &net,
            val: val.clone(),
            stop_at,
            state: None,
        };
        let mut go = |start: fmg::DriverState, hooks: &mut Interrupt| {
            let problem = fmg::Problem {
                model: &model,
                loss: &mse,
                sampler: &mut s,
                vars: &vars,
            };
            driver
                .run(problem, &mut opt, &mut acct, start, hooks)
                .unwrap()
        };
        let mut recs = go(driver.state_at(0).unwrap(), &mut hooks);
        if stop_at.is_some() {
            let saved = hooks.state.take().unwrap();
            let start = match exact {
                true => saved,
                false => driver.state_at(saved.next_iteration).unwrap(),
            };
            hooks.stop_at = None;
            recs.extend(go(start, &mut hooks));
        }
        recs
    };
    let whole = trace(&run(None, true));
    let stages_run: std::collections::BTreeSet<usize> = whole.iter().map(|t| t.1).collect();
    assert_eq!(stages_run.len(), 3, "every stage runs");
    assert!(
        whole.len() < 18,
        "early stopping ends stages: {} iterations",
        whole.len()
    );
    let plans: std::collections::BTreeSet<&Vec<usize>> = whole.iter().map(|t| &t.4).collect();
    assert!(
        plans.len() > 3,
        "the adaptive allocation changes batches: {plans:?}"
    );
    let mut differs = 0;
    for stop in whole.iter().map(|t| t.0).take(whole.len() - 1) {
        assert_eq!(
            trace(&run(Some(stop), true)),
            whole,
            "resumed after iteration {stop}"
        );
        differs += usize::from(trace(&run(Some(stop), false)) != whole);
    }
    assert!(
        differs > 0,
        "fresh estimates never changed the run: the test cannot fail"
    );
}

/// States that do not belong to the driver are refused before any training, naming why.
#[test]
fn foreign_or_impossible_states_are_refused() {
    let base = LevelPlan::multiscale(3, 2).unwrap();
    let schedule = StageSchedule::Equal;
    let plan = stages(Strategy::FullMultiscale { schedule }, &base, 4).unwrap();
    let cfg = DriverConfig {
        patience: Some(2),
        validate_every: 1,
        ..Default::default()
    };
    let driver = Driver::new(plan.clone(), cfg).unwrap();
    let total = driver.total_iters();
    assert_eq!(total, 12);
    assert!(driver.state_at(total).unwrap().is_done(3));
    let e = driver.state_at(total + 1).unwrap_err().to_string();
    assert!(
        e.contains("iteration 13 is past the schedule's 12 iterations"),
        "{e}"
    );

    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 4);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let vars = vm.all_vars();
    let snapshot = || -> Vec<Vec<f32>> {
        let flat = |v: &candle_core::Var| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        vars.iter().map(flat).collect()
    };
    let before = snapshot();
    let mut opt = AdamW::new(vars.clone(), ParamsAdamW::default()).unwrap();
    let mut refuse = |state: fmg::DriverState| {
        let mut s = SmoothSampler::new(1, 16, 1);
        let problem = fmg::Problem {
            model: &model,
            loss: &mse,
            sampler: &mut s,
            vars: &vars,
        };
        let acct = &mut Accountant::new();
        let e = driver.run(problem, &mut opt, acct, state, &mut NoHooks);
        e.unwrap_err().to_string()
    };
    // Iteration 5 lies in stage 1, not stage 0.
    let mut s = driver.state_at(5).unwrap();
    s.stage = 0;
    let e = refuse(s);
    assert!(
        e.contains("iteration 5 is in stage 1, the state says stage 0"),
        "{e}"
    );
    // Estimates of another level count.
    let mut s = driver.state_at(5).unwrap();
    s.tracker = mge::VarianceTracker::new(5, 0.9);
    let e = refuse(s);
    assert!(e.contains("do not match stage 1's 3 levels"), "{e}");
    // A state saved without early stopping.
    let other = Driver::new(plan, DriverConfig::default()).unwrap();
    let e = refuse(other.state_at(5).unwrap());
    assert!(
        e.contains("early stopping is set in one of the state and the driver"),
        "{e}"
    );
    // No iteration ran: the refusals left the parameters untouched.
    assert_eq!(snapshot(), before);
}

/// A sampler that sleeps before every draw (a slow data source).
struct Slow<S> {
    inner: S,
    draws: usize,
}

impl<S: Sampler> Sampler for Slow<S> {
    fn draw(&mut self, count: usize) -> mge::Result<data::Degraded> {
        std::thread::sleep(std::time::Duration::from_millis(3));
        self.draws += 1;
        self.inner.draw(count)
    }
}

#[test]
fn data_time_is_the_part_of_the_step_spent_drawing() {
    let mut s = Slow {
        inner: SmoothSampler::new(1, 32, 1),
        draws: 0,
    };
    let (_, _, recs) = train_from(Strategy::Multiscale, 4, DriverConfig::default(), &mut s);
    // Three terms, each its own fresh batch: three draws of at least 3 ms per iteration.
    assert_eq!(s.draws, 3 * recs.len());
    for r in &recs {
        assert!(r.data_s >= 0.009, "iteration {}: {}", r.iteration, r.data_s);
        assert!(r.data_s <= r.step_s, "iteration {}", r.iteration);
    }
}
