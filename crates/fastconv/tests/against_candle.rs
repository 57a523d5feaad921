//! Our conv2d against candle's `conv2d` (forward) and candle's autograd (backward), for random
//! shapes, strides, paddings and group counts; finite differences on tiny cases in f64 and f32.

use candle_core::{DType, Device, Result, Tensor, Var};
use proptest::prelude::*;

/// Deterministic pseudo-random values in [-1, 1) from a seed (splitmix64).
fn values(seed: u64, len: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn tensor(seed: u64, dims: &[usize], dtype: DType) -> Result<Tensor> {
    let n = dims.iter().product();
    Tensor::from_vec(values(seed, n), dims, &Device::Cpu)?.to_dtype(dtype)
}

/// `max |a - b| / (1 + max |b|)`.
fn rel_err(a: &Tensor, b: &Tensor) -> Result<f64> {
    assert_eq!(a.dims(), b.dims());
    let diff = (a - b)?
        .abs()?
        .max_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    let scale = b
        .abs()?
        .max_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(diff / (1.0 + scale))
}

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    cg: usize,
    og: usize,
    groups: usize,
    h: usize,
    w: usize,
    k: usize,
    pad: usize,
    stride: usize,
    seed: u64,
}

impl Case {
    fn x_dims(&self) -> [usize; 4] {
        [self.n, self.cg * self.groups, self.h, self.w]
    }
    fn w_dims(&self) -> [usize; 4] {
        [self.og * self.groups, self.cg, self.k, self.k]
    }
}

/// Dense (groups 1), grouped (2-3 groups) and depthwise (groups = C, multiplier 1-2) cases with
/// kernels 1, 3, 5, 9, strides 1, 2, paddings 0..=k/2+1; `square` forces H = W.
fn cases(square: bool) -> impl Strategy<Value = Case> {
    let channels = prop_oneof![
        (1usize..=6, 1usize..=6).prop_map(|(cg, og)| (cg, og, 1usize)),
        (1usize..=3, 1usize..=3, 2usize..=3).prop_map(|(cg, og, g)| (cg, og, g)),
        (1usize..=2, 2usize..=8).prop_map(|(og, g)| (1usize, og, g)),
    ];
    let kernel = prop::sample::select(vec![1usize, 3, 3, 5, 9]);
    (
        channels,
        kernel,
        1usize..=3,
        1usize..=2,
        0usize..=12,
        0usize..=12,
        0usize..=2,
        any::<u64>(),
    )
        .prop_map(
            move |((cg, og, groups), k, n, stride, h, w, pad_extra, seed)| {
                let pad = (k / 2 + pad_extra).saturating_sub(1).min(k / 2 + 1);
                let min = k.saturating_sub(2 * pad).max(1);
                let h = h.max(min);
                let w = if square { h } else { w.max(min) };
                Case {
                    n,
                    cg,
                    og,
                    groups,
                    h,
                    w,
                    k,
                    pad,
                    stride,
                    seed,
                }
            },
        )
}

fn check_forward(c: &Case, dtype: DType) -> Result<f64> {
    let x = tensor(c.seed, &c.x_dims(), dtype)?;
    let w = tensor(c.seed ^ 1, &c.w_dims(), dtype)?;
    let ours = fastconv::conv2d(&x, &w, c.pad, c.stride, c.groups)?;
    let theirs = x.conv2d(&w, c.pad, c.stride, 1, c.groups)?;
    rel_err(&ours, &theirs)
}

/// Gradients of `sum(conv(x, w) * r)` wrt `x` and `w` by `conv`.
fn grads(c: &Case, conv: impl Fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<(Tensor, Tensor)> {
    let x = Var::from_tensor(&tensor(c.seed, &c.x_dims(), DType::F32)?)?;
    let w = Var::from_tensor(&tensor(c.seed ^ 1, &c.w_dims(), DType::F32)?)?;
    let y = conv(&x, &w)?;
    let r = tensor(c.seed ^ 2, y.dims(), DType::F32)?;
    let g = (y * r)?.sum_all()?.backward()?;
    let gx = g
        .get(&x)
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("no grad x".into()))?;
    let gw = g
        .get(&w)
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("no grad w".into()))?;
    Ok((gx, gw))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn forward_matches_candle(c in cases(false)) {
        prop_assert!(check_forward(&c, DType::F32).unwrap() < 1e-5, "f32 {c:?}");
        prop_assert!(check_forward(&c, DType::F64).unwrap() < 1e-12, "f64 {c:?}");
    }

    #[test]
    fn backward_matches_candle_autograd(c in cases(true)) {
        let (ours_x, ours_w) = grads(&c, |x, w| fastconv::conv2d(x, w, c.pad, c.stride, c.groups)).unwrap();
        let (ref_x, ref_w) = grads(&c, |x, w| x.conv2d(w, c.pad, c.stride, 1, c.groups)).unwrap();
        prop_assert!(rel_err(&ours_x, &ref_x).unwrap() < 1e-5, "grad x {c:?}");
        prop_assert!(rel_err(&ours_w, &ref_w).unwrap() < 1e-5, "grad w {c:?}");
    }
}

/// Central differences of `L = sum(conv(x, w) r)` in every entry of `x` and `w`, against our
/// backward; rectangular images, stride 2, two groups. L is bilinear, so the difference
/// quotient is exact up to rounding.
fn finite_differences(dtype: DType, eps: f64, tol: f64) -> Result<()> {
    let c = Case {
        n: 2,
        cg: 2,
        og: 2,
        groups: 2,
        h: 5,
        w: 6,
        k: 3,
        pad: 1,
        stride: 2,
        seed: 7,
    };
    let x = Var::from_tensor(&tensor(c.seed, &c.x_dims(), dtype)?)?;
    let w = Var::from_tensor(&tensor(c.seed ^ 1, &c.w_dims(), dtype)?)?;
    let loss = |x: &Tensor, w: &Tensor, r: &Tensor| -> Result<f64> {
        let y = fastconv::conv2d(x, w, c.pad, c.stride, c.groups)?;
        (y * r)?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()
    };
    let y = fastconv::conv2d(&x, &w, c.pad, c.stride, c.groups)?;
    let r = tensor(c.seed ^ 2, y.dims(), dtype)?;
    let g = (y * &r)?.sum_all()?.backward()?;
    for (var, other, is_x) in [(&x, &w, true), (&w, &x, false)] {
        let base = var.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let grad = g
            .get(var)
            .expect("grad")
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        for i in 0..base.len() {
            let shifted = |d: f64| -> Result<f64> {
                let mut v = base.clone();
                v[i] += d;
                let t = Tensor::from_vec(v, var.dims(), &Device::Cpu)?.to_dtype(dtype)?;
                if is_x {
                    loss(&t, other, &r)
                } else {
                    loss(other, &t, &r)
                }
            };
            let fd = (shifted(eps)? - shifted(-eps)?) / (2.0 * eps);
            assert!(
                (fd - grad[i]).abs() <= tol * (1.0 + fd.abs()),
                "{dtype:?} x={is_x} i={i}: fd {fd} vs {}",
                grad[i]
            );
        }
    }
    Ok(())
}

#[test]
fn gradients_match_finite_differences_f64() -> Result<()> {
    finite_differences(DType::F64, 1e-4, 1e-9)
}

#[test]
fn gradients_match_finite_differences_f32() -> Result<()> {
    finite_differences(DType::F32, 1e-2, 2e-3)
}

/// Images large enough to be cut into several im2col bands, one image (GEMM-parallel path)
/// and four (batch-parallel path), against candle forward and backward.
#[test]
fn banded_large_images_match_candle() -> Result<()> {
    for (n, stride) in [(1, 1), (4, 2)] {
        let c = Case {
            n,
            cg: 32,
            og: 8,
            groups: 1,
            h: 64,
            w: 64,
            k: 3,
            pad: 1,
            stride,
            seed: 11,
        };
        assert!(check_forward(&c, DType::F32)? < 1e-5);
        let (ox, ow) = grads(&c, |x, w| fastconv::conv2d(x, w, c.pad, c.stride, 1))?;
        let (rx, rw) = grads(&c, |x, w| x.conv2d(w, c.pad, c.stride, 1, 1))?;
        assert!(rel_err(&ox, &rx)? < 1e-5 && rel_err(&ow, &rw)? < 1e-5);
    }
    Ok(())
}

/// Strided (non-contiguous) inputs give the same result as their contiguous copies.
#[test]
fn non_contiguous_input() -> Result<()> {
    let x = tensor(3, &[2, 3, 7, 9], DType::F32)?.transpose(2, 3)?;
    let w = tensor(4, &[4, 3, 3, 3], DType::F32)?;
    let a = fastconv::conv2d(&x, &w, 1, 1, 1)?;
    let b = fastconv::conv2d(&x.contiguous()?, &w, 1, 1, 1)?;
    assert_eq!(rel_err(&a, &b)?, 0.0);
    Ok(())
}

/// Bad shapes are errors, not panics.
#[test]
fn bad_shapes_are_errors() -> Result<()> {
    let x = tensor(1, &[1, 4, 5, 5], DType::F32)?;
    assert!(fastconv::conv2d(&x, &tensor(2, &[2, 3, 3, 3], DType::F32)?, 1, 1, 1).is_err());
    assert!(fastconv::conv2d(&x, &tensor(2, &[2, 2, 3, 3], DType::F32)?, 1, 1, 3).is_err());
    assert!(fastconv::conv2d(&x, &tensor(2, &[2, 4, 9, 9], DType::F32)?, 0, 1, 1).is_err());
    assert!(fastconv::conv2d(&x, &tensor(2, &[2, 4, 3, 3], DType::F32)?, 1, 0, 1).is_err());
    assert!(fastconv::conv2d(
        &x.flatten_all()?,
        &tensor(2, &[2, 4, 3, 3], DType::F32)?,
        1,
        1,
        1
    )
    .is_err());
    Ok(())
}
