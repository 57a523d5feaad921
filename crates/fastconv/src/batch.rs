//! Work split over the batch: one image (or, for small images, a chunk of images sharing one
//! GEMM) per task on the rayon pool, GEMMs single-threaded inside; when there are fewer tasks
//! than threads, the GEMMs get the threads instead.

use crate::elem::{written_zeros, Elem};
use crate::geometry::ConvGeometry;
use gemm::Parallelism;
use rayon::prelude::*;

/// Output pixels per image from which one image alone gives the GEMM enough columns
/// (16^2 and up): below it several images share one GEMM.
pub(crate) const WIDE_OUTPUT: usize = 256;

/// `(workers, parallelism inside one task)`: all threads across tasks when there is at least
/// one task per thread, else one worker whose GEMMs use every thread.
pub(crate) fn plan(tasks: usize) -> (usize, Parallelism) {
    let threads = rayon::current_num_threads().max(1);
    if tasks >= threads {
        (threads, Parallelism::None)
    } else if threads > 1 {
        (1, Parallelism::Rayon(threads))
    } else {
        (1, Parallelism::None)
    }
}

/// Images per GEMM for `g` with `elem_bytes`-byte elements: 1 when an image's output has at
/// least [`WIDE_OUTPUT`] pixels, else as many as fit the im2col tile (`k_rows x images hw_out`
/// within the tile budget) up to an even share of each worker's images, so that the GEMMs of
/// coarse meshes (8^2 .. 2^2: 64 .. 4 columns per image) get `images x hw_out` columns.
pub(crate) fn images_per_gemm(g: &ConvGeometry, elem_bytes: usize, tile_bytes: usize) -> usize {
    let hw = g.hw_out();
    if hw == 0 || hw >= WIDE_OUTPUT || g.batch < 2 {
        return 1;
    }
    let threads = rayon::current_num_threads().max(1);
    let per_worker = g.batch.div_ceil(threads);
    let fit = (tile_bytes / (g.k_rows().max(1) * hw * elem_bytes)).max(1);
    let pieces = per_worker.div_ceil(fit);
    per_worker.div_ceil(pieces)
}

/// Whether `g` runs one image at a time in bands of output rows (im2col by row copies): for
/// images of at least [`WIDE_OUTPUT`] output pixels; smaller ones go whole through the gather
/// table, `images` at a time, where a row copy of a few pixels would cost more than it moves.
pub(crate) fn banded(g: &ConvGeometry, images: usize) -> bool {
    images == 1 && g.hw_out() >= WIDE_OUTPUT
}

/// Call `f(n0, out_chunk, par)` for every chunk of `images` consecutive images starting at image
/// `n0`, where `out_chunk` holds their `per_image` elements each (the last chunk may be shorter).
pub(crate) fn for_each_chunk<T: Elem>(
    out: &mut [T],
    per_image: usize,
    images: usize,
    f: impl Fn(usize, &mut [T], Parallelism) + Sync,
) {
    if per_image == 0 || out.is_empty() {
        return;
    }
    let images = images.max(1);
    let tasks = (out.len() / per_image).div_ceil(images);
    let (workers, par) = plan(tasks);
    if workers > 1 {
        out.par_chunks_mut(images * per_image)
            .enumerate()
            .for_each(|(k, o)| f(k * images, o, par));
    } else {
        out.chunks_mut(images * per_image)
            .enumerate()
            .for_each(|(k, o)| f(k * images, o, par));
    }
}

/// Sum over chunks of `images` consecutive images of `f(n0, count, acc, par)` accumulated into
/// per-worker buffers of `len` zeros, each worker taking a contiguous range of images split into
/// chunks (deterministic for a given pool size and chunk size).
pub(crate) fn sum_over_chunks<T: Elem>(
    batch: usize,
    images: usize,
    len: usize,
    f: impl Fn(usize, usize, &mut [T], Parallelism) + Sync,
) -> Vec<T> {
    let mut it = partial_sums(batch, images, len, f).into_iter();
    let mut total = it.next().unwrap_or_else(|| written_zeros(len));
    for p in it {
        for (a, b) in total.iter_mut().zip(&p) {
            *a += *b;
        }
    }
    total
}

/// The per-worker buffers of [`sum_over_chunks`] before they are added (at least one), for
/// callers that add them while rearranging the result: element `i` of the sum is
/// `((p[0][i] + p[1][i]) + p[2][i]) ..`.
pub(crate) fn partial_sums<T: Elem>(
    batch: usize,
    images: usize,
    len: usize,
    f: impl Fn(usize, usize, &mut [T], Parallelism) + Sync,
) -> Vec<Vec<T>> {
    let images = images.max(1);
    let (workers, par) = plan(batch.div_ceil(images));
    let per = batch.div_ceil(workers).max(1);
    (0..workers)
        .into_par_iter()
        .map(|t| {
            let mut acc = written_zeros(len);
            let end = ((t + 1) * per).min(batch);
            let mut n0 = t * per;
            while n0 < end {
                let count = images.min(end - n0);
                f(n0, count, &mut acc, par);
                n0 += count;
            }
            acc
        })
        .collect()
}

/// Group `grp`'s output planes of the `nb` images of `dy` side by side:
/// `dyt[o, b hw_out + q] = dy[b, grp og + o, q]` (`og x nb hw_out`, leading dimension `ld`).
pub(crate) fn dy_side_by_side<T: Elem>(
    g: &ConvGeometry,
    dy: &[T],
    grp: usize,
    nb: usize,
    dyt: &mut [T],
    ld: usize,
) {
    let (og, hw) = (g.og(), g.hw_out());
    let ys = g.c_out * hw;
    for b in 0..nb {
        for o in 0..og {
            dyt[o * ld + b * hw..][..hw].copy_from_slice(&dy[b * ys + (grp * og + o) * hw..][..hw]);
        }
    }
}
