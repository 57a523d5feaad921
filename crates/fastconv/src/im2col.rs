//! im2col and its adjoint col2im for one group of one image, on a band of output rows.
//!
//! `cols[(c, a, b), (i - i0) wo + j] = x[c, s i + a - p, s j + b - p]` (zero outside the image),
//! rows ordered like the weight `[c, a, b]`, so `y = W cols` (001 eq. 1's convolution as a GEMM).

use crate::elem::Elem;
use crate::geometry::ConvGeometry;

/// Output indices `j` in `0..n_out` whose input index `s j + b - p` lies in `0..n_in`, as `j0..j1`.
fn valid_range(b: usize, p: usize, s: usize, n_in: usize, n_out: usize) -> (usize, usize) {
    let j0 = if b >= p { 0 } else { (p - b).div_ceil(s) };
    let j1 = if n_in + p > b {
        ((n_in - 1 + p - b) / s + 1).min(n_out)
    } else {
        0
    };
    (j0.min(j1), j1)
}

/// Fill `cols` (`k_rows x (i1 - i0) wo`, row-major with leading dimension `ld >= (i1 - i0) wo`;
/// the other columns are left alone) from `x` (`[cg, h, w]` of one group).
pub(crate) fn im2col<T: Elem>(
    g: &ConvGeometry,
    x: &[T],
    i0: usize,
    i1: usize,
    cols: &mut [T],
    ld: usize,
) {
    let tw = (i1 - i0) * g.wo;
    debug_assert!(ld >= tw);
    let flat = g.stride == 1 && g.wo == g.w;
    for (c, xc) in x.chunks_exact(g.hw_in()).enumerate().take(g.cg()) {
        for a in 0..g.kh {
            for b in 0..g.kw {
                let row = &mut cols[((c * g.kh + a) * g.kw + b) * ld..][..tw];
                if flat {
                    tap_row_flat(g, xc, (a, b), (i0, i1), row);
                } else {
                    tap_row_by_rows(g, xc, (a, b), (i0, i1), row);
                }
            }
        }
    }
}

/// Tap `(a, b)`'s row of the im2col matrix of channel `xc` over output rows `i0..i1`, one
/// output row at a time (any stride and padding).
fn tap_row_by_rows<T: Elem>(
    g: &ConvGeometry,
    xc: &[T],
    (a, b): (usize, usize),
    (i0, i1): (usize, usize),
    row: &mut [T],
) {
    let (p, s, wo) = (g.padding, g.stride, g.wo);
    let (r0, r1) = valid_range(a, p, s, g.h, g.ho);
    let (j0, j1) = valid_range(b, p, s, g.w, wo);
    for (dst, i) in row.chunks_exact_mut(wo).zip(i0..i1) {
        if i < r0 || i >= r1 {
            dst.fill(T::ZERO);
            continue;
        }
        let src = &xc[(s * i + a - p) * g.w..][..g.w];
        dst[..j0].fill(T::ZERO);
        dst[j1..].fill(T::ZERO);
        if j0 == j1 {
            continue;
        }
        if s == 1 {
            let start = j0 + b - p;
            dst[j0..j1].copy_from_slice(&src[start..start + (j1 - j0)]);
        } else {
            for (j, d) in dst.iter_mut().enumerate().take(j1).skip(j0) {
                *d = src[s * j + b - p];
            }
        }
    }
}

/// [`tap_row_by_rows`] for stride 1 and output rows as wide as the input's (`wo = w`): over the
/// band's in-image rows, the row is the channel read flat from offset `(i0 + a - p) w + b - p`
/// on, one copy, after which the `|b - p|` columns per output row that wrapped around to the
/// neighbouring input row are zeroed. Rows outside the image are zeros.
fn tap_row_flat<T: Elem>(
    g: &ConvGeometry,
    xc: &[T],
    (a, b): (usize, usize),
    (i0, i1): (usize, usize),
    row: &mut [T],
) {
    let (p, w, hw) = (g.padding, g.w, g.hw_in());
    let (r0, r1) = valid_range(a, p, 1, g.h, g.ho);
    let r0 = r0.clamp(i0, i1);
    let r1 = r1.clamp(r0, i1);
    let (j0, j1) = valid_range(b, p, 1, w, w);
    row[..(r0 - i0) * w].fill(T::ZERO);
    row[(r1 - i0) * w..].fill(T::ZERO);
    if r0 == r1 {
        return;
    }
    // Flat source index of band column q: q + (i0 + a - p) w + b - p, clipped to the channel
    // (the clipped ends are wrapped columns, zeroed below).
    let shift = (i0 + a) as isize * w as isize - (p * w + p) as isize + b as isize;
    let (q0, q1) = ((r0 - i0) * w, (r1 - i0) * w);
    let lo = q0.max((-shift).max(0) as usize).min(q1);
    let hi = q1.min((hw as isize - shift).max(0) as usize).max(lo);
    if hi > lo {
        let src0 = (lo as isize + shift) as usize;
        row[lo..hi].copy_from_slice(&xc[src0..src0 + (hi - lo)]);
    }
    row[q0..lo].fill(T::ZERO);
    row[hi..q1].fill(T::ZERO);
    // Column by column down the band (a strided loop: no `memset` call per row).
    for jj in (0..j0).chain(j1..w) {
        for v in row[q0 + jj..q1].iter_mut().step_by(w) {
            *v = T::ZERO;
        }
    }
}

/// Adjoint of [`im2col`]: `x[c, s i + a - p, s j + b - p] += cols[(c, a, b), (i - i0) wo + j]`
/// (`cols` row-major with leading dimension `ld >= (i1 - i0) wo`).
pub(crate) fn col2im<T: Elem>(
    g: &ConvGeometry,
    cols: &[T],
    i0: usize,
    i1: usize,
    x: &mut [T],
    ld: usize,
) {
    let (p, s, wo) = (g.padding, g.stride, g.wo);
    let tw = (i1 - i0) * wo;
    debug_assert!(ld >= tw);
    let hw = g.hw_in();
    for (c, xc) in x.chunks_exact_mut(hw).enumerate().take(g.cg()) {
        for a in 0..g.kh {
            let (r0, r1) = valid_range(a, p, s, g.h, g.ho);
            for b in 0..g.kw {
                let (j0, j1) = valid_range(b, p, s, g.w, wo);
                let row = &cols[((c * g.kh + a) * g.kw + b) * ld..][..tw];
                for (src, i) in row.chunks_exact(wo).zip(i0..i1) {
                    if i < r0 || i >= r1 || j0 == j1 {
                        continue;
                    }
                    let dst = &mut xc[(s * i + a - p) * g.w..][..g.w];
                    if s == 1 {
                        let start = j0 + b - p;
                        for (d, &v) in dst[start..start + (j1 - j0)].iter_mut().zip(&src[j0..j1]) {
                            *d += v;
                        }
                    } else {
                        for (j, &v) in src.iter().enumerate().take(j1).skip(j0) {
                            dst[s * j + b - p] += v;
                        }
                    }
                }
            }
        }
    }
}

/// How a whole image (all output rows) goes into and out of columns, for images too small
/// for [`im2col`]'s row copies to pay: chosen once per layer by [`Gather::new`].
pub(crate) enum Gather {
    /// `1 x 1`, stride 1, no padding: `cols[c, q] = x[c, q]`, one copy per channel.
    Pointwise,
    /// Stride 1, output as large as the input and 2, 4 or 8 pixels wide: [`im2col_padded`] and
    /// [`col2im_padded`], one copy of a whole output row at a time.
    Padded2,
    Padded4,
    Padded8,
    /// Any other layer: one load per element through the table of [`Gather::table`].
    Table(Vec<u32>),
}

impl Gather {
    /// The way for layer `g`; the table is built only for the layers that need it.
    pub(crate) fn new(g: &ConvGeometry) -> Self {
        if g.is_pointwise() {
            return Self::Pointwise;
        }
        if g.stride == 1 && (g.h, g.w) == (g.ho, g.wo) {
            match g.wo {
                2 => return Self::Padded2,
                4 => return Self::Padded4,
                8 => return Self::Padded8,
                _ => {}
            }
        }
        Self::Table(Self::table(g))
    }

    /// Gather table: entry `(a kw + b) hw_out + i wo + j` is the input pixel
    /// `(s i + a - p) w + (s j + b - p)` of a channel that kernel tap `(a, b)` of output pixel
    /// `(i, j)` reads, or `hw_in` when it falls in the zero padding.
    fn table(g: &ConvGeometry) -> Vec<u32> {
        let (p, s, hw_in) = (g.padding, g.stride, g.hw_in());
        let mut t = Vec::with_capacity(g.kh * g.kw * g.hw_out());
        for a in 0..g.kh {
            for b in 0..g.kw {
                for i in 0..g.ho {
                    for j in 0..g.wo {
                        let (ii, jj) = (s * i + a, s * j + b);
                        let inside = ii >= p && ii - p < g.h && jj >= p && jj - p < g.w;
                        let k = if inside {
                            (ii - p) * g.w + jj - p
                        } else {
                            hw_in
                        };
                        t.push(k as u32);
                    }
                }
            }
        }
        t
    }

    /// Elements of the scratch `xe` of [`Gather::im2col`] and [`Gather::col2im`] for `g`.
    pub(crate) fn scratch(g: &ConvGeometry) -> usize {
        (g.hw_in() + 1).max((g.h + 2 * g.padding) * (g.w + 2 * g.padding))
    }

    /// [`im2col`] of all output rows of one group of one image `x` into `cols` (leading
    /// dimension `ld`); `xe` is scratch of [`Gather::scratch`] elements. `x` may hold fewer
    /// than the group's channels (one, in [`crate::grad_weight::grad_weight_whole`]): their
    /// rows are filled.
    pub(crate) fn im2col<T: Elem>(
        &self,
        g: &ConvGeometry,
        x: &[T],
        cols: &mut [T],
        ld: usize,
        xe: &mut [T],
    ) {
        match self {
            Self::Pointwise => {
                let hw = g.hw_in();
                for (c, xc) in x.chunks_exact(hw).enumerate().take(g.cg()) {
                    cols[c * ld..][..hw].copy_from_slice(xc);
                }
            }
            Self::Padded2 => im2col_padded::<T, 2>(g, x, cols, ld, xe),
            Self::Padded4 => im2col_padded::<T, 4>(g, x, cols, ld, xe),
            Self::Padded8 => im2col_padded::<T, 8>(g, x, cols, ld, xe),
            Self::Table(table) => im2col_table(g, table, x, cols, ld, xe),
        }
    }

    /// Adjoint of [`Gather::im2col`] (the same as [`col2im`] on all output rows), added into
    /// `x`; `xe` is scratch of [`Gather::scratch`] elements.
    pub(crate) fn col2im<T: Elem>(
        &self,
        g: &ConvGeometry,
        cols: &[T],
        ld: usize,
        x: &mut [T],
        xe: &mut [T],
    ) {
        match self {
            Self::Pointwise => {
                let hw = g.hw_in();
                for (c, xc) in x.chunks_exact_mut(hw).enumerate().take(g.cg()) {
                    for (d, &v) in xc.iter_mut().zip(&cols[c * ld..][..hw]) {
                        *d += v;
                    }
                }
            }
            Self::Padded2 => col2im_padded::<T, 2>(g, cols, ld, x, xe),
            Self::Padded4 => col2im_padded::<T, 4>(g, cols, ld, x, xe),
            Self::Padded8 => col2im_padded::<T, 8>(g, cols, ld, x, xe),
            Self::Table(table) => col2im_table(g, table, cols, ld, x, xe),
        }
    }
}

/// [`im2col`] of all output rows through `table` ([`Gather::table`]), one element at a time.
fn im2col_table<T: Elem>(
    g: &ConvGeometry,
    table: &[u32],
    x: &[T],
    cols: &mut [T],
    ld: usize,
    xe: &mut [T],
) {
    let (hw_in, hw_out, taps) = (g.hw_in(), g.hw_out(), g.kh * g.kw);
    let xe = &mut xe[..hw_in + 1];
    let table = &table[..taps * hw_out];
    assert!(
        table.iter().all(|&k| k as usize <= hw_in),
        "gather table out of range"
    );
    xe[hw_in] = T::ZERO;
    for (c, xc) in x.chunks_exact(hw_in).enumerate().take(g.cg()) {
        xe[..hw_in].copy_from_slice(xc);
        for (tap, tt) in table.chunks_exact(hw_out).enumerate() {
            let row = &mut cols[(c * taps + tap) * ld..][..hw_out];
            for (d, &k) in row.iter_mut().zip(tt) {
                // SAFETY: every table entry is at most `hw_in` (asserted above) and `xe` has
                // `hw_in + 1` elements.
                *d = unsafe { *xe.get_unchecked(k as usize) };
            }
        }
    }
}

/// [`Gather::im2col`] for stride 1, output rows of `W` pixels and as many as the input's: each
/// channel is copied once into the zero-padded `padded` (`(h + 2p) x (W + 2p)`, the border
/// zeroed once per call), and output row `i` of tap `(a, b)` is then the run
/// `padded[(i + a) (W + 2p) + b..][..W]`: one copy of `W` elements, compiled inline, where the
/// table took `W` single loads.
fn im2col_padded<T: Elem, const W: usize>(
    g: &ConvGeometry,
    x: &[T],
    cols: &mut [T],
    ld: usize,
    padded: &mut [T],
) {
    let (p, h) = (g.padding, g.h);
    let pw = W + 2 * p;
    let padded = &mut padded[..(h + 2 * p) * pw];
    padded.fill(T::ZERO);
    for (c, xc) in x.chunks_exact(h * W).enumerate().take(g.cg()) {
        for (r, src) in xc.chunks_exact(W).enumerate() {
            padded[(r + p) * pw + p..][..W].copy_from_slice(src);
        }
        for a in 0..g.kh {
            for b in 0..g.kw {
                let row = &mut cols[((c * g.kh + a) * g.kw + b) * ld..][..h * W];
                for (i, dst) in row.chunks_exact_mut(W).enumerate() {
                    dst.copy_from_slice(&padded[(i + a) * pw + b..][..W]);
                }
            }
        }
    }
}

/// Adjoint of [`im2col_table`]: `x[c][table[(a, b), q]] += cols[(c, a, b), q]`.
fn col2im_table<T: Elem>(
    g: &ConvGeometry,
    table: &[u32],
    cols: &[T],
    ld: usize,
    x: &mut [T],
    xe: &mut [T],
) {
    let (hw_in, hw_out, taps) = (g.hw_in(), g.hw_out(), g.kh * g.kw);
    let xe = &mut xe[..hw_in + 1];
    for (c, xc) in x.chunks_exact_mut(hw_in).enumerate().take(g.cg()) {
        xe.fill(T::ZERO);
        for (tap, tt) in table.chunks_exact(hw_out).enumerate().take(taps) {
            let row = &cols[(c * taps + tap) * ld..][..hw_out];
            for (&v, &k) in row.iter().zip(tt) {
                xe[k as usize] += v;
            }
        }
        for (d, &v) in xc.iter_mut().zip(&xe[..hw_in]) {
            *d += v;
        }
    }
}

/// Adjoint of [`im2col_padded`]: every tap's output rows are added into the zero-padded
/// `padded` at `(i + a) (W + 2p) + b`, `W` elements at a time, tap after tap (each pixel sums
/// its taps in the order of [`col2im_table`], so the results are the same bit for bit), and
/// the interior is added to the channel.
fn col2im_padded<T: Elem, const W: usize>(
    g: &ConvGeometry,
    cols: &[T],
    ld: usize,
    x: &mut [T],
    padded: &mut [T],
) {
    let (p, h) = (g.padding, g.h);
    let pw = W + 2 * p;
    let padded = &mut padded[..(h + 2 * p) * pw];
    for (c, xc) in x.chunks_exact_mut(h * W).enumerate().take(g.cg()) {
        padded.fill(T::ZERO);
        for a in 0..g.kh {
            for b in 0..g.kw {
                let row = &cols[((c * g.kh + a) * g.kw + b) * ld..][..h * W];
                for (i, src) in row.chunks_exact(W).enumerate() {
                    for (d, &v) in padded[(i + a) * pw + b..][..W].iter_mut().zip(src) {
                        *d += v;
                    }
                }
            }
        }
        for (r, dst) in xc.chunks_exact_mut(W).enumerate() {
            for (d, &v) in dst.iter_mut().zip(&padded[(r + p) * pw + p..][..W]) {
                *d += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The one-copy [`tap_row_flat`] equals the row-by-row [`tap_row_by_rows`] bit for bit,
        /// on bands anywhere in the image (padding `(k - 1) / 2`, so output rows are input wide).
        #[test]
        fn flat_tap_rows_are_the_row_by_row_ones(
            cg in 1usize..4, h in 1usize..12, w in 1usize..12, k in prop_oneof![Just(1usize), Just(3), Just(5)],
            band in (0usize..12, 1usize..12), seed in any::<u64>(),
        ) {
            let g = ConvGeometry::new(&[1, cg, h, w], &[1, cg, k, k], (k - 1) / 2, 1, 1);
            prop_assume!(g.is_ok());
            let g = g.unwrap();
            prop_assert_eq!(g.wo, w);
            let i0 = band.0 % g.ho;
            let i1 = (i0 + band.1).min(g.ho);
            let x: Vec<f64> = (0..cg * h * w).map(|i| ((i as u64 ^ seed) % 1009) as f64 - 504.0).collect();
            let tw = (i1 - i0) * w;
            for c in 0..cg {
                let xc = &x[c * h * w..][..h * w];
                for tap in 0..k * k {
                    let (a, b) = (tap / k, tap % k);
                    let (mut flat, mut rows) = (vec![f64::NAN; tw], vec![f64::NAN; tw]);
                    tap_row_flat(&g, xc, (a, b), (i0, i1), &mut flat);
                    tap_row_by_rows(&g, xc, (a, b), (i0, i1), &mut rows);
                    prop_assert_eq!(flat, rows, "channel {} tap {:?}", c, (a, b));
                }
            }
        }
    }

    /// `<im2col(x), c> = <x, col2im(c)>` for random x, c (adjointness), and im2col against the
    /// defining formula evaluated pixel by pixel.
    #[test]
    fn im2col_matches_formula_and_col2im_is_adjoint() {
        for &(h, w, k, p, s) in &[
            (5, 7, 3, 1, 1),
            (6, 5, 3, 1, 2),
            (9, 9, 5, 2, 2),
            (4, 4, 1, 0, 2),
            (3, 8, 9, 4, 1),
            (8, 8, 3, 1, 1),
            (4, 4, 5, 2, 1),
            (2, 2, 3, 1, 1),
            (1, 2, 1, 0, 1),
            (4, 8, 3, 0, 1),
        ] {
            let g = ConvGeometry::new(&[1, 2, h, w], &[1, 2, k, k], p, s, 1).unwrap();
            let x: Vec<f64> = (0..2 * h * w)
                .map(|i| ((i * 37 % 101) as f64).sin())
                .collect();
            let (i0, i1) = (g.ho / 3, g.ho);
            let tw = (i1 - i0) * g.wo;
            let mut cols = vec![f64::NAN; g.k_rows() * tw];
            im2col(&g, &x, i0, i1, &mut cols, tw);
            for c in 0..2 {
                for a in 0..k {
                    for b in 0..k {
                        for i in i0..i1 {
                            for j in 0..g.wo {
                                let (ii, jj) = (
                                    (s * i + a) as isize - p as isize,
                                    (s * j + b) as isize - p as isize,
                                );
                                let inside =
                                    ii >= 0 && jj >= 0 && (ii as usize) < h && (jj as usize) < w;
                                let want = if inside {
                                    x[c * h * w + ii as usize * w + jj as usize]
                                } else {
                                    0.0
                                };
                                assert_eq!(
                                    cols[((c * k + a) * k + b) * tw + (i - i0) * g.wo + j],
                                    want
                                );
                            }
                        }
                    }
                }
            }
            // The gather versions on all output rows, with a leading dimension > width (the
            // padded copies for stride 1 and outputs of 2, 4 or 8 pixels as wide as the input).
            let full = g.hw_out();
            let ld = full + 3;
            let gather = Gather::new(&g);
            let mut xe = vec![0.0; Gather::scratch(&g)];
            let (mut c_row, mut c_gather) =
                (vec![7.0; g.k_rows() * ld], vec![7.0; g.k_rows() * ld]);
            im2col(&g, &x, 0, g.ho, &mut c_row, ld);
            gather.im2col(&g, &x, &mut c_gather, ld, &mut xe);
            assert_eq!(c_row, c_gather);
            let dc: Vec<f64> = (0..c_row.len())
                .map(|i| ((i * 7 % 31) as f64).sin())
                .collect();
            let (mut x_row, mut x_gather) = (vec![1.0; x.len()], vec![1.0; x.len()]);
            col2im(&g, &dc, 0, g.ho, &mut x_row, ld);
            gather.col2im(&g, &dc, ld, &mut x_gather, &mut xe);
            for (a, b) in x_row.iter().zip(&x_gather) {
                assert!((a - b).abs() < 1e-12, "{a} vs {b}");
            }
            let r: Vec<f64> = (0..cols.len())
                .map(|i| ((i * 13 % 29) as f64).cos())
                .collect();
            let mut xr = vec![0.0; x.len()];
            col2im(&g, &r, i0, i1, &mut xr, tw);
            let lhs: f64 = cols.iter().zip(&r).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&xr).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-9 * (1.0 + lhs.abs()),
                "{lhs} vs {rhs}"
            );
        }
    }
}
