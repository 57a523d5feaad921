//! Input gradient of a stride-1 convolution as a forward convolution of `dy` with the flipped,
//! transposed kernel: `dx = conv2d(dy, W')`, `W'[g cg + c, o, a, b] = W[g og + o, c, kh - 1 - a,
//! kw - 1 - b]`, padding `kh - 1 - p`.
//!
//! For stride 1, `dx[c, i', j'] = sum_{o, a, b} W[o, c, a, b] dy[o, i' - a + p, j' - b + p]`;
//! with `a' = kh - 1 - a` this is the correlation of `dy` (padded by `kh - 1 - p`) with `W'`.
//! When [`crate::direct`] runs `conv2d(dy, W')`, no im2col matrix is formed at all. Otherwise, when
//! a layer narrows the channels (`og < cg`: the decoder's first convolutions, 96 -> 32), this GEMM
//! has the inner dimension `og kh kw` instead of `og` and its im2col copies `dy`
//! (`og kh kw` rows) instead of scatter-adding `cg kh kw` rows back into `dx`.

use crate::elem::Elem;
use crate::geometry::ConvGeometry;
use crate::Policy;

/// The geometry `g'` of `dx = conv2d(dy, W')` for `g`, when `g` is a stride-1, square-kernel
/// convolution with `p <= kh - 1` that either narrows the channels (`og < cg`) or whose `g'`
/// runs a kernel other than im2col + GEMM ([`Elem::has_direct`]: no im2col either way).
pub(crate) fn transposed_geometry<T: Elem>(
    g: &ConvGeometry,
    policy: Policy,
) -> Option<ConvGeometry> {
    let (cg, og, k) = (g.cg(), g.og(), g.kh);
    if g.stride != 1 || g.kw != k || g.padding >= k {
        return None;
    }
    let gt = ConvGeometry::new(
        &[g.batch, g.c_out, g.ho, g.wo],
        &[g.c_in, og, k, k],
        k - 1 - g.padding,
        1,
        g.groups,
    )
    .ok()?;
    (og < cg || T::has_direct(&gt, policy)).then_some(gt)
}

/// The geometry and kernel `(g', W')` of `dx = conv2d(dy, W')` for `g`, when
/// [`transposed_geometry`] gives one.
pub(crate) fn transposed<T: Elem>(g: &ConvGeometry, w: &[T]) -> Option<(ConvGeometry, Vec<T>)> {
    let gt = transposed_geometry::<T>(g, crate::policy())?;
    let (cg, og, k) = (g.cg(), g.og(), g.kh);
    // Flipping both kernel axes reverses each `k x k` block: `(k - 1 - a) k + (k - 1 - b) =
    // k^2 - 1 - (a k + b)`.
    let kk = k * k;
    let mut wt = vec![T::ZERO; w.len()];
    // Written in order: `wt`'s block `(grp, c, o)` from `w`'s block `(grp, o, c)`.
    for (wg, wtg) in w
        .chunks_exact(og * cg * kk)
        .zip(wt.chunks_exact_mut(og * cg * kk))
    {
        for (c, wtc) in wtg.chunks_exact_mut(og * kk).enumerate() {
            for (o, dst) in wtc.chunks_exact_mut(kk).enumerate() {
                let src = &wg[(o * cg + c) * kk..][..kk];
                for (d, &v) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = v;
                }
            }
        }
    }
    Some((gt, wt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_tests::values;
    use crate::forward::forward;
    use crate::grad_input::grad_input_with;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// `conv2d(dy, W')` equals the scatter-add input gradient (f64, 1e-12), whole-image and
        /// banded, grouped or not, and applies to exactly the narrowing stride-1 layers.
        #[test]
        fn the_transposed_convolution_is_the_input_gradient(
            n in 1usize..3, og in 1usize..4, extra in 0usize..4, groups in 1usize..3,
            h in 1usize..12, w in 1usize..40, k in prop_oneof![Just(1usize), Just(3), Just(5)],
            padding in 0usize..4, stride in 1usize..3, seed in any::<u64>(),
        ) {
            let cg = og + extra;
            let Ok(g) = ConvGeometry::new(
                &[n, cg * groups, h, w], &[og * groups, cg, k, k], padding, stride, groups,
            ) else {
                return Ok(());
            };
            let wt = values(seed, og * groups * cg * k * k);
            let dy = values(seed ^ 7, n * g.c_out * g.hw_out());
            let applies = stride == 1 && padding < k && og < cg;
            match transposed(&g, &wt) {
                None => prop_assert!(!applies),
                Some((gt, wflip)) => {
                    prop_assert!(applies);
                    let want = grad_input_with(&g, &dy, &wt, 1);
                    let got = forward(&gt, &dy, &wflip);
                    prop_assert_eq!(got.len(), want.len());
                    let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                    prop_assert!(err < 1e-12, "max error {err}");
                }
            }
        }
    }
}
