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
/// image order (deterministic).
pub(crate) fn grad_bias<T: Elem>(dy: &[T], c_out: usize, hw: usize) -> Vec<T> {
    let per_image = c_out * hw;
    (0..c_out)
        .into_par_iter()
        .map(|o| {
            let mut acc = T::ZERO;
            if per_image > 0 {
                for dyn_ in dy.chunks(per_image) {
                    let mut s = T::ZERO;
                    dyn_[o * hw..][..hw].iter().for_each(|&v| s += v);
                    acc += s;
                }
            }
            acc
        })
        .collect()
}
