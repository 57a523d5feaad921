//! The fused `act(GN(x + shift))` op against candle's composition of the same formulas (values
//! and gradients in f32 and f64, random shapes) and against central finite differences (f64).

use candle_core::{DType, Device, Result, Tensor, Var};
use models::fused_norm::{composed, group_norm_act, NormAct};
use proptest::prelude::*;

/// Deterministic values in [-1, 1) from a seed (splitmix64).
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

fn var(seed: u64, dims: &[usize], dtype: DType) -> Result<Var> {
    let n = dims.iter().product();
    Var::from_tensor(&Tensor::from_vec(values(seed, n), dims, &Device::Cpu)?.to_dtype(dtype)?)
}

/// `max |a - b| / (1 + max |b|)`.
fn rel_err(a: &Tensor, b: &Tensor) -> Result<f64> {
    assert_eq!(a.dims(), b.dims());
    let a = a.to_dtype(DType::F64)?;
    let b = b.to_dtype(DType::F64)?;
    let diff = (&a - &b)?.abs()?.max_all()?.to_scalar::<f64>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f64>()?;
    Ok(diff / (1.0 + scale))
}

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    groups: usize,
    cg: usize,
    h: usize,
    w: usize,
    shift: bool,
    affine: bool,
    act: NormAct,
    seed: u64,
}

/// Random cases with planes of `side` x `side` (each side drawn from the range).
fn cases(side: std::ops::Range<usize>) -> impl Strategy<Value = Case> {
    let act = prop_oneof![
        Just(NormAct::Identity),
        Just(NormAct::Silu),
        Just(NormAct::LeakyRelu(0.2)),
        Just(NormAct::LeakyRelu(0.0)),
    ];
    (
        1usize..4,
        1usize..4,
        1usize..4,
        side.clone(),
        side,
        any::<bool>(),
        any::<bool>(),
        act,
        any::<u64>(),
    )
        .prop_map(|(n, groups, cg, h, w, shift, affine, act, seed)| Case {
            n,
            groups,
            cg,
            h,
            w,
            shift,
            affine,
            act,
            seed,
        })
}

type Vars = (Var, Option<Var>, Option<(Var, Var)>);

fn vars(c: &Case, dtype: DType) -> Result<Vars> {
    let ch = c.groups * c.cg;
    let x = var(c.seed, &[c.n, ch, c.h, c.w], dtype)?;
    let shift = if c.shift {
        Some(var(c.seed ^ 1, &[c.n, ch], dtype)?)
    } else {
        None
    };
    let affine = if c.affine {
        // gamma around 1 so that the activation's kinks are exercised on both sides.
        let g = Var::from_tensor(&(var(c.seed ^ 2, &[ch], dtype)?.as_tensor() + 1.0)?)?;
        Some((g, var(c.seed ^ 3, &[ch], dtype)?))
    } else {
        None
    };
    Ok((x, shift, affine))
}

type NormFn =
    fn(&Tensor, Option<&Tensor>, Option<(&Tensor, &Tensor)>, usize, f64, NormAct) -> Result<Tensor>;

/// Output and the gradients of `sum(y r)` (`r` fixed, random) with respect to every variable.
fn run(f: NormFn, c: &Case, v: &Vars, dtype: DType) -> Result<Vec<Tensor>> {
    let (x, shift, affine) = v;
    let y = f(
        x.as_tensor(),
        shift.as_ref().map(|s| s.as_tensor()),
        affine.as_ref().map(|(g, b)| (g.as_tensor(), b.as_tensor())),
        c.groups,
        1e-5,
        c.act,
    )?;
    let r = var(c.seed ^ 4, y.dims(), dtype)?;
    let grads = (&y * r.as_tensor())?.sum_all()?.backward()?;
    let mut out = vec![y];
    let mut all = vec![x];
    all.extend(shift.iter());
    if let Some((g, b)) = affine {
        all.extend([g, b]);
    }
    for v in all {
        out.push(grads.get(v).expect("gradient of every variable").clone());
    }
    Ok(out)
}

fn check(c: &Case, dtype: DType, tol: f64) -> Result<()> {
    let v = vars(c, dtype)?;
    let fused = run(group_norm_act, c, &v, dtype)?;
    let reference = run(composed, c, &v, dtype)?;
    for (i, (a, b)) in fused.iter().zip(&reference).enumerate() {
        let mut e = rel_err(a, b)?;
        if c.shift && i == 2 {
            // `dshift[n, c] = sum_pixels dx[n, c]`: where the norm removes the shift (one
            // channel per group), that sum cancels to 0 and its rounding scales with the
            // summands `|dx|`, not with the sum (f32 failed at 4.9e-4 / (1 + 0) for a group
            // of two nearly equal values). Measured against `1 + max_{n, c} sum_pixels |dx|`.
            let summands = reference[1].abs()?.sum((2, 3))?;
            let scale = summands
                .to_dtype(DType::F64)?
                .max_all()?
                .to_scalar::<f64>()?;
            let diff = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?
                .abs()?
                .max_all()?
                .to_scalar::<f64>()?;
            e = e.min(diff / (1.0 + scale));
        }
        assert!(
            e < tol,
            "{c:?} {dtype:?}: output {i} (0 = y, then dx, dshift, dgamma, dbeta) differs by {e}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_candle_composition_f64(c in cases(1..6)) {
        check(&c, DType::F64, 1e-10).unwrap();
    }

    #[test]
    fn matches_candle_composition_f32(c in cases(1..6)) {
        check(&c, DType::F32, 2e-4).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Planes of 144-1521 values: the kernels' sums run over many rounds of their 16 partial
    /// sums, with remainders (the cases above reach at most one round).
    #[test]
    fn large_planes_match_candle_composition(c in cases(12..40), f64_too in any::<bool>()) {
        check(&c, DType::F32, 2e-4).unwrap();
        if f64_too {
            check(&c, DType::F64, 1e-10).unwrap();
        }
    }
}

/// Central differences of `L = sum(y r)` in f64 for every input element.
#[test]
fn gradients_match_finite_differences() {
    for act in [NormAct::Silu, NormAct::LeakyRelu(0.2), NormAct::Identity] {
        let c = Case {
            n: 2,
            groups: 2,
            cg: 2,
            h: 3,
            w: 2,
            shift: true,
            affine: true,
            act,
            seed: 7,
        };
        let v = vars(&c, DType::F64).unwrap();
        let analytic = run(group_norm_act, &c, &v, DType::F64).unwrap();
        let (x, shift, affine) = &v;
        let (g, b) = affine.as_ref().unwrap();
        let s = shift.as_ref().unwrap();
        let loss = || -> f64 {
            let y = group_norm_act(
                x.as_tensor(),
                Some(s.as_tensor()),
                Some((g.as_tensor(), b.as_tensor())),
                2,
                1e-5,
                act,
            )
            .unwrap();
            let r = var(c.seed ^ 4, y.dims(), DType::F64).unwrap();
            (&y * r.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        for (k, p) in [x, s, g, b].into_iter().enumerate() {
            let base = p
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let want = analytic[k + 1]
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            for i in 0..base.len() {
                let h = 1e-6;
                let at = |d: f64| {
                    let mut vals = base.clone();
                    vals[i] += d;
                    p.set(&Tensor::from_vec(vals, p.shape(), &Device::Cpu).unwrap())
                        .unwrap();
                    loss()
                };
                let fd = (at(h) - at(-h)) / (2.0 * h);
                p.set(&Tensor::from_vec(base.clone(), p.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                assert!(
                    (fd - want[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{act:?} arg {k} elem {i}: fd {fd} vs {}",
                    want[i]
                );
            }
        }
    }
}

/// Shapes the models use (UNet widths with 16 groups, the ResNet's layer norm) at a coarse mesh.
#[test]
fn model_shapes_match() {
    for (groups, cg, act) in [
        (16, 2, NormAct::Silu),
        (1, 16, NormAct::LeakyRelu(0.2)),
        (8, 1, NormAct::Identity),
    ] {
        let c = Case {
            n: 3,
            groups,
            cg,
            h: 8,
            w: 8,
            shift: true,
            affine: groups > 1,
            act,
            seed: 3,
        };
        check(&c, DType::F32, 2e-4).unwrap();
        check(&c, DType::F64, 1e-10).unwrap();
    }
}

#[test]
fn rejects_groups_that_do_not_divide_channels() {
    let x = Tensor::zeros((1, 6, 2, 2), DType::F32, &Device::Cpu).unwrap();
    assert!(group_norm_act(&x, None, None, 4, 1e-5, NormAct::Identity).is_err());
}

/// The backward reuses the statistics its forward kept: a second backward through the same
/// graph, and a fresh forward + backward, give the same gradients bit for bit.
#[test]
fn backward_with_kept_statistics_is_repeatable() {
    for dtype in [DType::F32, DType::F64] {
        let x = var(1, &[2, 8, 5, 5], dtype).unwrap();
        let s = var(2, &[2, 8], dtype).unwrap();
        let (g, b) = (var(3, &[8], dtype).unwrap(), var(4, &[8], dtype).unwrap());
        let w = var(5, &[2, 8, 5, 5], dtype).unwrap();
        let grads = || {
            let y = group_norm_act(&x, Some(&s), Some((&g, &b)), 4, 1e-5, NormAct::Silu).unwrap();
            (y * w.as_tensor()).unwrap().sum_all().unwrap()
        };
        let flat = |loss: &Tensor| -> Vec<Vec<f64>> {
            let store = loss.backward().unwrap();
            [&x, &s, &g, &b]
                .iter()
                .map(|v| {
                    let t = store.get(v.as_tensor()).unwrap();
                    t.to_dtype(DType::F64)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap()
                })
                .collect()
        };
        let loss = grads();
        let first = flat(&loss);
        assert_eq!(first, flat(&loss), "{dtype:?}: second backward");
        assert_eq!(first, flat(&grads()), "{dtype:?}: fresh forward");
    }
}

/// The cases CI drew: one channel per group and two values per group, so that the shift's
/// gradient is a sum that cancels to 0 (checked against its summands, see `check`).
#[test]
fn cancelling_shift_gradients_match_in_f32() {
    for (affine, seed) in [(true, 11489822639226311746), (false, 11484212288576302921)] {
        let c = Case {
            n: 3,
            groups: 3,
            cg: 1,
            h: 1,
            w: 2,
            shift: true,
            affine,
            act: NormAct::Identity,
            seed,
        };
        check(&c, DType::F32, 2e-4).unwrap();
    }
}
