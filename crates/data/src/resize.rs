//! Resampling of stored images to the experiment's mesh (SPEC section 6): exact area averaging
//! when shrinking, bicubic (Keys a = -1/2, Catmull-Rom) when enlarging or for the antialiased
//! bicubic downsampling of super-resolution.
//!
//! Images are planar `[C, H, W]` f32 buffers; both filters are separable and applied per axis.

/// How one axis is resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Area average: output cell `i` is the mean of the input over `[i s, (i+1) s)`, `s = in/out`.
    Area,
    /// Keys cubic convolution `k(x) = 1.5|x|^3 - 2.5|x|^2 + 1` (`|x|<1`),
    /// `-0.5|x|^3 + 2.5|x|^2 - 4|x| + 2` (`1<=|x|<2`), stretched by `s = in/out` when shrinking
    /// (antialiasing, as MATLAB `imresize`), edges replicated, taps renormalised to sum 1.
    Bicubic,
}

/// Keys cubic kernel with `a = -1/2`.
fn keys(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.5 * x * x * x - 2.5 * x * x + 1.0
    } else if x < 2.0 {
        -0.5 * x * x * x + 2.5 * x * x - 4.0 * x + 2.0
    } else {
        0.0
    }
}

/// Taps `(input index, weight)` of every output sample of one axis resampled `len_in -> len_out`.
fn taps(len_in: usize, len_out: usize, filter: Filter) -> Vec<Vec<(usize, f32)>> {
    let s = len_in as f64 / len_out as f64;
    (0..len_out)
        .map(|i| match filter {
            Filter::Area => {
                let (a, b) = (i as f64 * s, (i + 1) as f64 * s);
                let lo = a.floor() as usize;
                let hi = (b.ceil() as usize).min(len_in);
                (lo..hi)
                    .map(|j| (j, ((b.min(j as f64 + 1.0) - a.max(j as f64)) / s) as f32))
                    .filter(|&(_, w)| w > 0.0)
                    .collect()
            }
            Filter::Bicubic => {
                let f = s.max(1.0);
                let x = (i as f64 + 0.5) * s - 0.5;
                let lo = (x - 2.0 * f).floor() as i64 + 1;
                let hi = (x + 2.0 * f).floor() as i64;
                let raw: Vec<(usize, f64)> = (lo..=hi)
                    .map(|j| {
                        (
                            j.clamp(0, len_in as i64 - 1) as usize,
                            keys((x - j as f64) / f),
                        )
                    })
                    .collect();
                let total: f64 = raw.iter().map(|t| t.1).sum();
                raw.into_iter()
                    .map(|(j, w)| (j, (w / total) as f32))
                    .collect()
            }
        })
        .collect()
}

/// Resamples a planar `[c, h, w]` image to `[c, oh, ow]` with `filter` on both axes.
pub fn resample(
    src: &[f32],
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    filter: Filter,
) -> Vec<f32> {
    let (tx, ty) = (taps(w, ow, filter), taps(h, oh, filter));
    let mut rows = vec![0f32; c * h * ow];
    for (plane, out) in src.chunks_exact(h * w).zip(rows.chunks_exact_mut(h * ow)) {
        for (row, orow) in plane.chunks_exact(w).zip(out.chunks_exact_mut(ow)) {
            for (o, t) in orow.iter_mut().zip(&tx) {
                *o = t.iter().map(|&(j, wt)| row[j] * wt).sum();
            }
        }
    }
    let mut dst = vec![0f32; c * oh * ow];
    for (plane, out) in rows.chunks_exact(h * ow).zip(dst.chunks_exact_mut(oh * ow)) {
        for (orow, t) in out.chunks_exact_mut(ow).zip(&ty) {
            for &(i, wt) in t {
                for (o, v) in orow.iter_mut().zip(&plane[i * ow..(i + 1) * ow]) {
                    *o += v * wt;
                }
            }
        }
    }
    dst
}

/// Resizes a planar `[c, h, w]` image to `[c, n, n]`: area filter where an axis shrinks, bicubic
/// where it grows (SPEC section 6), identity where it keeps its length.
pub fn resize_square(src: &[f32], c: usize, h: usize, w: usize, n: usize) -> Vec<f32> {
    let pick = |from: usize| {
        if n < from {
            Filter::Area
        } else {
            Filter::Bicubic
        }
    };
    if (h, w) == (n, n) {
        return src.to_vec();
    }
    let (fy, fx) = (pick(h), pick(w));
    if fy == fx {
        return resample(src, c, h, w, n, n, fy);
    }
    let tmp = resample(src, c, h, w, h, n, fx);
    resample(&tmp, c, h, n, n, n, fy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_2x_is_2x2_mean_and_bicubic_keeps_constants_and_linear_ramps() {
        let src: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let out = resample(&src, 1, 4, 4, 2, 2, Filter::Area);
        assert_eq!(out, vec![2.5, 4.5, 10.5, 12.5]);
        let ones = vec![1f32; 3 * 5 * 7];
        for v in resample(&ones, 3, 5, 7, 11, 9, Filter::Bicubic) {
            assert!((v - 1.0).abs() < 1e-6);
        }
        // Bicubic reproduces linear functions away from the replicated border.
        let ramp: Vec<f32> = (0..8 * 8).map(|k| (k % 8) as f32).collect();
        let up = resample(&ramp, 1, 8, 8, 16, 16, Filter::Bicubic);
        for x in 4..12 {
            let expect = (x as f32 + 0.5) / 2.0 - 0.5;
            assert!(
                (up[5 * 16 + x] - expect).abs() < 1e-5,
                "{x}: {}",
                up[5 * 16 + x]
            );
        }
    }

    #[test]
    fn area_non_integer_factor_preserves_the_mean() {
        let src: Vec<f32> = (0..7 * 5).map(|k| ((k * 37) % 11) as f32).collect();
        let out = resample(&src, 1, 7, 5, 3, 2, Filter::Area);
        let m_in: f32 = src.iter().sum::<f32>() / src.len() as f32;
        let m_out: f32 = out.iter().sum::<f32>() / out.len() as f32;
        assert!((m_in - m_out).abs() < 1e-4);
    }
}
