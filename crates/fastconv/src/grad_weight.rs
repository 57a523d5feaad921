//! Weight gradient: `dW_g = sum_n dy_g[n] cols(x[n])^T`, band by band, per-worker partial sums.

use crate::batch::sum_over_images;
use crate::elem::Elem;
use crate::geometry::ConvGeometry;
use crate::im2col::im2col;
use crate::matmul::{matmul, Mat, MatMut};
use gemm::Parallelism;

/// `dw[o, c, a, b] = sum_{n, i, j} dy[n, o, i, j] x[n, g(o) cg + c, s i + a - p, s j + b - p]`;
/// returns contiguous `dw` of `g.w_dims()`.
pub(crate) fn grad_weight<T: Elem>(g: &ConvGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let (xs, ys) = (g.c_in * g.hw_in(), g.c_out * g.hw_out());
    sum_over_images(g.batch, g.c_out * g.k_rows(), |n, acc, par| {
        grad_weight_image(g, &x[n * xs..][..xs], &dy[n * ys..][..ys], acc, par)
    })
}

fn grad_weight_image<T: Elem>(g: &ConvGeometry, x: &[T], dy: &[T], dw: &mut [T], par: Parallelism) {
    let (cg, og, kr, hw_in, hw_out, wo) = (g.cg(), g.og(), g.k_rows(), g.hw_in(), g.hw_out(), g.wo);
    let rows = g.tile_rows(std::mem::size_of::<T>());
    for grp in 0..g.groups {
        let xg = &x[grp * cg * hw_in..][..cg * hw_in];
        let dyg = &dy[grp * og * hw_out..][..og * hw_out];
        let dwg = &mut dw[grp * og * kr..][..og * kr];
        if g.is_pointwise() {
            let xt = Mat::rm(xg, cg, hw_in, hw_in).t();
            matmul(
                MatMut::rm(dwg, og, kr, kr),
                Mat::rm(dyg, og, hw_out, hw_out),
                xt,
                true,
                par,
            );
            continue;
        }
        T::with_scratch(kr * rows * wo, |cols| {
            for i0 in (0..g.ho).step_by(rows) {
                let i1 = (i0 + rows).min(g.ho);
                let tw = (i1 - i0) * wo;
                let cols = &mut cols[..kr * tw];
                im2col(g, xg, i0, i1, cols);
                let dy_band = Mat::rm(&dyg[i0 * wo..], og, tw, hw_out);
                matmul(
                    MatMut::rm(&mut *dwg, og, kr, kr),
                    dy_band,
                    Mat::rm(cols, kr, tw, tw).t(),
                    true,
                    par,
                );
            }
        });
    }
}
