//! Forward convolution: `y[n, o] = W_o cols(x[n])` per group, im2col band by band + GEMM; for
//! small images several images side by side in one GEMM.

use crate::batch::{banded, for_each_chunk, images_per_gemm};
use crate::elem::Elem;
use crate::geometry::ConvGeometry;
use crate::im2col::{im2col, Gather};
use crate::matmul::{matmul, Mat, MatMut};
use gemm::Parallelism;

/// `y[n, o, i, j] = sum_{c, a, b} w[o, c, a, b] x[n, g(o) cg + c, s i + a - p, s j + b - p]`
/// for contiguous `x`, `w`; returns contiguous `y` of `g.y_dims()`. Runs [`crate::direct`]
/// where it applies.
pub(crate) fn forward<T: Elem>(g: &ConvGeometry, x: &[T], w: &[T]) -> Vec<T> {
    if let Some(y) = T::direct_forward(g, x, w) {
        return y;
    }
    forward_with(
        g,
        x,
        w,
        images_per_gemm(g, std::mem::size_of::<T>(), g.tile_bytes()),
    )
}

/// [`forward`] with `images` images per GEMM; one image at a time in bands of rows when
/// [`banded`].
pub(crate) fn forward_with<T: Elem>(g: &ConvGeometry, x: &[T], w: &[T], images: usize) -> Vec<T> {
    let (xs, ys) = (g.c_in * g.hw_in(), g.c_out * g.hw_out());
    let mut y = vec![T::ZERO; g.batch * ys];
    for_each_chunk(&mut y, ys, images, |n0, yc, par| {
        let nb = yc.len() / ys;
        let xc = &x[n0 * xs..][..nb * xs];
        if banded(g, images) {
            forward_image(g, xc, w, yc, par)
        } else {
            forward_chunk(g, xc, w, yc, par)
        }
    });
    y
}

/// Several images in one GEMM per group: `tmp = W_g [cols(x[0]) .. cols(x[nb - 1])]`
/// (`k_rows x nb hw_out` beside each other), then `tmp` scattered to the images.
fn forward_chunk<T: Elem>(g: &ConvGeometry, x: &[T], w: &[T], y: &mut [T], par: Parallelism) {
    let (cg, og, kr, hw_in, hw) = (g.cg(), g.og(), g.k_rows(), g.hw_in(), g.hw_out());
    let (xs, ys) = (g.c_in * hw_in, g.c_out * hw);
    let nb = y.len() / ys;
    let ld = nb * hw;
    let gather = Gather::new(g);
    T::with_scratch((kr + og) * ld + Gather::scratch(g), |buf| {
        let (cols, rest) = buf.split_at_mut(kr * ld);
        let (tmp, xe) = rest.split_at_mut(og * ld);
        for grp in 0..g.groups {
            let wg = Mat::rm(&w[grp * og * kr..][..og * kr], og, kr, kr);
            for b in 0..nb {
                let xg = &x[b * xs + grp * cg * hw_in..][..cg * hw_in];
                gather.im2col(g, xg, &mut cols[b * hw..], ld, xe);
            }
            matmul(
                MatMut::rm(tmp, og, ld, ld),
                wg,
                Mat::rm(cols, kr, ld, ld),
                false,
                par,
            );
            for b in 0..nb {
                for o in 0..og {
                    y[b * ys + (grp * og + o) * hw..][..hw]
                        .copy_from_slice(&tmp[o * ld + b * hw..][..hw]);
                }
            }
        }
    });
}

fn forward_image<T: Elem>(g: &ConvGeometry, x: &[T], w: &[T], y: &mut [T], par: Parallelism) {
    let (cg, og, kr, hw_in, hw_out, wo) = (g.cg(), g.og(), g.k_rows(), g.hw_in(), g.hw_out(), g.wo);
    let rows = g.tile_rows(std::mem::size_of::<T>(), g.tile_bytes());
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
            for (i0, i1) in g.bands(std::mem::size_of::<T>(), g.tile_bytes()) {
                let tw = (i1 - i0) * wo;
                let cols = &mut cols[..kr * tw];
                im2col(g, xg, i0, i1, cols, tw);
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
