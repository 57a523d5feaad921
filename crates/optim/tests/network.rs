//! A small least-squares network problem: a 2-layer tanh MLP (candle_nn::Linear) fitted to a
//! fixed teacher network. Per outer iteration, Gauss-Newton-CG and CG-Steihaug lower the loss
//! faster than AdamW at its best learning rate from a grid.
mod common;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{AdamW, Linear, Optimizer, ParamsAdamW};
use common::gaussian;
use optim::{ClosureKind, GaussNewton, GaussNewtonConfig, SecondOrder, Steihaug, SteihaugConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;

const SAMPLES: usize = 128;
const IN: usize = 4;
const HIDDEN: usize = 16;
const OUT: usize = 3;
const ITERS: usize = 20;

struct Mlp {
    l1: Linear,
    l2: Linear,
    vars: Vec<Var>,
}

fn var(rng: &mut StdRng, shape: (usize, usize), scale: f64) -> Var {
    let data: Vec<f32> = gaussian(rng, shape.0 * shape.1)
        .iter()
        .map(|x| (x * scale) as f32)
        .collect();
    Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap()).unwrap()
}

/// `x -> W2 tanh(W1 x + b1) + b2`, weights N(0, gain^2 / fan_in), fixed seed.
fn mlp(seed: u64, hidden: usize, gain: f64) -> Mlp {
    let mut rng = StdRng::seed_from_u64(seed);
    let w1 = var(&mut rng, (hidden, IN), gain / (IN as f64).sqrt());
    let b1 = var(&mut rng, (1, hidden), 0.1);
    let w2 = var(&mut rng, (OUT, hidden), gain / (hidden as f64).sqrt());
    let b2 = var(&mut rng, (1, OUT), 0.1);
    let l1 = Linear::new(
        w1.as_tensor().clone(),
        Some(b1.as_tensor().flatten_all().unwrap()),
    );
    let l2 = Linear::new(
        w2.as_tensor().clone(),
        Some(b2.as_tensor().flatten_all().unwrap()),
    );
    Mlp {
        l1,
        l2,
        vars: vec![w1, b1, w2, b2],
    }
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.l2.forward(&self.l1.forward(x)?.tanh()?)
    }
}

/// Inputs `x ~ N(0, I)` and targets from a wider, sharper teacher network.
fn problem() -> (Tensor, Tensor) {
    let mut rng = StdRng::seed_from_u64(100);
    let x: Vec<f32> = gaussian(&mut rng, SAMPLES * IN)
        .iter()
        .map(|v| *v as f32)
        .collect();
    let x = Tensor::from_vec(x, (SAMPLES, IN), &Device::Cpu).unwrap();
    let y = mlp(101, 24, 2.0).forward(&x).unwrap();
    (x, y)
}

fn loss_of(net: &Mlp, x: &Tensor, y: &Tensor) -> f64 {
    let r = net.forward(x).unwrap().sub(y).unwrap();
    (r.sqr().unwrap().mean_all().unwrap() * 0.5)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Loss after each of `ITERS` second-order steps (the closure returns the residual).
fn run_second_order(
    make: impl Fn(Vec<Var>) -> Box<dyn SecondOrder>,
    x: &Tensor,
    y: &Tensor,
) -> (Vec<f64>, usize, usize) {
    let net = mlp(7, HIDDEN, 1.0);
    let mut opt = make(net.vars.clone());
    assert_eq!(opt.closure_kind(), ClosureKind::Residual);
    let mut closure = || net.forward(x)?.sub(y);
    let (mut curve, mut fwd, mut bwd) = (vec![loss_of(&net, x, y)], 0, 0);
    for _ in 0..ITERS {
        let report = opt.step(&mut closure).unwrap();
        assert!(
            (report.loss_after - loss_of(&net, x, y)).abs() <= 1e-6 * report.loss_after.max(1e-12)
        );
        curve.push(report.loss_after);
        fwd += report.forward_passes;
        bwd += report.backward_passes;
    }
    (curve, fwd, bwd)
}

fn run_adamw(lr: f64, iters: usize, x: &Tensor, y: &Tensor) -> Vec<f64> {
    let net = mlp(7, HIDDEN, 1.0);
    let params = ParamsAdamW {
        lr,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = AdamW::new(net.vars.clone(), params).unwrap();
    let mut curve = vec![loss_of(&net, x, y)];
    for _ in 0..iters {
        let r = net.forward(x).unwrap().sub(y).unwrap();
        let loss = (r.sqr().unwrap().mean_all().unwrap() * 0.5).unwrap();
        opt.backward_step(&loss).unwrap();
        curve.push(loss_of(&net, x, y));
    }
    curve
}

fn show(name: &str, curve: &[f64]) {
    let picks: Vec<String> = [0, 1, 2, 5, 10, ITERS]
        .iter()
        .map(|&k| format!("{k}:{:.3e}", curve[k]))
        .collect();
    println!("{name:>24}  {}", picks.join("  "));
}

#[test]
fn second_order_beats_adamw_per_iteration_on_small_mlp() {
    let (x, y) = problem();
    let gn_cfg = GaussNewtonConfig::default();
    let (gn, gn_fwd, gn_bwd) =
        run_second_order(|v| Box::new(GaussNewton::new(v, gn_cfg).unwrap()), &x, &y);
    let st_cfg = SteihaugConfig {
        objective: ClosureKind::Residual,
        ..Default::default()
    };
    let (st, st_fwd, st_bwd) =
        run_second_order(|v| Box::new(Steihaug::new(v, st_cfg).unwrap()), &x, &y);
    println!(
        "loss after iteration k (k:loss), {SAMPLES} samples, MLP {IN}-{HIDDEN}-{OUT} tanh, f32"
    );
    show("Gauss-Newton-CG", &gn);
    show("CG-Steihaug", &st);
    let mut best_adam: Option<(f64, Vec<f64>)> = None;
    for lr in [1e-3, 3e-3, 1e-2, 3e-2, 1e-1] {
        let curve = run_adamw(lr, ITERS, &x, &y);
        show(&format!("AdamW lr={lr}"), &curve);
        if best_adam
            .as_ref()
            .is_none_or(|(_, b)| curve[ITERS] < b[ITERS])
        {
            best_adam = Some((lr, curve));
        }
    }
    let (best_lr, adam) = best_adam.unwrap();
    println!(
        "after {ITERS} iterations: GN {:.3e} ({gn_fwd} forward / {gn_bwd} backward passes), Steihaug {:.3e} ({st_fwd} / {st_bwd}), best AdamW (lr {best_lr}) {:.3e} ({ITERS} / {ITERS})",
        gn[ITERS], st[ITERS], adam[ITERS]
    );
    // Not asserted (cost differs per iteration): AdamW given as many forward passes.
    for budget in [st_fwd, gn_fwd] {
        let long = run_adamw(best_lr, budget, &x, &y);
        println!(
            "AdamW (lr {best_lr}) after {budget} iterations: {:.3e}",
            long[budget]
        );
    }
    for k in [5, 10, ITERS] {
        assert!(gn[k] < adam[k], "GN not ahead of AdamW at iteration {k}");
        assert!(
            st[k] < adam[k],
            "Steihaug not ahead of AdamW at iteration {k}"
        );
    }
}
