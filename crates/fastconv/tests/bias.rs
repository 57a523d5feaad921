//! `conv2d_bias` against the composition `conv2d(x, w).broadcast_add(b)` with candle's broadcast
//! add and its autograd (values and gradients of x, w, b in f32 and f64, random shapes; the
//! convolution itself is checked against candle's in against_candle.rs, and candle's own conv2d
//! backward is wrong for non-square strided inputs, so our `conv2d` is the reference's), and the
//! bias gradient against finite differences.

use candle_core::{DType, Device, Result, Tensor, Var};
use proptest::prelude::*;

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

fn rel_err(a: &Tensor, b: &Tensor) -> Result<f64> {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (a.to_dtype(DType::F64)?, b.to_dtype(DType::F64)?);
    let diff = (&a - &b)?.abs()?.max_all()?.to_scalar::<f64>()?;
    Ok(diff / (1.0 + b.abs()?.max_all()?.to_scalar::<f64>()?))
}

/// `(y, dx, dw, db)` of `sum(f(x, w, b) r)`, `(pad, stride, groups)` the convolution's.
fn run(
    ours: bool,
    (x, w, b): (&Var, &Var, &Var),
    (pad, stride, groups): (usize, usize, usize),
    seed: u64,
) -> Result<Vec<Tensor>> {
    let y = if ours {
        fastconv::conv2d_bias(x, w, b, pad, stride, groups)?
    } else {
        fastconv::conv2d(x, w, pad, stride, groups)?.broadcast_add(&b.reshape((1, (), 1, 1))?)?
    };
    let r = var(seed, y.dims(), y.dtype())?;
    let g = (&y * r.as_tensor())?.sum_all()?.backward()?;
    Ok(vec![
        y.clone(),
        g.get(x).unwrap().clone(),
        g.get(w).unwrap().clone(),
        g.get(b).unwrap().clone(),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matches_candle(n in 1usize..4, cg in 1usize..4, og in 1usize..5, groups in 1usize..3, h in 3usize..9,
                      w in 3usize..9, k in prop_oneof![Just(1usize), Just(3)], stride in 1usize..3, seed in any::<u64>()) {
        let pad = k / 2;
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let x = var(seed, &[n, cg * groups, h, w], dtype).unwrap();
            let wt = var(seed ^ 1, &[og * groups, cg, k, k], dtype).unwrap();
            let b = var(seed ^ 2, &[og * groups], dtype).unwrap();
            let ours = run(true, (&x, &wt, &b), (pad, stride, groups), seed ^ 3).unwrap();
            let theirs = run(false, (&x, &wt, &b), (pad, stride, groups), seed ^ 3).unwrap();
            for (i, (a, c)) in ours.iter().zip(&theirs).enumerate() {
                let e = rel_err(a, c).unwrap();
                prop_assert!(e < tol, "{dtype:?} output {i} (y, dx, dw, db) differs by {e}");
            }
        }
    }
}

#[test]
fn bias_gradient_matches_finite_differences() {
    let x = var(1, &[2, 3, 5, 4], DType::F64).unwrap();
    let w = var(2, &[4, 3, 3, 3], DType::F64).unwrap();
    let b = var(3, &[4], DType::F64).unwrap();
    let db = run(true, (&x, &w, &b), (1, 1, 1), 4).unwrap()[3]
        .to_vec1::<f64>()
        .unwrap();
    let base = b.as_tensor().to_vec1::<f64>().unwrap();
    let loss = |bv: Vec<f64>| {
        let bt = Tensor::new(bv, &Device::Cpu).unwrap();
        let y = fastconv::conv2d_bias(&x, &w, &bt, 1, 1, 1).unwrap();
        let r = var(4, y.dims(), DType::F64).unwrap();
        (&y * r.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    for i in 0..4 {
        let h = 1e-6;
        let (mut p, mut m) = (base.clone(), base.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (loss(p) - loss(m)) / (2.0 * h);
        assert!(
            (fd - db[i]).abs() < 1e-6 * (1.0 + fd.abs()),
            "db[{i}]: fd {fd} vs {}",
            db[i]
        );
    }
}

#[test]
fn wrong_bias_length_is_an_error() {
    let x = Tensor::zeros((1, 2, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((3, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
    assert!(fastconv::conv2d_bias(&x, &w, &b, 1, 1, 1).is_err());
}

/// A constant input (the network's input image) or a frozen weight or bias gets no gradient,
/// and the gradients of the other operands are those computed when everything is a variable,
/// bit for bit; the same for `conv2d` without bias.
#[test]
fn constants_get_no_gradient_and_leave_the_others_unchanged() -> Result<()> {
    let (pad, stride) = (1, 1);
    let x = var(11, &[2, 3, 6, 5], DType::F32)?;
    let w = var(12, &[4, 3, 3, 3], DType::F32)?;
    let b = var(13, &[4], DType::F32)?;
    let all = run(true, (&x, &w, &b), (pad, stride, 1), 14)?;
    let r = var(14, all[0].dims(), DType::F32)?;
    for constant in 0..3 {
        let operands = [x.as_tensor(), w.as_tensor(), b.as_tensor()];
        let detached: Vec<Tensor> = (0..3)
            .map(|i| match i == constant {
                true => operands[i].detach(),
                false => operands[i].clone(),
            })
            .collect();
        let y = fastconv::conv2d_bias(&detached[0], &detached[1], &detached[2], pad, stride, 1)?;
        let g = (&y * r.as_tensor())?.sum_all()?.backward()?;
        if constant < 2 {
            let y = fastconv::conv2d(&detached[0], &detached[1], pad, stride, 1)?;
            let g = (&y * r.as_tensor())?.sum_all()?.backward()?;
            assert!(g.get(&detached[constant]).is_none());
            assert!(g.get(&detached[1 - constant]).is_some());
        }
        for i in 0..3 {
            match (i == constant, g.get(&detached[i])) {
                (true, got) => assert!(got.is_none(), "operand {i} is constant"),
                (false, Some(got)) => {
                    let same = got.flatten_all()?.to_vec1::<f32>()?
                        == all[i + 1].flatten_all()?.to_vec1::<f32>()?;
                    assert!(
                        same,
                        "gradient {i} changed with operand {constant} constant"
                    );
                }
                (false, None) => panic!("operand {i} lost its gradient"),
            }
        }
    }
    Ok(())
}
