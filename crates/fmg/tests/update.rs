//! Updates that re-evaluate the iteration's MGE loss: the replayed loss equals the
//! iteration's loss, re-evaluations are counted in #WU, second-order updates train, and a
//! least-squares residual is refused where the MGE loss is not one.

#[path = "../../mge/tests/common/mod.rs"]
mod common;

use candle_core::Tensor;
use candle_nn::VarMap;
use common::*;
use fmg::{
    stages, Driver, DriverConfig, IterRecord, NoHooks, Reevaluate, Replay, SecondOrderUpdate,
    Strategy, Update,
};
use mge::{Accountant, Fraction, LevelPlan, Sampler, Step};
use optim::{GaussNewtonConfig, OptimizerConfig, SteihaugConfig, StepReport};

/// Per-term `(fine, coarse)` losses of one evaluation.
type TermLosses = Vec<(f64, Option<f64>)>;

/// Re-evaluates `times` times without changing the parameters and keeps what it saw.
struct Probe {
    times: usize,
    /// Per iteration: the step's per-term losses, #WU, and those of every re-evaluation.
    seen: Vec<(TermLosses, Fraction, Vec<TermLosses>)>,
}

fn value(x: &Tensor) -> f64 {
    x.to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

impl Update for Probe {
    fn set_learning_rate(&mut self, _lr: f64) {}
    fn update(
        &mut self,
        step: &Step,
        reevaluate: &mut Reevaluate,
    ) -> fmg::Result<Option<StepReport>> {
        let terms = step
            .terms
            .iter()
            .map(|t| (t.loss_fine, t.loss_coarse))
            .collect();
        let again = (0..self.times)
            .map(|_| {
                let l = reevaluate().unwrap();
                l.terms
                    .iter()
                    .map(|t| (value(&t.loss_fine), t.loss_coarse.as_ref().map(value)))
                    .collect()
            })
            .collect();
        self.seen.push((terms, step.wu, again));
        Ok(None)
    }
}

fn plan(levels: usize, n0: usize) -> LevelPlan {
    let mut p = LevelPlan::multiscale(levels, n0).unwrap();
    // Random crops: the replay must repeat the subsampling choices, not only the batches.
    p.subsampling = grids::Subsampling::Crop;
    p
}

#[test]
fn reevaluation_reproduces_the_iteration_loss_and_is_counted() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 4);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    for fused in [false, true] {
        let st = stages(Strategy::Multiscale, &plan(3, 2), 4).unwrap();
        let cfg = DriverConfig {
            fused_levels: fused,
            ..Default::default()
        };
        let driver = Driver::new(st, cfg).unwrap();
        let mut probe = Probe {
            times: 2,
            seen: vec![],
        };
        let mut acct = Accountant::new();
        let mut s = SmoothSampler::new(1, 16, 5);
        let recs: Vec<IterRecord> = driver
            .run_with(
                fmg::Problem {
                    model: &model,
                    loss: &mse,
                    sampler: &mut s,
                    vars: &vm.all_vars(),
                },
                &mut probe,
                &mut acct,
                driver.state_at(0).unwrap(),
                &mut NoHooks,
            )
            .unwrap();
        assert_eq!(probe.seen.len(), 4);
        for ((terms, step_wu, again), rec) in probe.seen.iter().zip(&recs) {
            assert_eq!(terms.len(), 3);
            for a in again {
                assert_eq!(a, terms, "fused {fused}: replayed per-term losses differ");
            }
            // Each re-evaluation costs the step's model applications again.
            let three = step_wu.checked_mul(Fraction::from_int(3)).unwrap();
            assert_eq!(rec.wu, three);
            assert!(rec.second_order.is_none());
        }
        // Fresh draws only for the steps: 3 terms per iteration, never for a replay.
        assert_eq!(s.drawn.len(), 4 * 3);
        assert_eq!(acct.total(), recs.last().unwrap().wu_total);
    }
}

#[test]
fn replay_refuses_other_counts_and_extra_draws() {
    let d = SmoothSampler::new(1, 8, 1).draw(2).unwrap();
    let draws = [d];
    let mut r = Replay::new(&draws);
    assert!(r.draw(3).unwrap_err().to_string().contains("asked 3"));
    let again = r.draw(2).unwrap();
    assert_eq!(
        again.input.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        draws[0]
            .input
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    );
    assert!(r.draw(2).unwrap_err().to_string().contains("only 1 draws"));
}

/// Validation loss before and after `iters` second-order iterations, and the records.
fn train(
    strategy: Strategy,
    cfg: OptimizerConfig,
    loss: &mge::LossFn,
    iters: usize,
) -> fmg::Result<(f64, f64, Vec<IterRecord>)> {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 4);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let val = SmoothSampler::new(1, 16, 99).draw(16).unwrap();
    let val_loss = || value(&mse(&net.forward(&val.input, None).unwrap(), &val.target).unwrap());
    let before = val_loss();
    let driver = Driver::new(
        stages(strategy, &LevelPlan::multiscale(2, 4).unwrap(), iters).unwrap(),
        DriverConfig::default(),
    )
    .unwrap();
    let mut update = SecondOrderUpdate::new(cfg.build(vm.all_vars()).unwrap());
    let mut s = SmoothSampler::new(1, 16, 1);
    s.noise_scale = 0.5;
    let recs = driver.run_with(
        fmg::Problem {
            model: &model,
            loss,
            sampler: &mut s,
            vars: &vm.all_vars(),
        },
        &mut update,
        &mut Accountant::new(),
        driver.state_at(0).unwrap(),
        &mut NoHooks,
    )?;
    Ok((before, val_loss(), recs))
}

#[test]
fn second_order_updates_lower_the_loss() {
    let steihaug = OptimizerConfig::Steihaug(SteihaugConfig {
        cg_max_iters: 5,
        ..Default::default()
    });
    let gauss_newton = OptimizerConfig::GaussNewton(GaussNewtonConfig {
        cg_max_iters: 5,
        ..Default::default()
    });
    for (strategy, cfg) in [
        (Strategy::Multiscale, steihaug),
        (Strategy::Single { batch: 4 }, steihaug),
        (Strategy::Single { batch: 4 }, gauss_newton),
    ] {
        let (before, after, recs) = train(strategy, cfg, &mse, 6).unwrap();
        let reports: Vec<_> = recs.iter().filter_map(|r| r.second_order.clone()).collect();
        println!(
            "{strategy:?} {cfg:?}: validation loss {before:.4e} -> {after:.4e}, accepted {}/{}, #WU {}",
            reports.iter().filter(|r| r.accepted).count(),
            reports.len(),
            recs.last().unwrap().wu_total
        );
        assert!(
            after < 0.7 * before,
            "{strategy:?}: {before:.4e} -> {after:.4e}"
        );
        assert_eq!(reports.len(), 6);
        assert!(reports.iter().any(|r| r.accepted));
        for (r, rec) in reports.iter().zip(&recs) {
            // The optimizer's loss at theta_k is the iteration's loss (half of it for the
            // least-squares form 1/(2m) ||r||^2 of the MSE).
            let scale = if matches!(cfg, OptimizerConfig::GaussNewton(_)) {
                0.5
            } else {
                1.0
            };
            assert!(
                (r.loss_before - scale * rec.loss).abs() <= 1e-5 * rec.loss,
                "{r:?} vs {}",
                rec.loss
            );
            // Every closure evaluation is counted: #WU = (1 + forward passes) x one step's.
            let per_eval = rec
                .terms
                .iter()
                .map(|t| t.wu)
                .fold(Fraction::ZERO, |a, b| a.checked_add(b).unwrap());
            let want = per_eval
                .checked_mul(Fraction::from_int(1 + r.forward_passes as u128))
                .unwrap();
            assert_eq!(rec.wu, want);
        }
    }
}

#[test]
fn a_residual_needs_one_term_and_the_mse_loss() {
    let gn = OptimizerConfig::GaussNewton(GaussNewtonConfig::default());
    let e = train(Strategy::Multiscale, gn, &mse, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("single-scale") && e.contains("2 terms"), "{e}");
    let l1 = |p: &Tensor, y: &Tensor| (p - y)?.abs()?.mean_all();
    let e = train(Strategy::Single { batch: 4 }, gn, &l1, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("MSE"), "{e}");
}
