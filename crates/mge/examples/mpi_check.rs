//! Distributed MGE under MPI against the single-process estimator (issue 18, item 3); run by
//! `.ci/mpi-tests`:
//!
//! ```text
//! cargo build --release -p mge --features mpi --example mpi_check
//! mpirun --allow-run-as-root --oversubscribe -np 2 target/release/examples/mpi_check equivalence
//! mpirun --allow-run-as-root --oversubscribe -np 3 target/release/examples/mpi_check die exit
//! ```
//!
//! `equivalence`: every rank also runs the single-process estimator on its own and compares,
//! per iteration, the loss, gradient, per-term losses and #WU of 1 and 20 iterations of SGD
//! training under both splits (and a Full-Multiscale stage plan); exit 1 on a mismatch.
//! `die exit|panic|error`: rank 1 leaves at iteration 3 (`exit(7)` without finalising, a
//! panic, or an error returned from `main`); the job must end with a non-zero status, which
//! the script checks under a timeout.

#[path = "../tests/common/mod.rs"]
mod common;

use candle_core::{Tensor, Var};
use candle_nn::{Optimizer, VarMap, SGD};
use comm::{Communicator, MpiComm};
use common::{flat, mse, SmoothSampler, Tiny};
use mge::{Accountant, Estimator, GradientMode, LevelPlan, Parallel, Split};
use std::process::ExitCode;
use std::rc::Rc;

type Curve = Vec<(f64, Vec<f32>, Vec<(f64, Option<f64>)>, mge::Fraction)>;

fn sorted_vars(vm: &VarMap) -> Vec<Var> {
    let data = vm.data().lock().unwrap();
    let mut named: Vec<_> = data.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// `iters` SGD iterations; `die_at`: this rank fails at that iteration the given way.
fn train(
    plan: &LevelPlan,
    iters: u64,
    par: Option<Parallel>,
    die_at: Option<(u64, &str)>,
) -> Result<Curve, String> {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 2, 4);
    let vars = sorted_vars(&vm);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let mut est =
        Estimator::new(plan.clone(), GradientMode::Total, 5).map_err(|e| e.to_string())?;
    est.set_fused_levels(true);
    est.set_parallel(par);
    let mut sampler = SmoothSampler::new(2, 16, 9);
    let mut acct = Accountant::new();
    let mut sgd = SGD::new(vars.clone(), 0.05).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for k in 0..iters {
        match die_at {
            Some((at, "exit")) if at == k => std::process::exit(7),
            Some((at, "panic")) if at == k => panic!("rank dies at iteration {k}"),
            Some((at, _)) if at == k => return Err(format!("rank fails at iteration {k}")),
            _ => {}
        }
        let step = est
            .step(&model, &mse, &mut sampler, &vars, k, &mut acct)
            .map_err(|e| e.to_string())?;
        let terms = step
            .terms
            .iter()
            .map(|t| (t.loss_fine, t.loss_coarse))
            .collect();
        out.push((step.loss, flat(&step.grads, &vm), terms, acct.total()));
        sgd.step(&step.grads).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Largest relative loss and gradient differences; an error if #WU or shapes differ or the
/// differences exceed float tolerance.
fn compare(a: &Curve, b: &Curve) -> Result<(f64, f64), String> {
    let (mut dl, mut dg) = (0f64, 0f64);
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        dl = dl.max((x.0 - y.0).abs() / y.0.abs().max(1e-3));
        for (s, t) in x.2.iter().zip(&y.2) {
            dl = dl.max((s.0 - t.0).abs() / t.0.abs().max(1e-3));
            if let (Some(p), Some(q)) = (s.1, t.1) {
                dl = dl.max((p - q).abs() / q.abs().max(1e-3));
            }
        }
        let scale = y.1.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        for (p, q) in x.1.iter().zip(&y.1) {
            dg = dg.max((p - q).abs() as f64 / scale);
        }
        if x.3 != y.3 {
            return Err(format!(
                "iteration {k}: #WU {} vs single-process {}",
                x.3, y.3
            ));
        }
    }
    if a.len() != b.len() || dl > 1e-5 || dg > 1e-4 {
        return Err(format!(
            "loss rel. diff {dl:.2e}, gradient rel. diff {dg:.2e}"
        ));
    }
    Ok((dl, dg))
}

fn run(comm: &Rc<MpiComm>) -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let shared: Rc<dyn Communicator> = comm.clone();
    let (rank, size) = (comm.rank(), comm.size());
    let par = |split| {
        Some(Parallel {
            comm: shared.clone(),
            split,
        })
    };
    let plan = LevelPlan::multiscale(3, 2).map_err(|e| e.to_string())?;
    match args.get(1).map(String::as_str) {
        Some("equivalence") => {
            let stage = plan.stage(1).map_err(|e| e.to_string())?;
            for (name, plan, iters) in [("L=3", &plan, 20), ("stage 1 of L=3", &stage, 1)] {
                let single = train(plan, iters, None, None)?;
                for split in [Split::Data, Split::Level] {
                    let dist = train(plan, iters, par(split), None)?;
                    let (dl, dg) = compare(&dist, &single)
                        .map_err(|e| format!("rank {rank}: {name}, {split:?} on {size}: {e}"))?;
                    if rank == 0 {
                        println!(
                            "{name}, {split:?} on {size} ranks, {iters} iterations: same #WU ({}), max rel. diff loss {dl:.1e}, gradient {dg:.1e}",
                            dist.last().map_or(mge::Fraction::ZERO, |d| d.3)
                        );
                    }
                }
            }
            Ok(())
        }
        Some("die") => {
            let how = args.get(2).map_or("exit", String::as_str);
            let die = (rank == 1).then_some((3, how));
            train(&plan, 1000, par(Split::Data), die)?;
            Err("the job survived a dead rank".into())
        }
        other => Err(format!(
            "mode {other:?}: expected equivalence or die exit|panic|error"
        )),
    }
}

fn main() -> ExitCode {
    let comm = match MpiComm::init() {
        Ok(c) => Rc::new(c),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // On an error the communicator is dropped unfinished, which aborts every rank.
    match run(&comm).and_then(|()| comm.finish().map_err(|e| e.to_string())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
