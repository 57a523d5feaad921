//! The patched candle backward (`vendor/candle-core.patch`): an op's gradient is stored as the op
//! returned it, not added to a tensor of zeros, and the sums, views and scatters that follow give
//! the same gradients as before.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor, Var};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::sync::{Arc, Mutex};

/// The identity, whose backward hands out a fresh copy of the incoming gradient and keeps it.
struct Identity {
    returned: Arc<Mutex<Option<Tensor>>>,
}

impl CustomOp1 for Identity {
    fn name(&self) -> &'static str {
        "identity"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((s.clone(), l.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dx = dy.copy()?;
        *self.returned.lock().unwrap() = Some(dx.clone());
        Ok(Some(dx))
    }
}

#[test]
fn a_gradient_used_once_is_the_tensor_its_op_returned() {
    let x = Var::from_tensor(&Tensor::arange(0f32, 6.0, &Device::Cpu).unwrap()).unwrap();
    let returned = Arc::new(Mutex::new(None));
    let y = x
        .as_tensor()
        .apply_op1(Identity {
            returned: returned.clone(),
        })
        .unwrap();
    let grads = (y * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
    let stored = grads.get(x.as_tensor()).unwrap();
    let returned = returned.lock().unwrap().clone().unwrap();
    // Upstream candle stores `zeros + dx`, a new tensor.
    assert_eq!(stored.id(), returned.id(), "the gradient was copied");
    assert_eq!(stored.to_vec1::<f32>().unwrap(), vec![3.0; 6]);
}

/// `x` (`r x c`) reaches the loss through the two halves of `cat([x, a x], 1)` and, twice, through
/// a gather along the columns (used transposed) and a transpose, so that gradients arrive as views
/// (narrow, transpose) to be added up, to be scattered (fails without the patch's contiguity step)
/// and to scatter into.
fn loss(x: &Tensor, a: f64, idx: &Tensor, r: [&Tensor; 3]) -> Tensor {
    let cat = Tensor::cat(&[x, &(x * a).unwrap()], 1).unwrap();
    // Two copies of x, each with a transpose and a gather, met in both orders by the backward.
    let (u, v) = ((x * 1.0).unwrap(), (x * 1.0).unwrap());
    let terms = [
        (cat * r[0]).unwrap(),
        (u.gather(idx, 1).unwrap().t().unwrap() * r[1]).unwrap(),
        (u.t().unwrap() * r[2]).unwrap(),
        (v.t().unwrap() * r[2]).unwrap(),
        (v.gather(idx, 1).unwrap().t().unwrap() * r[1]).unwrap(),
    ];
    let sums: Vec<Tensor> = terms.iter().map(|t| t.sum_all().unwrap()).collect();
    Tensor::stack(&sums, 0).unwrap().sum_all().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `dL/dx = r0[:, :c] + a r0[:, c:] + 2 scatter_cols(r1^T at idx) + 2 r2^T`, in f64 to rounding.
    #[test]
    fn views_sums_and_scatters_give_the_closed_form_gradient(
        rows in 1usize..5,
        cols in 1usize..6,
        picks in 1usize..4,
        a in -2.0f64..2.0,
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut values = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-1.0..=1.0)).collect() };
        let dev = Device::Cpu;
        let x = Var::from_vec(values(rows * cols), (rows, cols), &dev).unwrap();
        let r0 = values(rows * 2 * cols);
        let r1 = values(rows * picks);
        let r2 = values(cols * rows);
        let idx: Vec<u32> = (0..rows * picks).map(|_| rng.random_range(0..cols as u32)).collect();
        let t = |v: &[f64], shape: (usize, usize)| Tensor::from_slice(v, shape, &dev).unwrap();
        let idx_t = Tensor::from_slice(&idx, (rows, picks), &dev).unwrap();
        let l = loss(
            x.as_tensor(),
            a,
            &idx_t,
            [&t(&r0, (rows, 2 * cols)), &t(&r1, (picks, rows)), &t(&r2, (cols, rows))],
        );
        let grads = l.backward().unwrap();
        let got: Vec<f64> = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();

        let mut want = vec![0.0f64; rows * cols];
        for i in 0..rows {
            for j in 0..cols {
                want[i * cols + j] += r0[i * 2 * cols + j] + a * r0[i * 2 * cols + cols + j];
                want[i * cols + j] += 2.0 * r2[j * rows + i];
            }
            for k in 0..picks {
                want[i * cols + idx[i * picks + k] as usize] += 2.0 * r1[k * rows + i];
            }
        }
        for (g, w) in got.iter().zip(&want) {
            prop_assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "got {got:?}, want {want:?}");
        }
    }
}
