//! Batch tensor transfers against the sparse operators, adjointness, `R P = I` to second
//! order, and differentiability.

use candle_core::{DType, Device, Tensor, Var};
use grids::sparse::{prolongation_matrix, restriction_matrix, SparseMatrix};
use grids::{prolong_with, restrict_with, Boundary, Prolongation, Restriction};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

const BOUNDARIES: [Boundary; 2] = [Boundary::Periodic, Boundary::Replicate];

/// Applies a sparse operator to every `[H, W]` image of an `[N, C, H, W]` f64 tensor.
fn apply_sparse(op: &SparseMatrix, x: &Tensor, out_side: usize) -> Tensor {
    let (n, c, _, _) = x.dims4().unwrap();
    let flat = x.reshape((n * c, ())).unwrap().to_vec2::<f64>().unwrap();
    let out: Vec<f64> = flat
        .iter()
        .flat_map(|img| op.matvec(img).unwrap())
        .collect();
    Tensor::from_vec(out, (n, c, out_side, out_side), &Device::Cpu).unwrap()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a * b)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Candle batch ops equal the explicit sparse operators, for both boundary rules.
    #[test]
    fn batch_ops_equal_sparse_operators(seed in 0u64..1000, half in 2usize..6) {
        let n = 2 * half;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut random = |side: usize| {
            let v: Vec<f64> = (0..6 * side * side).map(|_| rng.random_range(-1.0..1.0)).collect();
            Tensor::from_vec(v, (2, 3, side, side), &Device::Cpu).unwrap()
        };
        let (x, xc) = (random(n), random(half));
        for b in BOUNDARIES {
            for r in Restriction::ALL {
                let reference = apply_sparse(&restriction_matrix(r, n, b).unwrap(), &x, half);
                let err = max_abs(&restrict_with(&x, r, b).unwrap(), &reference);
                prop_assert!(err < 1e-13, "{} {:?}: {}", r, b, err);
            }
            for p in Prolongation::ALL {
                let reference = apply_sparse(&prolongation_matrix(p, half, b).unwrap(), &xc, n);
                let err = max_abs(&prolong_with(&xc, p, b).unwrap(), &reference);
                prop_assert!(err < 1e-13, "{} {:?}: {}", p, b, err);
            }
        }
    }
}

/// With replicate padding, bilinear prolongation is PyTorch's
/// `F.interpolate(scale_factor=2, mode="bilinear", align_corners=False)`, written out here
/// from its source-coordinate formula `src = max((d + 1/2)/2 - 1/2, 0)`.
#[test]
fn replicate_bilinear_matches_align_corners_false() {
    let m = 5;
    let x = Tensor::randn(0f64, 1., (1, 1, m, m), &Device::Cpu).unwrap();
    let xs = x.reshape((m, m)).unwrap().to_vec2::<f64>().unwrap();
    let lerp = |d: usize| {
        let src = ((d as f64 + 0.5) / 2.0 - 0.5).max(0.0);
        let i0 = src.floor() as usize;
        (i0, (i0 + 1).min(m - 1), src - i0 as f64)
    };
    let y = prolong_with(&x, Prolongation::Bilinear, Boundary::Replicate).unwrap();
    let y = y.reshape((2 * m, 2 * m)).unwrap().to_vec2::<f64>().unwrap();
    for (di, y_row) in y.iter().enumerate() {
        for (dj, &got) in y_row.iter().enumerate() {
            let ((a0, a1, la), (b0, b1, lb)) = (lerp(di), lerp(dj));
            let row = |i: usize| (1.0 - lb) * xs[i][b0] + lb * xs[i][b1];
            let expect = (1.0 - la) * row(a0) + la * row(a1);
            assert!((got - expect).abs() < 1e-14, "({di},{dj})");
        }
    }
}

/// `<R x, y>_H = c <x, P y>_h` holds exactly (periodic) for the two adjoint pairs, with
/// `c = 1/4` (`P_const = 4 R_avg^T`, `P_bilinear = 4 R_fw^T`), and for no `c` otherwise.
#[test]
fn adjoint_pairs_and_their_scaling() {
    let n = 8;
    for r in Restriction::ALL {
        for p in Prolongation::ALL {
            let rt = restriction_matrix(r, n, Boundary::Periodic)
                .unwrap()
                .to_dense()
                .transpose();
            let pm = prolongation_matrix(p, n / 2, Boundary::Periodic)
                .unwrap()
                .to_dense();
            let quarter = grids::Matrix::from_vec(
                pm.rows(),
                pm.cols(),
                pm.data().iter().map(|v| v / 4.0).collect(),
            )
            .unwrap();
            let adjoint = rt.max_abs_diff(&quarter) < 1e-15;
            let expected = matches!(
                (r, p),
                (Restriction::Average, Prolongation::Constant)
                    | (Restriction::FullWeighting, Prolongation::Bilinear)
            );
            assert_eq!(adjoint, expected, "{r} + {p}");
            // Not adjoint for any other scaling either: R^T and P are not proportional.
            if !expected {
                let ratios: Vec<f64> = rt
                    .data()
                    .iter()
                    .zip(pm.data())
                    .filter(|(a, b)| **a != 0.0 || **b != 0.0)
                    .map(|(a, b)| a / b)
                    .collect();
                assert!(
                    ratios
                        .windows(2)
                        .any(|w| (w[0] - w[1]).abs() > 1e-12 || !w[0].is_finite()),
                    "{r} + {p}"
                );
            }
        }
    }
}

/// The same identity through the batch ops and autograd: `d/dx <R x, y> = R^T y = P y / 4`.
#[test]
fn autograd_of_restriction_is_scaled_prolongation() {
    let x = Var::randn(0f64, 1., (2, 2, 8, 8), &Device::Cpu).unwrap();
    let y = Tensor::randn(0f64, 1., (2, 2, 4, 4), &Device::Cpu).unwrap();
    for (r, p) in [
        (Restriction::Average, Prolongation::Constant),
        (Restriction::FullWeighting, Prolongation::Bilinear),
    ] {
        let rx = restrict_with(x.as_tensor(), r, Boundary::Periodic).unwrap();
        let grads = (&rx * &y).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap();
        let py = (prolong_with(&y, p, Boundary::Periodic).unwrap() / 4.0).unwrap();
        assert!(max_abs(g, &py) < 1e-14, "{r} + {p}");
        let lhs = dot(&rx, &y);
        let rhs = dot(x.as_tensor(), &py);
        assert!((lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0));
    }
    // Prolongation is differentiable too (transpose: <P y, x> gradient = P^T x = 4 R x).
    let yv = Var::from_tensor(&y).unwrap();
    let px = prolong_with(yv.as_tensor(), Prolongation::Bilinear, Boundary::Periodic).unwrap();
    let grads = (&px * x.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let four_rx = (restrict_with(
        x.as_tensor(),
        Restriction::FullWeighting,
        Boundary::Periodic,
    )
    .unwrap()
        * 4.0)
        .unwrap();
    assert!(max_abs(grads.get(yv.as_tensor()).unwrap(), &four_rx) < 1e-13);
}

/// A smooth periodic field sampled at the cell centres of an `m x m` grid.
fn smooth(m: usize) -> Tensor {
    use std::f64::consts::PI;
    let h = 1.0 / m as f64;
    let v: Vec<f64> = (0..m * m)
        .map(|k| {
            let (y, x) = (((k / m) as f64 + 0.5) * h, ((k % m) as f64 + 0.5) * h);
            (2.0 * PI * x).sin() * (2.0 * PI * y).cos() + 0.3 * (4.0 * PI * (x + y)).cos()
        })
        .collect();
    Tensor::from_vec(v, (1, 1, m, m), &Device::Cpu).unwrap()
}

/// `max |R P u_H - u_H|` on a coarse `m x m` grid.
fn rp_error(r: Restriction, p: Prolongation, m: usize) -> f64 {
    let u = smooth(m);
    let up = prolong_with(&u, p, Boundary::Periodic).unwrap();
    max_abs(&restrict_with(&up, r, Boundary::Periodic).unwrap(), &u)
}

/// `R P = I` on smooth data: second order for the default pair (`R P = I + Δ_H/8`) and for
/// full weighting with either `P`; first order for injection + bilinear (a quarter-cell
/// shift); exact where `P` is constant and `R` average or injection.
#[test]
fn rp_is_identity_to_second_order() {
    for r in Restriction::ALL {
        for p in Prolongation::ALL {
            let (e1, e2) = (rp_error(r, p, 32), rp_error(r, p, 64));
            let rate = (e1 / e2).log2();
            eprintln!("R P - I, {r} + {p}: err(H=1/32) = {e1:.3e}, err(H=1/64) = {e2:.3e}, rate {rate:.3}");
            match (r, p) {
                (Restriction::Injection | Restriction::Average, Prolongation::Constant) => {
                    assert!(e1 < 1e-14 && e2 < 1e-14)
                }
                (Restriction::Injection, Prolongation::Bilinear) => {
                    assert!((rate - 1.0).abs() < 0.1)
                }
                _ => assert!((rate - 2.0).abs() < 0.05, "{r} + {p}: rate {rate}"),
            }
        }
    }
    // The default pair's P R on the fine mesh is second order too.
    let pr = |n: usize| {
        let u = smooth(n);
        let c = restrict_with(&u, Restriction::Average, Boundary::Periodic).unwrap();
        max_abs(
            &prolong_with(&c, Prolongation::Bilinear, Boundary::Periodic).unwrap(),
            &u,
        )
    };
    let rate = (pr(64) / pr(128)).log2();
    eprintln!("P R - I, average + bilinear: rate {rate:.3}");
    assert!((rate - 2.0).abs() < 0.05);
}

#[test]
fn bad_shapes_are_errors_and_f32_works() {
    let odd = Tensor::zeros((1, 1, 5, 4), DType::F32, &Device::Cpu).unwrap();
    for r in Restriction::ALL {
        assert!(restrict_with(&odd, r, Boundary::Replicate).is_err());
    }
    let x3 = Tensor::zeros((1, 4, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(restrict_with(&x3, Restriction::Average, Boundary::Replicate).is_err());
    assert!(prolong_with(&x3, Prolongation::Bilinear, Boundary::Replicate).is_err());
    let x = Tensor::rand(0f32, 1., (2, 3, 6, 6), &Device::Cpu).unwrap();
    for r in Restriction::ALL {
        let y = grids::restrict(&x, r).unwrap();
        assert_eq!((y.dims(), y.dtype()), (&[2, 3, 3, 3][..], DType::F32));
    }
    for p in Prolongation::ALL {
        assert_eq!(grids::prolong(&x, p).unwrap().dims(), &[2, 3, 12, 12]);
    }
}

#[test]
fn names_parse() {
    for r in Restriction::ALL {
        assert_eq!(r.name().parse::<Restriction>().unwrap(), r);
    }
    for p in Prolongation::ALL {
        assert_eq!(p.name().parse::<Prolongation>().unwrap(), p);
    }
    assert_eq!(
        "full-weighting".parse::<Restriction>().unwrap(),
        Restriction::FullWeighting
    );
    assert!(matches!(
        "bicubic".parse::<Prolongation>(),
        Err(grids::Error::UnknownName { .. })
    ));
    assert_eq!(Restriction::default(), Restriction::Average);
    assert_eq!(Prolongation::default(), Prolongation::Bilinear);
}
