//! Forward convolution: `y[n, o] = W_o cols(x[n])` per group, im2col band by band + GEMM.

use crate::batch::for_each_image;
use crate::elem::Elem;
use crate::geometry::ConvGeometry;
use crate::im2col::im2col;
use crate::matmul::{matmul, Mat, MatMut};
use gemm::Parallelism;

/// `y[n, o, i, j] = sum_{c, a, b} w[o, c, a, b] x[n, g(o) cg + c, s i + a - p, s j + b - p]`
/// for contiguous `x`, `w`; returns contiguous `y` of `g.y_dims()`.
pub(crate) fn forward<T: Elem>(g: &ConvGeometry, x: &[T], w: &[T]) -> Vec<T> {
    let (xs, ys) = (g.c_in * g.hw_in(), g.c_out * g.hw_out());
    let mut y = vec![T::ZERO; g.batch * ys];
    for_each_image(&mut y, ys, |n, yn, par| {
        forward_image(g, &x[n * xs..][..xs], w, yn, par)
    });
    y
}

fn forward_image<T: Elem>(g: &ConvGeometry, x: &[T], w: &[T], y: &mut [T], par: Parallelism) {
    let (cg, og, kr, hw_in, hw_out, wo) = (g.cg(), g.og(), g.k_rows(), g.hw_in(), g.hw_out(), g.wo);
    let rows = g.tile_rows(std::mem::size_of::<T>());
    for grp in 0..g.groups {
        let xg = &x[grp * cg * hw_in..][..cg * hw_in];
        let wg = Mat::rm(&w[grp * og * kr..][..og * kr], og, kr, kr);
        let yg = &mut y[grp * og * hw_out..][..og * hw_out];
        if g.is_pointwise() {
            matmul(
                MatMut::rm(yg, og, hw_out, hw_out),
                wg,
                Mat::rm(xg, cg, hw_out, hw_out),
                false,
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
                matmul(
                    MatMut::rm(&mut yg[i0 * wo..], og, tw, hw_out),
                    wg,
                    Mat::rm(cols, kr, tw, tw),
                    false,
                    par,
                );
            }
        });
    }
}
