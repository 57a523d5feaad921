//! Weight gradient: `dW_g = sum_n dy_g[n] cols(x[n])^T`, band by band, per-worker partial sums;
//! for small images several images side by side in one GEMM.
//!
//! The partial sums hold each group's `dW_g^T` (`k_rows x og`, row-major), transposed once at
//! the end: `gemm` runs 1.5-2x faster writing `dW_g` column-major when `og` is small (32-64
//! output channels against `k_rows` = 288-1152).

use crate::batch::{banded, images_per_gemm, sum_over_chunks};
use crate::elem::Elem;
use crate::geometry::ConvGeometry;
use crate::im2col::{im2col, Gather};
use crate::matmul::{matmul, Mat, MatMut};
use gemm::Parallelism;

/// `dw[o, c, a, b] = sum_{n, i, j} dy[n, o, i, j] x[n, g(o) cg + c, s i + a - p, s j + b - p]`;
/// returns contiguous `dw` of `g.w_dims()`. Runs [`crate::direct_weight`] where it applies.
pub(crate) fn grad_weight<T: Elem>(g: &ConvGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    if let Some(dw) = T::direct_grad_weight(g, x, dy) {
        return dw;
    }
    let eb = std::mem::size_of::<T>();
    grad_weight_with(
        g,
        x,
        dy,
        images_per_gemm(g, eb, g.weight_grad_tile_bytes(eb)),
    )
}

/// [`grad_weight`] with `images` images per GEMM; one image at a time in bands of rows when
/// [`banded`].
pub(crate) fn grad_weight_with<T: Elem>(
    g: &ConvGeometry,
    x: &[T],
    dy: &[T],
    images: usize,
) -> Vec<T> {
    let (xs, ys) = (g.c_in * g.hw_in(), g.c_out * g.hw_out());
    let transposed = sum_over_chunks(g.batch, images, g.c_out * g.k_rows(), |n0, nb, acc, par| {
        let (xc, dyc) = (&x[n0 * xs..][..nb * xs], &dy[n0 * ys..][..nb * ys]);
        if banded(g, images) {
            grad_weight_image(g, xc, dyc, acc, par)
        } else {
            grad_weight_chunk(g, xc, dyc, nb, acc, par)
        }
    });
    untranspose_groups(g, &transposed)
}

/// Side of the square blocks in which [`untranspose_groups`] transposes: a block's reads and
/// writes stay in L1 (a column-by-column copy waited on a strided load per element: 3 % of the
/// paper UNet's step at 8^2).
const TRANSPOSE_BLOCK: usize = 16;

/// `dw[grp]` (`og x k_rows`) from `dwt[grp]` (`k_rows x og`), group by group, in blocks of
/// [`TRANSPOSE_BLOCK`] squared.
fn untranspose_groups<T: Elem>(g: &ConvGeometry, dwt: &[T]) -> Vec<T> {
    let (og, kr) = (g.og(), g.k_rows());
    let mut dw = vec![T::ZERO; dwt.len()];
    for (block, tblock) in dw.chunks_exact_mut(og * kr).zip(dwt.chunks_exact(og * kr)) {
        for o0 in (0..og).step_by(TRANSPOSE_BLOCK) {
            for r0 in (0..kr).step_by(TRANSPOSE_BLOCK) {
                let rs = r0..kr.min(r0 + TRANSPOSE_BLOCK);
                for o in o0..og.min(o0 + TRANSPOSE_BLOCK) {
                    for (v, r) in block[o * kr..][rs.clone()].iter_mut().zip(rs.clone()) {
                        *v = tblock[r * og + o];
                    }
                }
            }
        }
    }
    dw
}

/// Group `grp`'s `dW_g` (`og x k_rows`) as a column-major view of its transposed block.
fn dw_group<'a, T>(g: &ConvGeometry, dwt: &'a mut [T], grp: usize) -> MatMut<'a, T> {
    let (og, kr) = (g.og(), g.k_rows());
    MatMut::cm(&mut dwt[grp * og * kr..][..og * kr], og, kr, og)
}

/// Several images in one GEMM per group: `dW_g += [dy[0] .. dy[nb - 1]] [cols(x[0]) ..
/// cols(x[nb - 1])]^T`.
fn grad_weight_chunk<T: Elem>(
    g: &ConvGeometry,
    x: &[T],
    dy: &[T],
    nb: usize,
    dw: &mut [T],
    par: Parallelism,
) {
    let (cg, og, kr, hw_in, hw) = (g.cg(), g.og(), g.k_rows(), g.hw_in(), g.hw_out());
    let (xs, ys) = (g.c_in * hw_in, g.c_out * hw);
    let ld = nb * hw;
    let gather = Gather::new(g);
    T::with_scratch((kr + og) * ld + Gather::scratch(g), |buf| {
        let (cols, rest) = buf.split_at_mut(kr * ld);
        let (dyt, xe) = rest.split_at_mut(og * ld);
        for grp in 0..g.groups {
            for b in 0..nb {
                let xg = &x[b * xs + grp * cg * hw_in..][..cg * hw_in];
                gather.im2col(g, xg, &mut cols[b * hw..], ld, xe);
                for o in 0..og {
                    dyt[o * ld + b * hw..][..hw]
                        .copy_from_slice(&dy[b * ys + (grp * og + o) * hw..][..hw]);
                }
            }
            matmul(
                dw_group(g, dw, grp),
                Mat::rm(dyt, og, ld, ld),
                Mat::rm(cols, kr, ld, ld).t(),
                true,
                par,
            );
        }
    });
}

/// One image at a time (`x`, `dy` of one image each).
fn grad_weight_image<T: Elem>(g: &ConvGeometry, x: &[T], dy: &[T], dw: &mut [T], par: Parallelism) {
    let (cg, og, kr, hw_in, hw_out, wo) = (g.cg(), g.og(), g.k_rows(), g.hw_in(), g.hw_out(), g.wo);
    let eb = std::mem::size_of::<T>();
    let tile = g.weight_grad_tile_bytes(eb);
    let rows = g.tile_rows(eb, tile);
    for grp in 0..g.groups {
        let xg = &x[grp * cg * hw_in..][..cg * hw_in];
        let dyg = &dy[grp * og * hw_out..][..og * hw_out];
        if g.is_pointwise() {
            let xt = Mat::rm(xg, cg, hw_in, hw_in).t();
            matmul(
                dw_group(g, dw, grp),
                Mat::rm(dyg, og, hw_out, hw_out),
                xt,
                true,
                par,
            );
            continue;
        }
        T::with_scratch(kr * rows * wo, |cols| {
            for (i0, i1) in g.bands(eb, tile) {
                let tw = (i1 - i0) * wo;
                let cols = &mut cols[..kr * tw];
                im2col(g, xg, i0, i1, cols, tw);
                let dy_band = Mat::rm(&dyg[i0 * wo..], og, tw, hw_out);
                matmul(
                    dw_group(g, dw, grp),
                    dy_band,
                    Mat::rm(cols, kr, tw, tw).t(),
                    true,
                    par,
                );
            }
        });
    }
}
