//! Work split over the batch: one image per task on the rayon pool, GEMMs single-threaded
//! inside; when the batch is smaller than the pool, the GEMMs get the threads instead.

use crate::elem::Elem;
use gemm::Parallelism;
use rayon::prelude::*;

/// `(workers, parallelism inside one image)`: all threads across images when the batch has at
/// least one image per thread, else one worker whose GEMMs use every thread.
pub(crate) fn plan(batch: usize) -> (usize, Parallelism) {
    let threads = rayon::current_num_threads().max(1);
    if batch >= threads {
        (threads, Parallelism::None)
    } else if threads > 1 {
        (1, Parallelism::Rayon(threads))
    } else {
        (1, Parallelism::None)
    }
}

/// Call `f(n, out_n, par)` for every image `n`, where `out_n` is the `n`-th chunk of `per_image`
/// elements of `out`.
pub(crate) fn for_each_image<T: Elem>(
    out: &mut [T],
    per_image: usize,
    f: impl Fn(usize, &mut [T], Parallelism) + Sync,
) {
    if per_image == 0 || out.is_empty() {
        return;
    }
    let (workers, par) = plan(out.len() / per_image);
    if workers > 1 {
        out.par_chunks_mut(per_image)
            .enumerate()
            .for_each(|(n, o)| f(n, o, par));
    } else {
        out.chunks_mut(per_image)
            .enumerate()
            .for_each(|(n, o)| f(n, o, par));
    }
}

/// Sum over images of `f(n, acc, par)` accumulated into per-worker buffers of `len` zeros, each
/// worker taking a contiguous range of images (deterministic for a given pool size).
pub(crate) fn sum_over_images<T: Elem>(
    batch: usize,
    len: usize,
    f: impl Fn(usize, &mut [T], Parallelism) + Sync,
) -> Vec<T> {
    let (workers, par) = plan(batch);
    let per = batch.div_ceil(workers).max(1);
    let partials: Vec<Vec<T>> = (0..workers)
        .into_par_iter()
        .map(|t| {
            let mut acc = vec![T::ZERO; len];
            for n in (t * per)..((t + 1) * per).min(batch) {
                f(n, &mut acc, par);
            }
            acc
        })
        .collect();
    let mut it = partials.into_iter();
    let mut total = it.next().unwrap_or_else(|| vec![T::ZERO; len]);
    for p in it {
        for (a, b) in total.iter_mut().zip(&p) {
            *a += *b;
        }
    }
    total
}
