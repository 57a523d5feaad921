//! Input gradient: `dx[n] = col2im(W^T dy[n])` per group (the adjoint of the forward GEMM).

use crate::batch::for_each_image;
use crate::elem::Elem;
use crate::geometry::ConvGeometry;
use crate::im2col::col2im;
use crate::matmul::{matmul, Mat, MatMut};
use gemm::Parallelism;

/// `dx[n, c, s i + a - p, s j + b - p] += sum_o w[o, c, a, b] dy[n, o, i, j]` (adjoint of
/// [`crate::forward`]); returns contiguous `dx` of `g.x_dims()`.
pub(crate) fn grad_input<T: Elem>(g: &ConvGeometry, dy: &[T], w: &[T]) -> Vec<T> {
    let (xs, ys) = (g.c_in * g.hw_in(), g.c_out * g.hw_out());
    let mut dx = vec![T::ZERO; g.batch * xs];
    for_each_image(&mut dx, xs, |n, dxn, par| {
        grad_input_image(g, &dy[n * ys..][..ys], w, dxn, par)
    });
    dx
}

fn grad_input_image<T: Elem>(g: &ConvGeometry, dy: &[T], w: &[T], dx: &mut [T], par: Parallelism) {
    let (cg, og, kr, hw_in, hw_out, wo) = (g.cg(), g.og(), g.k_rows(), g.hw_in(), g.hw_out(), g.wo);
    let rows = g.tile_rows(std::mem::size_of::<T>());
    for grp in 0..g.groups {
        let wgt = Mat::rm(&w[grp * og * kr..][..og * kr], og, kr, kr).t();
        let dyg = &dy[grp * og * hw_out..][..og * hw_out];
        let dxg = &mut dx[grp * cg * hw_in..][..cg * hw_in];
        if g.is_pointwise() {
            matmul(
                MatMut::rm(dxg, cg, hw_in, hw_in),
                wgt,
                Mat::rm(dyg, og, hw_out, hw_out),
                false,
                par,
            );
            continue;
        }
        T::with_scratch(kr * rows * wo, |dcols| {
            for i0 in (0..g.ho).step_by(rows) {
                let i1 = (i0 + rows).min(g.ho);
                let tw = (i1 - i0) * wo;
                let dcols = &mut dcols[..kr * tw];
                matmul(
                    MatMut::rm(dcols, kr, tw, tw),
                    wgt,
                    Mat::rm(&dyg[i0 * wo..], og, tw, hw_out),
                    false,
                    par,
                );
                col2im(g, dcols, i0, i1, dxg);
            }
        });
    }
}
