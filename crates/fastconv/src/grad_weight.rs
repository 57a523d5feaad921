//! Weight gradient: `dW_g = sum_n dy_g[n] cols(x[n])^T`, band by band, per-worker partial sums;
//! for small images several images side by side in one GEMM. On coarse meshes, where the
//! weights outnumber the batch's pixels, the workers' GEMMs run one after the other on all
//! threads into one `dW` instead ([`grad_weight_whole`]), with the same sums.
//!
//! The partial sums hold each group's `dW_g^T` (`k_rows x og`, row-major), added and transposed
//! in one parallel pass at the end: `gemm` runs 1.5-2x faster writing `dW_g` column-major when
//! `og` is small (32-64 output channels against `k_rows` = 288-1152).

use crate::batch::{banded, dy_side_by_side, images_per_gemm, partial_sums, plan, WIDE_OUTPUT};
use crate::elem::Elem;
use crate::geometry::ConvGeometry;
use crate::im2col::{im2col, Gather};
use crate::matmul::{matmul, Mat, MatMut};
use gemm::Parallelism;
use rayon::prelude::*;

/// `dw[o, c, a, b] = sum_{n, i, j} dy[n, o, i, j] x[n, g(o) cg + c, s i + a - p, s j + b - p]`;
/// returns contiguous `dw` of `g.w_dims()`. Runs [`crate::direct_weight`] where it applies.
pub(crate) fn grad_weight<T: Elem>(g: &ConvGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    if let Some(dw) = T::direct_grad_weight(g, x, dy) {
        return dw;
    }
    let eb = std::mem::size_of::<T>();
    let images = images_per_gemm(g, eb, g.weight_grad_tile_bytes(eb));
    if whole_batch(g, eb, images) {
        return grad_weight_whole(g, x, dy, images);
    }
    grad_weight_with(g, x, dy, images)
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
    let partials = partial_sums(g.batch, images, g.c_out * g.k_rows(), |n0, nb, acc, par| {
        let (xc, dyc) = (&x[n0 * xs..][..nb * xs], &dy[n0 * ys..][..nb * ys]);
        if banded(g, images) {
            grad_weight_image(g, xc, dyc, acc, par)
        } else {
            grad_weight_chunk(g, xc, dyc, nb, acc, par)
        }
    });
    untranspose_sum(g, &partials)
}

/// Bytes of im2col columns up to which [`grad_weight_whole`] takes the whole batch at once.
const WHOLE_BATCH_BYTES: usize = 4 << 20;

/// Whether [`grad_weight`] runs [`grad_weight_whole`] with `images` per GEMM: a layer whose
/// images are too small to be banded, whose batch has no more output pixels than a weight row
/// has entries (`N hw_out <= k_rows`: at batch 16, 3 x 3 layers on `2^2` from 8 input channels
/// and on `4^2` from 29), whose
/// columns for the whole batch take at most [`WHOLE_BATCH_BYTES`], and where each worker of
/// [`grad_weight_with`] would run one GEMM. There, per-worker partial sums of `dW` cost more
/// memory traffic than their GEMMs.
pub(crate) fn whole_batch(g: &ConvGeometry, elem_bytes: usize, images: usize) -> bool {
    let pixels = g.batch * g.hw_out();
    let (workers, _) = plan(g.batch.div_ceil(images.max(1)));
    g.hw_out() < WIDE_OUTPUT
        && !g.is_pointwise()
        && pixels <= g.k_rows()
        && g.k_rows() * pixels * elem_bytes <= WHOLE_BATCH_BYTES
        && images >= g.batch.div_ceil(workers)
}

/// [`grad_weight_with`] (`images` per GEMM, one GEMM per worker: [`whole_batch`]) without the
/// partial sums: the columns of the whole batch side by side (`k_rows x N hw_out`, one task per
/// input channel on the pool), then per group the workers' GEMMs `dW_g += dy_g[range]
/// cols(x[range])^T` one after the other, each on all threads, into one row-major `dW_g`:
/// nothing to transpose. `gemm` adds each GEMM's sum to `dW_g` once it is complete, so
/// `dW_g = (0 + S_0) + S_1 ..` as [`untranspose_sum`] adds the workers' sums: the same values bit
/// for bit.
pub(crate) fn grad_weight_whole<T: Elem>(
    g: &ConvGeometry,
    x: &[T],
    dy: &[T],
    images: usize,
) -> Vec<T> {
    let (cg, og, kr, hw_in, hw) = (g.cg(), g.og(), g.k_rows(), g.hw_in(), g.hw_out());
    let (xs, taps) = (g.c_in * hw_in, g.kh * g.kw);
    let ld = g.batch * hw;
    let (workers, _) = plan(g.batch.div_ceil(images.max(1)));
    let per = g.batch.div_ceil(workers);
    let gather = Gather::new(g);
    let mut dw = vec![T::ZERO; g.c_out * kr];
    // One task: its GEMMs get every thread of the pool.
    let (_, par) = plan(1);
    T::with_scratch((kr + og) * ld, |buf| {
        let (cols, dyt) = buf.split_at_mut(kr * ld);
        for grp in 0..g.groups {
            cols.par_chunks_mut(taps * ld)
                .enumerate()
                .for_each(|(c, rows)| {
                    T::with_scratch(Gather::scratch(g), |xe| {
                        for b in 0..g.batch {
                            let xc = &x[b * xs + (grp * cg + c) * hw_in..][..hw_in];
                            gather.im2col(g, xc, &mut rows[b * hw..], ld, xe);
                        }
                    })
                });
            dy_side_by_side(g, dy, grp, g.batch, dyt, ld);
            for n0 in (0..g.batch).step_by(per) {
                let k = per.min(g.batch - n0) * hw;
                matmul(
                    MatMut::rm(&mut dw[grp * og * kr..][..og * kr], og, kr, kr),
                    Mat::rm(&dyt[n0 * hw..], og, k, ld),
                    Mat::rm(&cols[n0 * hw..], kr, k, ld).t(),
                    true,
                    par,
                );
            }
        }
    });
    dw
}

/// Side of the square blocks in which [`untranspose_sum`] transposes: a block's reads and writes
/// stay in L1 (a column-by-column copy waited on a strided load per element).
const TRANSPOSE_BLOCK: usize = 16;

/// `dw[grp][o, r] = sum_p partials[p][grp][r, o]` (`og x k_rows` from the workers'
/// `k_rows x og` blocks), added in the order of [`crate::batch::partial_sums`]; the rows of
/// [`TRANSPOSE_BLOCK`] output channels are tasks on the pool, each transposed in blocks of
/// [`TRANSPOSE_BLOCK`] squared. One pass over the partials, where adding them first and then
/// transposing on one thread took two (9 % of the samples of a 128 -> 128 layer's forward and
/// backward at `2^2` in `perf`, a third of its weight gradient's).
fn untranspose_sum<T: Elem>(g: &ConvGeometry, partials: &[Vec<T>]) -> Vec<T> {
    let (og, kr) = (g.og(), g.k_rows());
    let mut dw = vec![T::ZERO; g.c_out * kr];
    let tasks: Vec<(usize, usize, &mut [T])> = dw
        .chunks_exact_mut(og * kr)
        .enumerate()
        .flat_map(|(grp, block)| {
            let rows = block.chunks_mut(TRANSPOSE_BLOCK * kr).enumerate();
            rows.map(move |(k, rows)| (grp, k * TRANSPOSE_BLOCK, rows))
        })
        .collect();
    tasks.into_par_iter().for_each(|(grp, o0, rows)| {
        let ob = rows.len() / kr;
        let blocks: Vec<&[T]> = partials
            .iter()
            .map(|p| &p[grp * og * kr + o0..][..og * kr - o0])
            .collect();
        // `tile[r - r0][o - o0]`: the block's sums, rows read whole from the partials.
        let mut tile = [[T::ZERO; TRANSPOSE_BLOCK]; TRANSPOSE_BLOCK];
        for r0 in (0..kr).step_by(TRANSPOSE_BLOCK) {
            let rb = TRANSPOSE_BLOCK.min(kr - r0);
            for (rr, sums) in tile.iter_mut().enumerate().take(rb) {
                let sums = &mut sums[..ob];
                sums.copy_from_slice(&blocks[0][(r0 + rr) * og..][..ob]);
                for b in &blocks[1..] {
                    for (s, &v) in sums.iter_mut().zip(&b[(r0 + rr) * og..][..ob]) {
                        *s += v;
                    }
                }
            }
            for (oo, row) in rows.chunks_exact_mut(kr).enumerate() {
                for (v, sums) in row[r0..r0 + rb].iter_mut().zip(&tile) {
                    *v = sums[oo];
                }
            }
        }
    });
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
    let xs = g.c_in * hw_in;
    let ld = nb * hw;
    let gather = Gather::new(g);
    T::with_scratch((kr + og) * ld + Gather::scratch(g), |buf| {
        let (cols, rest) = buf.split_at_mut(kr * ld);
        let (dyt, xe) = rest.split_at_mut(og * ld);
        for grp in 0..g.groups {
            for b in 0..nb {
                let xg = &x[b * xs + grp * cg * hw_in..][..cg * hw_in];
                gather.im2col(g, xg, &mut cols[b * hw..], ld, xe);
            }
            dy_side_by_side(g, dy, grp, nb, dyt, ld);
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
