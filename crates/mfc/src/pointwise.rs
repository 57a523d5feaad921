//! The MFC's 1x1 embedding `v_n = M u_n + b` (SPEC section 2, step 1; 000 eq. 18) as one CPU
//! custom op: `[N, C_in, H, W] -> [N, C_out, H, W]`, one gemm per image, so autograd sees one node
//! instead of reshape, matmul, reshape and bias. Backward (exact): `du_n = M^T g_n`,
//! `dM = sum_n g_n u_n^T`, `db = sum_{n, pixels} g`.

use crate::fft::{planes_per_worker, run_jobs, Float};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use fastconv::{dispatch, CpuKernel};

/// `v_n = M u_n + b` per pixel for `x [N, C_in, H, W]`, `weight [C_out, C_in]`, `bias [C_out]`
/// (000 eq. 18), differentiable in all three. CPU only, f32 or f64.
pub fn pointwise(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let (_, ci, _, _) = x.dims4()?;
    let (co, wci) = weight.dims2()?;
    if wci != ci || bias.dims() != [co] {
        candle_core::bail!(
            "mfc pointwise: input {:?}, weight {:?}, bias {:?}",
            x.dims(),
            weight.dims(),
            bias.dims()
        );
    }
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, Pointwise)
}

struct Pointwise;

/// The kernel of [`Pointwise`] on `n` images of `hw` pixels.
struct Images {
    n: usize,
    hw: usize,
}

impl<T: Float> CpuKernel<T, 3> for Images {
    fn run(&self, [x, m, b]: [&[T]; 3]) -> Vec<T> {
        forward(x, m, b, self.n, self.hw)
    }
}

/// `out_n = M x_n + b` for `n` images of `ci x hw` values.
fn forward<T: Float>(x: &[T], m: &[T], b: &[T], n: usize, hw: usize) -> Vec<T> {
    let (co, ci) = (b.len(), m.len() / b.len().max(1));
    let mut out = vec![T::zero(); n * co * hw];
    let per = planes_per_worker(n, co * hw);
    // `max(1)`: no images to write when `co hw = 0` (`out` is empty), but chunks must not be empty.
    run_jobs(out.chunks_mut((per * co * hw).max(1)), |i, chunk| {
        for (k, dst) in chunk.chunks_exact_mut((co * hw).max(1)).enumerate() {
            let img = i * per + k;
            let xi = &x[img * ci * hw..(img + 1) * ci * hw];
            // The bias rows, which the gemm below accumulates onto.
            for (row, &bias) in dst.chunks_exact_mut(hw.max(1)).zip(b) {
                row.fill(bias);
            }
            // SAFETY: row-major [co, hw] = [co, ci] x [ci, hw] on the slices `dst`
            // (`co hw` values), `m` (`co ci`) and `xi` (`ci hw`), with the strides given.
            unsafe {
                gemm::gemm(
                    co,
                    hw,
                    ci,
                    dst.as_mut_ptr(),
                    1,
                    hw as isize,
                    true,
                    m.as_ptr(),
                    1,
                    ci as isize,
                    xi.as_ptr(),
                    1,
                    hw as isize,
                    T::one(),
                    T::one(),
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    });
    out
}

impl CustomOp3 for Pointwise {
    fn name(&self) -> &'static str {
        "mfc-pointwise"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, _, h, w) = l1.shape().dims4()?;
        let co = l3.shape().elem_count();
        let images = Images { n, hw: h * w };
        let out = dispatch(self.name(), &images, [(s1, l1), (s2, l2), (s3, l3)])?;
        Ok((out, Shape::from((n, co, h, w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        m: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, co, h, w) = grad.dims4()?;
        let g = grad.reshape((n, co, h * w))?;
        let x3 = x.reshape((n, x.dim(1)?, h * w))?;
        let dx = m.t()?.broadcast_matmul(&g)?.reshape(x.shape())?;
        let dm = g.matmul(&x3.t()?)?.sum(0)?;
        let db = g.sum(2)?.sum(0)?;
        Ok((Some(dx), Some(dm), Some(db)))
    }
}
