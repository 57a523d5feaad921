//! Per-channel convolution bias, fused into the forward op: `y[n, o, :] += b[o]`, and its
//! gradient `db[o] = sum_{n, i, j} dy[n, o, i, j]`.

use crate::elem::Elem;
use rayon::prelude::*;

/// `y[n, o, p] += b[o]` for `y` laid out `[N, C_out, P]` (`P = hw` elements per channel).
pub(crate) fn add_bias<T: Elem>(y: &mut [T], b: &[T], hw: usize) {
    if hw == 0 || b.is_empty() {
        return;
    }
    y.par_chunks_mut(b.len() * hw).for_each(|yn| {
        for (yc, &bo) in yn.chunks_mut(hw).zip(b) {
            yc.iter_mut().for_each(|v| *v += bo);
        }
    });
}

/// `db[o] = sum_{n, p} dy[n, o, p]` for `dy` laid out `[N, C_out, P]`, each channel summed in
/// image order, each image's plane by [`lane_sum`] (deterministic).
pub(crate) fn grad_bias<T: Elem>(dy: &[T], c_out: usize, hw: usize) -> Vec<T> {
    let per_image = c_out * hw;
    (0..c_out)
        .into_par_iter()
        .map(|o| {
            let mut acc = T::ZERO;
            if per_image > 0 {
                for dyn_ in dy.chunks(per_image) {
                    acc += lane_sum(&dyn_[o * hw..][..hw]);
                }
            }
            acc
        })
        .collect()
}

/// Partial sums that [`lane_sum`] keeps side by side.
const LANES: usize = 8;

/// `sum_i xs[i]` as [`LANES`] partial sums, lane `l` taking `xs[l], xs[l + LANES], ...`, added
/// pairwise, then the tail in order: independent additions that vectorise, where one running
/// sum waits for every addition before it.
fn lane_sum<T: Elem>(xs: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            let v = acc[l + width];
            acc[l] += v;
        }
    }
    let mut total = acc[0];
    for &v in chunks.remainder() {
        total += v;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::lane_sum;
    use proptest::prelude::*;

    proptest! {
        /// Within f64 rounding of the sum in f64 of the same f32 values, on every length
        /// (tails included).
        #[test]
        fn lane_sum_is_the_sum(xs in proptest::collection::vec(-1.0e3f32..1.0e3, 0..100)) {
            let exact: f64 = xs.iter().map(|&v| v as f64).sum();
            let bound: f64 = xs.iter().map(|&v| (v as f64).abs()).sum::<f64>() * 1e-6 + 1e-6;
            prop_assert!((lane_sum(&xs) as f64 - exact).abs() <= bound);
            let xs64: Vec<f64> = xs.iter().map(|&v| v as f64).collect();
            prop_assert!((lane_sum(&xs64) - exact).abs() <= 1e-9 * (1.0 + bound));
        }
    }
}
