//! Nearest-neighbour up-sampling by an integer factor `s` and its adjoint, the `s x s` block
//! sum, as a pair of candle custom ops on the CPU (f32, f64), each the other's backward:
//!
//! `up(x)[n, c, i, j] = x[n, c, i div s, j div s]` (`[N, C, H, W] -> [N, C, sH, sW]`),
//! `sum(y)[n, c, p, q] = sum_{a, b < s} y[n, c, s p + a, s q + b]` (`[N, C, sH, sW] -> [N, C, H, W]`),
//! with `<up(x), y> = <x, sum(y)>`, so `dx = sum(dy)` and `dy = up(dx)`.
//!
//! candle 0.11 differentiates its `upsample_nearest2d` with a grouped convolution (one group per
//! channel, a kernel of ones), which its CPU backend runs as one convolution per channel. Other
//! devices and dtypes run candle's ops (`upsample_nearest2d`; a reshape and two sums).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use fastconv::CpuKernel;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements from which the ops split their planes over the rayon pool.
const PARALLEL_MIN: usize = 1 << 16;

/// `up(x)` of the module docs: `x` `[N, C, H, W]`, factor `s >= 1`; differentiable.
pub fn upsample_nearest(x: &Tensor, s: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    check_factor("upsample_nearest", s)?;
    if s == 1 {
        return Ok(x.clone());
    }
    if !native(x) {
        return x.upsample_nearest2d(s * h, s * w);
    }
    x.contiguous()?.apply_op1(Upsample(Blocks { s, h, w }))
}

/// `sum(y)` of the module docs: `y` `[N, C, sH, sW]` (both sides divisible by `s >= 1`);
/// differentiable.
pub fn block_sum(y: &Tensor, s: usize) -> Result<Tensor> {
    let (n, c, sh, sw) = y.dims4()?;
    check_factor("block_sum", s)?;
    if sh % s != 0 || sw % s != 0 {
        candle_core::bail!("block_sum: a {sh}x{sw} image is not made of {s}x{s} blocks");
    }
    if s == 1 {
        return Ok(y.clone());
    }
    let (h, w) = (sh / s, sw / s);
    if !native(y) {
        return y.reshape((n, c, h, s, w, s))?.sum(5)?.sum(3);
    }
    y.contiguous()?.apply_op1(BlockSum(Blocks { s, h, w }))
}

fn check_factor(op: &str, s: usize) -> Result<()> {
    if s == 0 {
        candle_core::bail!("{op}: the factor must be at least 1");
    }
    Ok(())
}

/// Whether the custom ops run `t`: f32 or f64 on the CPU.
fn native(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// A coarse `h x w` plane whose pixels are the `s x s` blocks of a fine `sh x sw` plane.
#[derive(Debug, Clone, Copy)]
struct Blocks {
    s: usize,
    h: usize,
    w: usize,
}

impl Blocks {
    fn coarse(&self) -> usize {
        self.h * self.w
    }

    fn fine(&self) -> usize {
        self.coarse() * self.s * self.s
    }

    /// `[N, C, rows, cols]` for the `[N, C, _, _]` of `dims`.
    fn shape(dims: &[usize], rows: usize, cols: usize) -> Shape {
        Shape::from((dims[0], dims[1], rows, cols))
    }
}

/// [`upsample_nearest`] of the planes it describes.
struct Upsample(Blocks);

/// [`block_sum`] of the planes it describes.
struct BlockSum(Blocks);

/// Splits `out` into planes of `plane` elements, over the pool when it is large.
fn for_each_plane<T: Send>(out: &mut [T], plane: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if plane == 0 {
        return;
    }
    if out.len() >= PARALLEL_MIN {
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(k, o)| f(k, o));
    } else {
        out.chunks_mut(plane).enumerate().for_each(|(k, o)| f(k, o));
    }
}

impl<T: Copy + Default + Send + Sync> CpuKernel<T, 1> for Upsample {
    /// `x` holds whole coarse planes; every fine row is its coarse row with each value repeated
    /// `s` times, written `s` times.
    fn run(&self, [x]: [&[T]; 1]) -> Vec<T> {
        let Blocks { s, w, .. } = self.0;
        let len = x.len() / self.0.coarse() * self.0.fine();
        // Written, not zeroed first: the planes' rows cover `y` (`fine = s^2 coarse`).
        let mut y = Vec::with_capacity(len);
        for_each_plane(
            &mut y.spare_capacity_mut()[..len],
            self.0.fine(),
            |k, yp| {
                let xp = &x[k * self.0.coarse()..][..self.0.coarse()];
                for (xr, yrows) in xp.chunks_exact(w).zip(yp.chunks_exact_mut(s * s * w)) {
                    let (first, rest) = yrows.split_at_mut(s * w);
                    for (&v, block) in xr.iter().zip(first.chunks_exact_mut(s)) {
                        block.fill(MaybeUninit::new(v));
                    }
                    for row in rest.chunks_exact_mut(s * w) {
                        row.copy_from_slice(first);
                    }
                }
            },
        );
        // SAFETY: each plane's `h` coarse rows write `s` fine rows of `s w` values: all `len`.
        unsafe { y.set_len(len) };
        y
    }
}

impl<T> CpuKernel<T, 1> for BlockSum
where
    T: Copy + Default + Send + Sync + std::ops::AddAssign,
{
    /// `y` holds whole fine planes; each coarse value sums its block row by row, left to right.
    fn run(&self, [y]: [&[T]; 1]) -> Vec<T> {
        let Blocks { s, w, .. } = self.0;
        let mut x = vec![T::default(); y.len() / self.0.fine() * self.0.coarse()];
        for_each_plane(&mut x, self.0.coarse(), |k, xp| {
            let yp = &y[k * self.0.fine()..][..self.0.fine()];
            for (xr, yrows) in xp.chunks_exact_mut(w).zip(yp.chunks_exact(s * s * w)) {
                for row in yrows.chunks_exact(s * w) {
                    for (acc, block) in xr.iter_mut().zip(row.chunks_exact(s)) {
                        for &v in block {
                            *acc += v;
                        }
                    }
                }
            }
        });
        x
    }
}

impl CustomOp1 for Upsample {
    fn name(&self) -> &'static str {
        "upsample-nearest"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = fastconv::dispatch(self.name(), self, [(s, l)])?;
        let Blocks { s, h, w } = self.0;
        Ok((out, Blocks::shape(l.dims(), s * h, s * w)))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        block_sum(dy, self.0.s).map(Some)
    }
}

impl CustomOp1 for BlockSum {
    fn name(&self) -> &'static str {
        "block-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = fastconv::dispatch(self.name(), self, [(s, l)])?;
        Ok((out, Blocks::shape(l.dims(), self.0.h, self.0.w)))
    }

    fn bwd(&self, _y: &Tensor, _x: &Tensor, dx: &Tensor) -> Result<Option<Tensor>> {
        upsample_nearest(dx, self.0.s).map(Some)
    }
}
