//! Data- and level-parallel MGE on ranks as threads ([`comm::LocalGroup`]) against the
//! single-process estimator: the same seed gives the same loss, gradient, per-term losses and
//! #WU on 1, 2 and 3 ranks, and the same 20-iteration training curve (issue 18, item 3).

mod common;

use candle_core::Var;
use candle_nn::{Optimizer, VarMap, SGD};
use comm::{Communicator, LocalGroup};
use common::*;
use grids::Subsampling;
use mge::{Accountant, Estimator, GradientMode, LevelPlan, Parallel, Split};
use std::rc::Rc;
use std::time::Duration;

/// What one rank saw: per iteration the loss, flattened gradient, per-term (loss_fine,
/// loss_coarse, wu) and the accountant's total.
type Run = Vec<(
    f64,
    Vec<f32>,
    Vec<(f64, Option<f64>, mge::Fraction)>,
    mge::Fraction,
)>;

fn sorted_vars(vm: &VarMap) -> Vec<Var> {
    let data = vm.data().lock().unwrap();
    let mut named: Vec<_> = data.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// `iters` iterations (SGD, lr 0.05) on `comm` (or one process when `None`).
fn run(plan: &LevelPlan, fused: bool, iters: u64, par: Option<Parallel>) -> Run {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 2, 3);
    let vars = sorted_vars(&vm);
    let model = |x: &candle_core::Tensor, t: Option<&candle_core::Tensor>| net.forward(x, t);
    let mut est = Estimator::new(plan.clone(), GradientMode::Total, 5).unwrap();
    est.set_fused_levels(fused);
    est.set_parallel(par);
    let mut sampler = SmoothSampler::new(2, 16, 9);
    let mut acct = Accountant::new();
    let mut sgd = SGD::new(vars.clone(), 0.05).unwrap();
    let mut out = Vec::new();
    for k in 0..iters {
        let step = est
            .step(&model, &mse, &mut sampler, &vars, k, &mut acct)
            .unwrap();
        let terms = step
            .terms
            .iter()
            .map(|t| (t.loss_fine, t.loss_coarse, t.wu))
            .collect();
        out.push((step.loss, flat(&step.grads, &vm), terms, acct.total()));
        sgd.step(&step.grads).unwrap();
    }
    out
}

/// The same run on `size` thread ranks; every rank's result.
fn run_ranks(plan: &LevelPlan, fused: bool, iters: u64, split: Split, size: usize) -> Vec<Run> {
    let handles: Vec<_> = LocalGroup::new(size, Duration::from_secs(60))
        .unwrap()
        .into_iter()
        .map(|c| {
            let plan = plan.clone();
            std::thread::spawn(move || {
                let comm: Rc<dyn Communicator> = Rc::new(c);
                run(&plan, fused, iters, Some(Parallel { comm, split }))
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-3)
}

fn assert_same(single: &Run, ranks: &[Run], what: &str) {
    for (r, run) in ranks.iter().enumerate() {
        assert_eq!(run.len(), single.len());
        for (k, (a, b)) in run.iter().zip(single).enumerate() {
            let at = format!("{what}, rank {r}, iteration {k}");
            assert!(close(a.0, b.0, 1e-5), "{at}: loss {} vs {}", a.0, b.0);
            let scale = b.1.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0);
            for (x, y) in a.1.iter().zip(&b.1) {
                assert!((x - y).abs() <= 1e-4 * scale, "{at}: gradient {x} vs {y}");
            }
            assert_eq!(a.2.len(), b.2.len());
            for (s, t) in a.2.iter().zip(&b.2) {
                assert!(close(s.0, t.0, 1e-5), "{at}: term loss {} vs {}", s.0, t.0);
                assert_eq!(s.1.is_some(), t.1.is_some());
                if let (Some(x), Some(y)) = (s.1, t.1) {
                    assert!(close(x, y, 1e-5), "{at}: coarse loss {x} vs {y}");
                }
                assert_eq!(s.2, t.2, "{at}: per-term #WU");
            }
            // #WU summed over ranks equals the single-process count exactly.
            assert_eq!(a.3, b.3, "{at}: #WU");
        }
    }
}

#[test]
fn one_iteration_on_2_and_3_ranks_equals_the_single_process() {
    let mut crop = LevelPlan::multiscale(3, 2).unwrap();
    crop.subsampling = Subsampling::Crop;
    let mut nc = LevelPlan::multiscale(3, 2).unwrap();
    nc.noise_consistent = true;
    let plans = [
        ("coarsen L=3", LevelPlan::multiscale(3, 2).unwrap()),
        ("crop L=3", crop),
        ("noise-consistent", nc),
        (
            "stage 1 of L=3",
            LevelPlan::multiscale(3, 2).unwrap().stage(1).unwrap(),
        ),
        ("single-scale N=5", LevelPlan::single(5).unwrap()),
    ];
    for (name, plan) in &plans {
        for fused in [false, true] {
            let single = run(plan, fused, 1, None);
            for split in [Split::Data, Split::Level] {
                for size in [2, 3] {
                    let ranks = run_ranks(plan, fused, 1, split, size);
                    assert_same(
                        &single,
                        &ranks,
                        &format!("{name}, fused {fused}, {split:?} on {size}"),
                    );
                }
            }
        }
    }
}

#[test]
fn twenty_iterations_give_the_single_process_loss_curve() {
    let plan = LevelPlan::multiscale(3, 2).unwrap();
    let single = run(&plan, true, 20, None);
    assert!(single[19].0 < single[0].0, "training lowers the loss");
    for split in [Split::Data, Split::Level] {
        for size in [2, 3] {
            let ranks = run_ranks(&plan, true, 20, split, size);
            assert_same(
                &single,
                &ranks,
                &format!("20 iterations, {split:?} on {size}"),
            );
        }
    }
}

#[test]
fn one_rank_equals_the_plain_estimator_bit_for_bit() {
    let plan = LevelPlan::multiscale(3, 2).unwrap();
    let single = run(&plan, false, 2, None);
    let one = run_ranks(&plan, false, 2, Split::Data, 1);
    for (a, b) in one[0].iter().zip(&single) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
        assert_eq!(a.3, b.3);
    }
}

#[test]
fn per_term_statistics_are_refused_in_parallel() {
    let plan = LevelPlan::multiscale(2, 2).unwrap();
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 2, 3);
    let model = |x: &candle_core::Tensor, t: Option<&candle_core::Tensor>| net.forward(x, t);
    let mut est = Estimator::new(plan, GradientMode::PerTerm, 5).unwrap();
    est.set_parallel(Some(Parallel {
        comm: Rc::new(comm::SingleProcess),
        split: Split::Data,
    }));
    let e = est
        .step(
            &model,
            &mse,
            &mut SmoothSampler::new(2, 16, 9),
            &[],
            0,
            &mut Accountant::new(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("distributed"), "{e}");
}

#[test]
fn ranks_with_different_variables_are_an_error() {
    let plan = LevelPlan::multiscale(2, 2).unwrap();
    let handles: Vec<_> = LocalGroup::new(2, Duration::from_secs(60))
        .unwrap()
        .into_iter()
        .map(|c| {
            let plan = plan.clone();
            std::thread::spawn(move || {
                let vm = VarMap::new();
                let net = Tiny::new(&vm, 2, 3);
                let mut vars = sorted_vars(&vm);
                if c.rank() == 1 {
                    vars.reverse();
                }
                let model =
                    |x: &candle_core::Tensor, t: Option<&candle_core::Tensor>| net.forward(x, t);
                let mut est = Estimator::new(plan, GradientMode::Total, 5).unwrap();
                est.set_parallel(Some(Parallel {
                    comm: Rc::new(c),
                    split: Split::Data,
                }));
                let mut sampler = SmoothSampler::new(2, 16, 9);
                est.step(&model, &mse, &mut sampler, &vars, 0, &mut Accountant::new())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    for h in handles {
        let e = h.join().unwrap().unwrap_err();
        assert!(e.contains("different variables"), "{e}");
    }
}
