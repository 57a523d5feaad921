//! Convex quadratics in n dimensions: both optimizers reach the minimiser in one outer
//! iteration of at most n CG steps (N&W Theorem 5.1), and `H v` by finite differences of
//! gradients matches `A v`.
mod common;

use candle_core::{Device, Tensor, Var};
use common::{dense_solve, gaussian, random_matrix, random_spd, rel_err};
use optim::fd::default_rel_step;
use optim::flat::flatten;
use optim::steihaug::hessian_vector;
use optim::{ClosureKind, GaussNewton, GaussNewtonConfig, SecondOrder, Steihaug, SteihaugConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;

const N: usize = 12;

fn column(x: &[f64]) -> Tensor {
    Tensor::from_vec(x.to_vec(), (x.len(), 1), &Device::Cpu).unwrap()
}

/// `L = 1/2 theta^T A theta - b^T theta` with A SPD; minimiser `A^{-1} b`.
#[test]
fn steihaug_reaches_minimiser_of_convex_quadratic() {
    let a = random_spd(21, N, 0.2);
    let b = random_matrix(22, N, 1).a;
    let exact = dense_solve(&a, &b);
    let (at, bt) = (
        Tensor::from_vec(a.a.clone(), (N, N), &Device::Cpu).unwrap(),
        column(&b),
    );
    let theta = Var::zeros((N, 1), candle_core::DType::F64, &Device::Cpu).unwrap();
    let mut loss = || {
        let t = theta.as_tensor();
        (t.t()?.matmul(&at.matmul(t)?)? * 0.5)?.sub(&bt.t()?.matmul(t)?)
    };

    // H v by FD of gradients equals A v.
    let v = gaussian(&mut StdRng::seed_from_u64(23), N);
    let hv = hessian_vector(
        std::slice::from_ref(&theta),
        &mut loss,
        ClosureKind::Loss,
        &[0.0; N],
        &v,
        default_rel_step(std::slice::from_ref(&theta)),
    )
    .unwrap();
    println!(
        "FD H v relative error (f64 quadratic): {:.2e}",
        rel_err(&hv, &a.matvec(&v))
    );
    assert!(rel_err(&hv, &a.matvec(&v)) < 1e-8);

    let cfg = SteihaugConfig {
        radius_init: 100.0,
        forcing: Some(1e-12),
        cg_max_iters: N,
        ..Default::default()
    };
    let mut opt = Steihaug::new(vec![theta.clone()], cfg).unwrap();
    let report = opt.step(&mut loss).unwrap();
    let err = rel_err(&flatten(std::slice::from_ref(&theta)).unwrap(), &exact);
    println!(
        "Steihaug n = {N}: {} CG iterations ({:?}), ||theta - theta*||/||theta*|| = {err:.2e}, loss {:.6e} -> {:.6e}, rho = {:.6}",
        report.cg_iterations, report.cg_termination, report.loss_before, report.loss_after, report.ratio
    );
    assert!(report.accepted && report.cg_iterations <= N);
    // Limited by the FD Hessian-vector error (~3e-11) times the condition number.
    assert!(err < 1e-7);
    assert!((report.ratio - 1.0).abs() < 1e-6);
}

/// `L = 1/(2m) ||A theta - y||^2` (A is m x n, full rank): minimiser solves the normal equations.
#[test]
fn gauss_newton_reaches_least_squares_minimiser() {
    let m = 3 * N;
    let a = random_matrix(31, m, N);
    let y = random_matrix(32, m, 1).a;
    let exact = dense_solve(&a.gram(), &a.transpose_matvec(&y));
    let (at, yt) = (
        Tensor::from_vec(a.a.clone(), (m, N), &Device::Cpu).unwrap(),
        column(&y),
    );
    let theta = Var::zeros((N, 1), candle_core::DType::F64, &Device::Cpu).unwrap();
    let mut residual = || at.matmul(theta.as_tensor())?.sub(&yt);
    let cfg = GaussNewtonConfig {
        damping_init: 1e-14,
        damping_min: 1e-14,
        cg_rel_tol: 1e-12,
        cg_max_iters: N,
        ..Default::default()
    };
    let mut opt = GaussNewton::new(vec![theta.clone()], cfg).unwrap();
    let report = opt.step(&mut residual).unwrap();
    let err = rel_err(&flatten(std::slice::from_ref(&theta)).unwrap(), &exact);
    println!(
        "Gauss-Newton n = {N}, m = {m}: {} CG iterations ({:?}), ||theta - theta*||/||theta*|| = {err:.2e}, loss {:.6e} -> {:.6e}",
        report.cg_iterations, report.cg_termination, report.loss_before, report.loss_after
    );
    assert!(report.accepted && report.cg_iterations <= N);
    assert!(err < 1e-8);
    // A second step finds nothing left to reduce.
    let again = opt.step(&mut residual).unwrap();
    println!(
        "Gauss-Newton: gradient norm {:.3e} -> {:.3e}",
        report.grad_norm, again.grad_norm
    );
    assert!(again.grad_norm < 1e-8 * report.grad_norm);
}

/// Settings out of range and closures of the wrong kind give typed errors.
#[test]
fn typed_errors() {
    let theta = Var::zeros((3, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let bad = SteihaugConfig {
        radius_init: -1.0,
        ..Default::default()
    };
    assert!(matches!(
        Steihaug::new(vec![theta.clone()], bad),
        Err(optim::Error::InvalidConfig(_))
    ));
    let bad = GaussNewtonConfig {
        damping_increase: 0.5,
        ..Default::default()
    };
    assert!(matches!(
        GaussNewton::new(vec![theta.clone()], bad),
        Err(optim::Error::InvalidConfig(_))
    ));
    assert!(matches!(
        GaussNewton::new(vec![], GaussNewtonConfig::default()),
        Err(optim::Error::NoVariables)
    ));
    let mut opt = Steihaug::new(vec![theta.clone()], SteihaugConfig::default()).unwrap();
    let mut not_scalar = || theta.as_tensor().sqr();
    assert!(matches!(
        opt.step(&mut not_scalar),
        Err(optim::Error::NotScalar(_))
    ));
}

/// The serde config selects and builds either optimizer.
#[test]
fn config_selects_optimizer() {
    let cfg: optim::OptimizerConfig = serde_json::from_str(
        r#"{"kind": "steihaug", "objective": "residual", "radius_init": 0.5}"#,
    )
    .unwrap();
    let theta = Var::zeros((3, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let opt = cfg.build(vec![theta.clone()]).unwrap();
    assert_eq!(opt.closure_kind(), ClosureKind::Residual);
    let cfg: optim::OptimizerConfig = serde_json::from_str(r#"{"kind": "gauss-newton"}"#).unwrap();
    assert_eq!(
        cfg,
        optim::OptimizerConfig::GaussNewton(GaussNewtonConfig::default())
    );
    assert!(
        serde_json::from_str::<optim::OptimizerConfig>(r#"{"kind": "steihaug", "typo": 1}"#)
            .is_err()
    );
}

/// Rosenbrock `r(x, y) = (10 (y - x^2), 1 - x)`, minimiser (1, 1), from (-1.2, 1): both
/// converge; rejected steps leave the loss unchanged and shrink the radius / raise damping.
#[test]
fn rosenbrock_converges_from_classic_start() {
    let run = |opt_of: &dyn Fn(Var) -> Box<dyn SecondOrder>| {
        let p = Var::from_tensor(&Tensor::new(&[-1.2f64, 1.0], &Device::Cpu).unwrap()).unwrap();
        let mut opt = opt_of(p.clone());
        let mut residual = || {
            let (x, y) = (p.as_tensor().get(0)?, p.as_tensor().get(1)?);
            let r1 = ((y - x.sqr()?)? * 10.0)?;
            let r2 = x.affine(-1.0, 1.0)?;
            Tensor::stack(&[r1, r2], 0)
        };
        let (mut iters, mut rejected) = (0, 0);
        let mut prev_control = f64::NAN;
        while iters < 200 {
            let rep = opt.step(&mut residual).unwrap();
            iters += 1;
            let control = rep.radius.or(rep.damping).unwrap();
            if !rep.accepted {
                rejected += 1;
                assert_eq!(rep.loss_after, rep.loss_before);
                let tightened = if rep.radius.is_some() {
                    control < prev_control
                } else {
                    control > prev_control
                };
                assert!(prev_control.is_nan() || tightened);
            }
            prev_control = control;
            if rep.loss_after < 1e-20 {
                break;
            }
        }
        (flatten(std::slice::from_ref(&p)).unwrap(), iters, rejected)
    };
    let gn = run(&|v| Box::new(GaussNewton::new(vec![v], GaussNewtonConfig::default()).unwrap()));
    let st_cfg = SteihaugConfig {
        objective: ClosureKind::Residual,
        ..Default::default()
    };
    let st = run(&|v| Box::new(Steihaug::new(vec![v], st_cfg).unwrap()));
    println!(
        "Rosenbrock: Gauss-Newton {:?} in {} steps ({} rejected), Steihaug {:?} in {} steps ({} rejected)",
        gn.0, gn.1, gn.2, st.0, st.1, st.2
    );
    for (x, _, _) in [&gn, &st] {
        assert!(rel_err(x, &[1.0, 1.0]) < 1e-8);
    }
}
