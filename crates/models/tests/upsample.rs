//! `upsample_nearest` and `block_sum` against candle's own ops (values and gradients, f32 and
//! f64, over shapes and factors) and against finite differences.

use candle_core::{DType, Device, Tensor, Var};
use models::upsample::{block_sum, upsample_nearest};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// `sum(op(x) * r)` and its gradient in `x`.
fn loss_and_grad(
    x: &Tensor,
    r: &Tensor,
    op: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> (Tensor, Tensor) {
    let v = Var::from_tensor(x).unwrap();
    let y = op(v.as_tensor()).unwrap();
    let loss = (&y * r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    (y, grads.get(v.as_tensor()).unwrap().clone())
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let values = |t: &Tensor| -> Vec<f64> {
        let flat = t.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
        flat.to_vec1().unwrap()
    };
    let (a, b) = (values(a), values(b));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn random(dims: (usize, usize, usize, usize), dtype: DType, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = dims.0 * dims.1 * dims.2 * dims.3;
    let v: Vec<f64> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Values equal to candle's `upsample_nearest2d` bit for bit and to the reshape-and-sum
    /// composition of the block sum; gradients equal to candle's (its grouped convolution for the
    /// up-sampling, its broadcast for the sums) to rounding.
    #[test]
    fn ops_match_candle(
        n in 1usize..3,
        c in 1usize..4,
        h in 1usize..6,
        w in 1usize..6,
        s in 1usize..4,
        f64_ in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let dtype = if f64_ { DType::F64 } else { DType::F32 };
        let tol = if f64_ { 1e-12 } else { 1e-5 };
        let x = random((n, c, h, w), dtype, seed);
        let r = random((n, c, s * h, s * w), dtype, seed + 1);
        let (y, g) = loss_and_grad(&x, &r, |t| upsample_nearest(t, s));
        let (y_ref, g_ref) = loss_and_grad(&x, &r, |t| t.upsample_nearest2d(s * h, s * w));
        prop_assert_eq!(max_diff(&y, &y_ref), 0.0);
        prop_assert!(max_diff(&g, &g_ref) <= tol);

        let fine = random((n, c, s * h, s * w), dtype, seed + 2);
        let rc = random((n, c, h, w), dtype, seed + 3);
        let (z, gz) = loss_and_grad(&fine, &rc, |t| block_sum(t, s));
        let (z_ref, gz_ref) = loss_and_grad(&fine, &rc, |t| {
            t.reshape((n, c, h, s, w, s))?.sum(5)?.sum(3)
        });
        prop_assert!(max_diff(&z, &z_ref) <= tol * s as f64);
        prop_assert_eq!(max_diff(&gz, &gz_ref), 0.0);
    }
}

/// Central differences in f64 of `sum(op(x) * r)`, entry by entry.
fn finite_difference_check(x: &Tensor, r: &Tensor, op: impl Fn(&Tensor) -> Tensor) {
    let (_, g) = loss_and_grad(x, r, |t| Ok(op(t)));
    let g: Vec<f64> = g.flatten_all().unwrap().to_vec1().unwrap();
    let base: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let f = |v: &[f64]| -> f64 {
        let t = Tensor::from_slice(v, x.dims(), &Device::Cpu).unwrap();
        (op(&t) * r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let eps = 1e-6;
    for (k, &want) in g.iter().enumerate() {
        let (mut plus, mut minus) = (base.clone(), base.clone());
        plus[k] += eps;
        minus[k] -= eps;
        let fd = (f(&plus) - f(&minus)) / (2.0 * eps);
        assert!(
            (fd - want).abs() < 1e-6,
            "entry {k}: fd {fd}, gradient {want}"
        );
    }
}

#[test]
fn gradients_match_finite_differences() {
    let x = random((2, 2, 3, 2), DType::F64, 5);
    let r = random((2, 2, 6, 4), DType::F64, 6);
    finite_difference_check(&x, &r, |t| upsample_nearest(t, 2).unwrap());
    let fine = random((1, 2, 6, 9), DType::F64, 7);
    let rc = random((1, 2, 2, 3), DType::F64, 8);
    finite_difference_check(&fine, &rc, |t| block_sum(t, 3).unwrap());
}

/// The two ops are adjoint: `<up(x), y> = <x, sum(y)>`, and a strided (non-contiguous) input
/// gives the values of its contiguous copy.
#[test]
fn adjoint_and_strided_input() {
    let x = random((2, 3, 4, 5), DType::F64, 9);
    let y = random((2, 3, 8, 10), DType::F64, 10);
    let lhs = (upsample_nearest(&x, 2).unwrap() * &y)
        .unwrap()
        .sum_all()
        .unwrap();
    let rhs = (&x * block_sum(&y, 2).unwrap()).unwrap().sum_all().unwrap();
    let (lhs, rhs) = (
        lhs.to_scalar::<f64>().unwrap(),
        rhs.to_scalar::<f64>().unwrap(),
    );
    assert!((lhs - rhs).abs() < 1e-10, "{lhs} vs {rhs}");

    let strided = x.transpose(2, 3).unwrap();
    assert!(!strided.is_contiguous());
    let got = upsample_nearest(&strided, 2).unwrap();
    let want = upsample_nearest(&strided.contiguous().unwrap(), 2).unwrap();
    assert_eq!(max_diff(&got, &want), 0.0);
}

#[test]
fn bad_arguments_are_errors() {
    let x = random((1, 1, 4, 6), DType::F32, 11);
    assert!(upsample_nearest(&x, 0).is_err());
    assert!(block_sum(&x, 0).is_err());
    assert!(block_sum(&x, 4).is_err(), "6 is not a multiple of 4");
    let flat = x.flatten_all().unwrap();
    assert!(upsample_nearest(&flat, 2).is_err());
    assert!(block_sum(&flat, 2).is_err());
}

/// Planes large enough to be split over the rayon pool give candle's values too.
#[test]
fn large_tensors_split_over_threads_match_candle() {
    let x = random((2, 8, 64, 64), DType::F32, 12);
    let up = upsample_nearest(&x, 2).unwrap();
    assert_eq!(max_diff(&up, &x.upsample_nearest2d(128, 128).unwrap()), 0.0);
    let summed = block_sum(&up, 2).unwrap();
    let want = up
        .reshape((2, 8, 64, 2, 64, 2))
        .unwrap()
        .sum(5)
        .unwrap()
        .sum(3)
        .unwrap();
    assert!(max_diff(&summed, &want) < 1e-5);
    assert!(max_diff(&summed, &(x * 4.0).unwrap()) < 1e-5);
}
