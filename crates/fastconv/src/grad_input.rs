//! Input gradient: `dx[n] = col2im(W^T dy[n])` per group (the adjoint of the forward GEMM); for
//! small images several images side by side in one GEMM.

use crate::batch::{banded, dy_side_by_side, for_each_chunk, images_per_gemm};
use crate::elem::{written_zeros, Elem};
use crate::forward::forward;
use crate::geometry::ConvGeometry;
use crate::im2col::{col2im, Gather};
use crate::matmul::{matmul, Mat, MatMut};
use crate::transposed::transposed;
use gemm::Parallelism;

/// `dx[n, c, s i + a - p, s j + b - p] += sum_o w[o, c, a, b] dy[n, o, i, j]` (adjoint of
/// [`crate::forward`]); returns contiguous `dx` of `g.x_dims()`. Layers that narrow the
/// channels with stride 1 take the forward convolution of [`crate::transposed`].
pub(crate) fn grad_input<T: Elem>(g: &ConvGeometry, dy: &[T], w: &[T]) -> Vec<T> {
    if let Some((gt, wt)) = transposed(g, w) {
        return forward(&gt, dy, &wt);
    }
    grad_input_with(
        g,
        dy,
        w,
        images_per_gemm(g, std::mem::size_of::<T>(), g.tile_bytes()),
    )
}

/// [`grad_input`] with `images` images per GEMM; one image at a time in bands of rows when
/// [`banded`].
pub(crate) fn grad_input_with<T: Elem>(
    g: &ConvGeometry,
    dy: &[T],
    w: &[T],
    images: usize,
) -> Vec<T> {
    let (xs, ys) = (g.c_in * g.hw_in(), g.c_out * g.hw_out());
    let mut dx = written_zeros(g.batch * xs);
    for_each_chunk(&mut dx, xs, images, |n0, dxc, par| {
        let nb = dxc.len() / xs;
        let dyc = &dy[n0 * ys..][..nb * ys];
        if banded(g, images) {
            grad_input_image(g, dyc, w, dxc, par)
        } else {
            grad_input_chunk(g, dyc, w, dxc, par)
        }
    });
    dx
}

/// Several images in one GEMM per group: `dcols = W_g^T [dy[0] .. dy[nb - 1]]` (the images'
/// `og x hw_out` blocks gathered beside each other), then col2im per image.
fn grad_input_chunk<T: Elem>(g: &ConvGeometry, dy: &[T], w: &[T], dx: &mut [T], par: Parallelism) {
    let (cg, og, kr, hw_in, hw) = (g.cg(), g.og(), g.k_rows(), g.hw_in(), g.hw_out());
    let xs = g.c_in * hw_in;
    let nb = dx.len() / xs;
    let ld = nb * hw;
    let gather = Gather::new(g);
    T::with_scratch((kr + og) * ld + Gather::scratch(g), |buf| {
        let (dcols, rest) = buf.split_at_mut(kr * ld);
        let (dyt, xe) = rest.split_at_mut(og * ld);
        for grp in 0..g.groups {
            let wgt = Mat::rm(&w[grp * og * kr..][..og * kr], og, kr, kr).t();
            dy_side_by_side(g, dy, grp, nb, dyt, ld);
            matmul(
                MatMut::rm(dcols, kr, ld, ld),
                wgt,
                Mat::rm(dyt, og, ld, ld),
                false,
                par,
            );
            for b in 0..nb {
                let dxg = &mut dx[b * xs + grp * cg * hw_in..][..cg * hw_in];
                gather.col2im(g, &dcols[b * hw..], ld, dxg, xe);
            }
        }
    });
}

fn grad_input_image<T: Elem>(g: &ConvGeometry, dy: &[T], w: &[T], dx: &mut [T], par: Parallelism) {
    let (cg, og, kr, hw_in, hw_out, wo) = (g.cg(), g.og(), g.k_rows(), g.hw_in(), g.hw_out(), g.wo);
    let rows = g.tile_rows(std::mem::size_of::<T>(), g.tile_bytes());
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
            for (i0, i1) in g.bands(std::mem::size_of::<T>(), g.tile_bytes()) {
                let tw = (i1 - i0) * wo;
                let dcols = &mut dcols[..kr * tw];
                matmul(
                    MatMut::rm(dcols, kr, tw, tw),
                    wgt,
                    Mat::rm(&dyg[i0 * wo..], og, tw, hw_out),
                    false,
                    par,
                );
                col2im(g, dcols, i0, i1, dxg, tw);
            }
        });
    }
}
