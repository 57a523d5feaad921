//! The driver over thread ranks (`comm::LocalGroup`): every strategy, Full-Multiscale stages
//! included, gives the single-process loss curve and #WU under both splits (issue 18).

#[path = "../../mge/tests/common/mod.rs"]
mod common;

use candle_core::{Tensor, Var};
use candle_nn::{Optimizer, VarMap, SGD};
use comm::{Communicator, LocalGroup};
use common::*;
use fmg::{stages, Driver, DriverConfig, NoHooks, StageSchedule, Strategy};
use mge::{Accountant, Fraction, LevelPlan, Parallel, Split};
use std::rc::Rc;
use std::time::Duration;

fn sorted_vars(vm: &VarMap) -> Vec<Var> {
    let data = vm.data().lock().unwrap();
    let mut named: Vec<_> = data.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// Per iteration: (stage, loss, cumulative #WU).
fn train(strategy: Strategy, par: Option<Parallel>) -> Vec<(usize, f64, Fraction)> {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 4);
    let vars = sorted_vars(&vm);
    let base = LevelPlan::multiscale(3, 2).unwrap();
    let cfg = DriverConfig {
        lr: 0.05,
        lr_min: 0.005,
        fused_levels: true,
        ..Default::default()
    };
    let driver = Driver::new(stages(strategy, &base, 8).unwrap(), cfg)
        .unwrap()
        .with_parallel(par);
    let mut opt = SGD::new(vars.clone(), 0.05).unwrap();
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let mut s = SmoothSampler::new(1, 16, 1);
    driver
        .run(
            fmg::Problem {
                model: &model,
                loss: &mse,
                sampler: &mut s,
                vars: &vars,
            },
            &mut opt,
            &mut Accountant::new(),
            driver.state_at(0).unwrap(),
            &mut NoHooks,
        )
        .unwrap()
        .into_iter()
        .map(|r| (r.stage, r.loss, r.wu_total))
        .collect()
}

#[test]
fn every_strategy_on_2_and_3_ranks_follows_the_single_process_curve() {
    let strategies = [
        Strategy::Multiscale,
        Strategy::FullMultiscale {
            schedule: StageSchedule::Halving,
        },
        Strategy::Single { batch: 5 },
    ];
    for strategy in strategies {
        let single = train(strategy, None);
        for split in [Split::Data, Split::Level] {
            for size in [2, 3] {
                let handles: Vec<_> = LocalGroup::new(size, Duration::from_secs(60))
                    .unwrap()
                    .into_iter()
                    .map(|c| {
                        std::thread::spawn(move || {
                            let comm: Rc<dyn Communicator> = Rc::new(c);
                            train(strategy, Some(Parallel { comm, split }))
                        })
                    })
                    .collect();
                for h in handles {
                    let run = h.join().unwrap();
                    assert_eq!(run.len(), single.len());
                    for (a, b) in run.iter().zip(&single) {
                        let at = format!("{strategy:?}, {split:?} on {size}");
                        assert_eq!(a.0, b.0, "{at}: stage");
                        assert!(
                            (a.1 - b.1).abs() <= 1e-5 * b.1.abs().max(1e-3),
                            "{at}: loss {} vs {}",
                            a.1,
                            b.1
                        );
                        assert_eq!(a.2, b.2, "{at}: #WU");
                    }
                }
            }
        }
    }
}

/// `Driver::ranks`: 1 without a parallel context, the communicator's size with one (the trainer
/// keeps the pool's workers awake only for a single rank).
#[test]
fn ranks_is_the_communicators_size() {
    let base = LevelPlan::multiscale(3, 2).unwrap();
    let driver = || {
        Driver::new(
            stages(Strategy::Multiscale, &base, 8).unwrap(),
            DriverConfig::default(),
        )
        .unwrap()
    };
    assert_eq!(driver().ranks(), 1);
    for c in LocalGroup::new(3, Duration::from_secs(60)).unwrap() {
        let comm: Rc<dyn Communicator> = Rc::new(c);
        let split = Split::Data;
        assert_eq!(
            driver()
                .with_parallel(Some(Parallel { comm, split }))
                .ranks(),
            3
        );
    }
}
