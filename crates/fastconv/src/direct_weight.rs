//! Weight gradient of a stride-1 convolution in f32 with AVX-512, no im2col:
//! `dw[o, c, a, b] = sum_{n, i, j} dy[n, o, i, j] xp[n, g(o) cg + c, i + a, j + b]` (the adjoint
//! of 001 eq. 1 in `w`), `xp` the input zero-padded by `p`.
//!
//! The output channels lie in the vector lanes: `dy` is transposed per image to `[pixel][32
//! channels]` per block of [`OUT_BLOCK`] = 32 channels. A tile holds the sums of those 32
//! channels (two registers) for up to [`TAPS`] taps `(c, a, b)` of one input channel, 24
//! registers at most; per output pixel it loads the pixel's 32 `dy`, broadcasts the tile's input
//! values `xp[c, i + a, j + b]` and runs `2 x taps` fused multiply-adds, as a GEMM over the
//! pixels would, but reading the taps straight from the padded image. Bands of [`BAND_PIXELS`]
//! keep the band's transposed `dy` in L1 while every input channel passes over it.

use crate::batch::sum_over_chunks;
use crate::direct::{direct_capable, pad, padded_plane, padded_width};
use crate::elem::Elem;
use crate::geometry::ConvGeometry;
use gemm::Parallelism;
use rayon::prelude::*;

/// Output channels per tile: two 16-lane registers.
const OUT_BLOCK: usize = 32;
/// Taps per tile at most: `2 x 12 = 24` accumulators.
const TAPS: usize = 12;
/// Output pixels per band: the band's transposed `dy` of 32 channels, 32 KiB, stays in L1.
const BAND_PIXELS: usize = 256;

/// Whether [`grad_weight`] runs `g`: [`direct_capable`] and output channels per group a
/// multiple of 32 (any row width).
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    direct_capable(g) && g.og().is_multiple_of(OUT_BLOCK)
}

/// `dw` of `g` (contiguous `x: [N, C_in, H, W]`, `dy: [N, C_out, ho, wo]`) as a fresh
/// `[C_out, C_in / G, kh, kw]`; call only when [`applies`]`(g)`.
pub(crate) fn grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(applies(g), "direct weight gradient called for {g:?}");
    assert!(x.len() == g.batch * g.c_in * g.hw_in() && dy.len() == g.batch * g.c_out * g.hw_out());
    let (xs, ys, plane, hw, kr) = (
        g.c_in * g.hw_in(),
        g.c_out * g.hw_out(),
        padded_plane(g),
        g.hw_out(),
        g.k_rows(),
    );
    let block = OUT_BLOCK * kr;
    let wp = padded_width(g);
    // Each tap's offset in the padded plane, `(a, b)` in the kernel's order.
    let offsets: Vec<usize> = (0..g.kh)
        .flat_map(|a| (0..g.kw).map(move |b| a * wp + b))
        .collect();
    // Per worker: `[block][k_rows][32]`, block `b` = group `b / (og / 32)`.
    let blocked = sum_over_chunks(g.batch, 1, g.c_out * kr, |n, _, dwt, par| {
        f32::with_scratch(g.c_in * plane + ys, |buf| {
            let (xp, dyt) = buf.split_at_mut(g.c_in * plane);
            pad(g, &x[n * xs..][..xs], xp);
            transpose_blocks(&dy[n * ys..][..ys], hw, dyt);
            let (xp, dyt) = (&*xp, &*dyt);
            let run = |(b, acc): (usize, &mut [f32])| {
                let grp = b / (g.og() / OUT_BLOCK);
                let xg = &xp[grp * g.cg() * plane..][..g.cg() * plane];
                let dyb = &dyt[b * OUT_BLOCK * hw..][..OUT_BLOCK * hw];
                out_block(g, &offsets, xg, dyb, acc);
            };
            match par {
                Parallelism::None => dwt.chunks_mut(block).enumerate().for_each(run),
                _ => dwt.par_chunks_mut(block).enumerate().for_each(run),
            }
        })
    });
    let mut dw = vec![0f32; blocked.len()];
    for (b, src) in blocked.chunks_exact(block).enumerate() {
        for (k, lanes) in src.chunks_exact(OUT_BLOCK).enumerate() {
            for (o, v) in lanes.iter().enumerate() {
                dw[(b * OUT_BLOCK + o) * kr + k] = *v;
            }
        }
    }
    dw
}

/// `dyt[b][p][o] = dy[b 32 + o][p]`: each block of 32 output planes as pixel-major rows of 32.
fn transpose_blocks(dy: &[f32], hw: usize, dyt: &mut [f32]) {
    for (src, dst) in dy
        .chunks_exact(OUT_BLOCK * hw)
        .zip(dyt.chunks_exact_mut(OUT_BLOCK * hw))
    {
        for (o, plane) in src.chunks_exact(hw).enumerate() {
            for (p, v) in plane.iter().enumerate() {
                dst[p * OUT_BLOCK + o] = *v;
            }
        }
    }
}

/// Adds to `acc` (`[k_rows][32]`) the sums over one image of its padded input `xg` (`cg`
/// planes of the block's group, read at the taps' `offsets`) times the block's transposed `dy`
/// (`[hw][32]`).
fn out_block(g: &ConvGeometry, offsets: &[usize], xg: &[f32], dyt: &[f32], acc: &mut [f32]) {
    let (wp, plane, kk) = (padded_width(g), padded_plane(g), g.kh * g.kw);
    let band_rows = BAND_PIXELS.div_ceil(g.wo).max(1);
    // Bounds of every access in `taps`: the last pixel `(ho - 1, wo - 1)` at the largest tap
    // offset stays inside one padded plane; `dyt` has 32 values per pixel.
    assert!(offsets.len() == kk && (g.ho - 1) * wp + g.wo - 1 + offsets[kk - 1] < plane);
    assert!(xg.len() == g.cg() * plane && dyt.len() == OUT_BLOCK * g.hw_out());
    assert!(acc.len() == OUT_BLOCK * g.k_rows());
    for i0 in (0..g.ho).step_by(band_rows) {
        let rows = band_rows.min(g.ho - i0);
        let band = Band {
            i0,
            rows,
            wo: g.wo,
            wp,
        };
        for c in 0..g.cg() {
            for (t0, offs) in offsets.chunks(TAPS).enumerate().map(|(q, o)| (q * TAPS, o)) {
                let k0 = c * kk + t0;
                let sums = &mut acc[k0 * OUT_BLOCK..][..offs.len() * OUT_BLOCK];
                // SAFETY: AVX-512F checked by `applies`; every read `c plane + i wp + j +
                // offset` lies in plane `c` of `xg` and every `dyt` read below `hw 32` (asserts
                // above); `sums` holds `offs.len()` rows of 32.
                unsafe {
                    let xc = xg.as_ptr().add(c * plane);
                    kernel::taps(&band, xc, offs, dyt.as_ptr(), sums);
                }
            }
        }
    }
}

/// Output rows `i0 .. i0 + rows` of `wo` pixels; input rows `wp` wide.
struct Band {
    i0: usize,
    rows: usize,
    wo: usize,
    wp: usize,
}

mod kernel {
    use super::{Band, OUT_BLOCK, TAPS};
    use std::arch::x86_64::*;

    /// `sums[t][o] += sum over the band's pixels p = (i, j) of dyt[p][o] x[i wp + j + offs[t]]`.
    ///
    /// # Safety
    /// AVX-512F present; `x`, `dyt` valid for every offset formed (checked by `out_block`);
    /// `sums` holds `offs.len() x 32` values.
    pub(super) unsafe fn taps(
        band: &Band,
        x: *const f32,
        offs: &[usize],
        dyt: *const f32,
        sums: &mut [f32],
    ) {
        macro_rules! dispatch {
            ($($n:literal)*) => {
                match offs.len() {
                    $($n => taps_n::<$n>(band, x, offs.try_into().unwrap(), dyt, sums),)*
                    _ => unreachable!("at most {TAPS} taps per tile"),
                }
            };
        }
        dispatch!(1 2 3 4 5 6 7 8 9 10 11 12)
    }

    #[target_feature(enable = "avx512f")]
    // Indexed loops: each broadcast input value is used right away by its two multiply-adds.
    #[allow(clippy::needless_range_loop)]
    unsafe fn taps_n<const T: usize>(
        band: &Band,
        x: *const f32,
        offs: [usize; T],
        dyt: *const f32,
        sums: &mut [f32],
    ) {
        assert!(sums.len() == T * OUT_BLOCK);
        let s = sums.as_mut_ptr();
        let mut r: [[__m512; 2]; T] = std::array::from_fn(|t| {
            [
                _mm512_loadu_ps(s.add(t * OUT_BLOCK)),
                _mm512_loadu_ps(s.add(t * OUT_BLOCK + 16)),
            ]
        });
        for i in band.i0..band.i0 + band.rows {
            let xi = x.add(i * band.wp);
            let di = dyt.add(i * band.wo * OUT_BLOCK);
            for j in 0..band.wo {
                let d0 = _mm512_loadu_ps(di.add(j * OUT_BLOCK));
                let d1 = _mm512_loadu_ps(di.add(j * OUT_BLOCK + 16));
                let xj = xi.add(j);
                for t in 0..T {
                    let v = _mm512_set1_ps(*xj.add(offs[t]));
                    r[t][0] = _mm512_fmadd_ps(d0, v, r[t][0]);
                    r[t][1] = _mm512_fmadd_ps(d1, v, r[t][1]);
                }
            }
        }
        for t in 0..T {
            _mm512_storeu_ps(s.add(t * OUT_BLOCK), r[t][0]);
            _mm512_storeu_ps(s.add(t * OUT_BLOCK + 16), r[t][1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_tests::{f32s, f64s, max_err, reference, values};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The direct weight gradient in f32 against the f64 loops of the adjoint of 001 eq. 1
        /// (relative 1e-5): rectangular kernels up to 5x5 (tiles of 12, 12 and 1 taps),
        /// paddings 0..3, any row width, groups, one image (blocks across threads) or several
        /// (images across threads), bands of several rows. Without AVX-512 only `applies()`
        /// is checked.
        #[test]
        fn direct_weight_gradient_matches_the_defining_loops(
            n in 1usize..4, cg in 1usize..6, blocks in 1usize..3, groups in 1usize..3,
            h in 1usize..40, w in 1usize..40, kh in 1usize..6, kw in 1usize..6,
            padding in 0usize..3, seed in any::<u64>(),
        ) {
            let og = blocks * OUT_BLOCK;
            let Ok(g) = ConvGeometry::new(
                &[n, cg * groups, h, w], &[og * groups, cg, kh, kw], padding, 1, groups,
            ) else {
                return Ok(());
            };
            let shape = !g.is_pointwise();
            prop_assert_eq!(applies(&g), shape && crate::direct::cpu_has_avx512());
            if !applies(&g) {
                return Ok(());
            }
            let x = values(seed, n * g.c_in * g.hw_in());
            let dy = values(seed ^ 5, n * g.c_out * g.hw_out());
            let wt = vec![0.0; g.c_out * g.k_rows()];
            let [_, _, want] = reference(&g, &x, &wt, &dy);
            let got = f64s(&grad_weight(&g, &f32s(&x), &f32s(&dy)));
            let err = max_err(&got, &want);
            prop_assert!(err < 1e-5, "relative error {err} for {g:?}");
        }
    }

    /// Stride 2, 1x1 unpadded kernels and 16 output channels stay on the GEMM path.
    #[test]
    fn other_layers_keep_the_gemm_path() {
        for (c_out, k, pad, stride) in [(32, 3, 1, 2), (32, 1, 0, 1), (16, 3, 1, 1)] {
            let g = ConvGeometry::new(&[2, 8, 16, 16], &[c_out, 8, k, k], pad, stride, 1).unwrap();
            assert!(!applies(&g), "{g:?}");
            assert!(f32::direct_grad_weight(&g, &[0.0; 4096], &[]).is_none());
        }
    }
}
