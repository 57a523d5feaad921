//! Matrix-free products: `J v` by finite differences and `J^T w` by backward against exact
//! Jacobians; flattening round trips.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{gaussian, random_matrix, rel_err};
use optim::fd::{central_difference, default_rel_step};
use optim::flat::{assign, flatten, num_params, unflatten};
use optim::gauss_newton::{jacobian_transpose_vector, jacobian_vector};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Linear model `f = A1 theta1 + A2 vec(theta2)` with `theta2` a 2x3 matrix: `J = [A1 A2]`.
struct Linear {
    a1: Tensor,
    a2: Tensor,
    vars: Vec<Var>,
    j: common::Dense,
}

fn linear(dtype: DType) -> Linear {
    let dev = Device::Cpu;
    let (m, n1, n2) = (7, 4, 6);
    let a1 = random_matrix(1, m, n1);
    let a2 = random_matrix(2, m, n2);
    let mut rng = StdRng::seed_from_u64(3);
    let t1 = Var::from_tensor(
        &Tensor::from_vec(gaussian(&mut rng, n1), (n1, 1), &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap(),
    )
    .unwrap();
    let t2 = Var::from_tensor(
        &Tensor::from_vec(gaussian(&mut rng, n2), (2, 3), &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap(),
    )
    .unwrap();
    let mut j = vec![0.0; m * (n1 + n2)];
    for i in 0..m {
        j[i * (n1 + n2)..i * (n1 + n2) + n1].copy_from_slice(&a1.a[i * n1..(i + 1) * n1]);
        j[i * (n1 + n2) + n1..(i + 1) * (n1 + n2)].copy_from_slice(&a2.a[i * n2..(i + 1) * n2]);
    }
    let to_t = |d: &common::Dense| {
        Tensor::from_vec(d.a.clone(), (d.rows, d.cols), &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    };
    Linear {
        a1: to_t(&a1),
        a2: to_t(&a2),
        vars: vec![t1, t2],
        j: common::Dense {
            rows: m,
            cols: n1 + n2,
            a: j,
        },
    }
}

impl Linear {
    fn forward(&self) -> candle_core::Result<Tensor> {
        let v2 = self.vars[1].as_tensor().reshape((6, 1))?;
        self.a1.matmul(self.vars[0].as_tensor())? + self.a2.matmul(&v2)?
    }
}

#[test]
fn flatten_roundtrip_and_errors() {
    let lin = linear(DType::F32);
    let theta = flatten(&lin.vars).unwrap();
    assert_eq!(theta.len(), num_params(&lin.vars));
    let shifted: Vec<f64> = theta.iter().map(|t| f64::from((t + 0.25) as f32)).collect();
    assign(&lin.vars, &shifted).unwrap();
    assert_eq!(flatten(&lin.vars).unwrap(), shifted);
    let parts = unflatten(&lin.vars, &shifted).unwrap();
    assert_eq!(parts[1].dims(), &[2, 3]);
    assert_eq!(parts[1].dtype(), DType::F32);
    assert!(matches!(
        assign(&lin.vars, &theta[1..]),
        Err(optim::Error::LengthMismatch { .. })
    ));
}

/// On a linear model FD `J v` equals the exact `J v` up to rounding, in f64 and f32, and
/// backward `J^T w` equals the exact `J^T w`; the variables are restored.
#[test]
fn jv_and_jtw_match_exact_jacobian_of_linear_model() {
    for (dtype, tol) in [(DType::F64, 1e-9), (DType::F32, 1e-4)] {
        let lin = linear(dtype);
        let theta = flatten(&lin.vars).unwrap();
        let mut rng = StdRng::seed_from_u64(11);
        let v = gaussian(&mut rng, theta.len());
        let mut fwd = || lin.forward();
        let jv =
            jacobian_vector(&lin.vars, &mut fwd, &theta, &v, default_rel_step(&lin.vars)).unwrap();
        let exact = lin.j.matvec(&v);
        println!(
            "{dtype:?}: FD J v relative error {:.2e}",
            rel_err(&jv, &exact)
        );
        assert!(rel_err(&jv, &exact) < tol);
        assert_eq!(flatten(&lin.vars).unwrap(), theta);

        let w = gaussian(&mut rng, lin.j.rows);
        let out = lin.forward().unwrap();
        let jtw = jacobian_transpose_vector(&out, &lin.vars, &w).unwrap();
        let exact_t = lin.j.transpose_matvec(&w);
        assert!(
            rel_err(&jtw, &exact_t) < tol.max(1e-6),
            "J^T w error {}",
            rel_err(&jtw, &exact_t)
        );
    }
}

/// On a nonlinear model (tanh layer) the central difference converges at second order to the
/// exact `J v` (rows of `J` from reverse mode): halving `h` divides the error by about 4.
#[test]
fn jv_central_difference_is_second_order() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(5);
    let w1 =
        Var::from_tensor(&Tensor::from_vec(gaussian(&mut rng, 12), (4, 3), &dev).unwrap()).unwrap();
    let w2 =
        Var::from_tensor(&Tensor::from_vec(gaussian(&mut rng, 8), (2, 4), &dev).unwrap()).unwrap();
    let x = Tensor::from_vec(gaussian(&mut rng, 15), (3, 5), &dev).unwrap();
    let vars = vec![w1.clone(), w2.clone()];
    let forward = || w2.as_tensor().matmul(&w1.as_tensor().matmul(&x)?.tanh()?);
    let out = forward().unwrap();
    let m = out.elem_count();
    let theta = flatten(&vars).unwrap();
    let v = gaussian(&mut rng, theta.len());
    // Exact J v = sum_i e_i (J^T e_i)^T v.
    let exact: Vec<f64> = (0..m)
        .map(|i| {
            let mut e = vec![0.0; m];
            e[i] = 1.0;
            let row = jacobian_transpose_vector(&out, &vars, &e).unwrap();
            optim::vector::dot(&row, &v)
        })
        .collect();
    let err = |h: f64| {
        let fd = central_difference(&vars, &theta, &v, h, || {
            Ok(forward()?.flatten_all()?.to_vec1::<f64>()?)
        })
        .unwrap();
        rel_err(&fd, &exact)
    };
    let (e1, e2, e3) = (err(4e-2), err(2e-2), err(1e-2));
    println!(
        "FD J v error at h = 4e-2, 2e-2, 1e-2: {e1:.3e} {e2:.3e} {e3:.3e}; ratios {:.2} {:.2}",
        e1 / e2,
        e2 / e3
    );
    assert!((3.5..4.5).contains(&(e1 / e2)) && (3.5..4.5).contains(&(e2 / e3)));
    let mut fwd = forward;
    let default = jacobian_vector(&vars, &mut fwd, &theta, &v, default_rel_step(&vars)).unwrap();
    println!(
        "FD J v error at the default step: {:.3e}",
        rel_err(&default, &exact)
    );
    assert!(rel_err(&default, &exact) < 1e-8);
}
