//! Direct stride-1 convolution for coarse meshes (output rows under 16 pixels) in f32 with
//! AVX-512, no im2col: `y[n, o, i, j] = sum_{c, a, b} w[o, c, a, b] xp[n, g(o) cg + c, i + a,
//! j + b]` (001 eq. 1), `xp` the input zero-padded by `p`.
//!
//! Rows of 8, 4 or 2 pixels fill a 16-lane register badly, so here the output channels lie in
//! the lanes, as in [`crate::direct_weight`]: a tile holds [`OUT_BLOCK`] = 32 output channels
//! (two registers) for up to [`PIXELS`] output pixels (`R` rows of `P` pixels), 24 sums at
//! most. Per tap `(c, a, b)` it loads the block's 64 weights as two vectors, broadcasts each
//! pixel's input value `xp[c, i + a, j + b]` from the padded image (one pointer per row, the
//! pixels at fixed offsets) and runs `2 R P` fused multiply-adds. The tile's sums go to a small
//! pixel-major buffer that is transposed into the block's output planes.
//!
//! Taken for f32 on x86-64 CPUs with AVX-512F when [`applies`]; wider rows run [`crate::direct`],
//! everything else the im2col path of [`crate::forward`].

use crate::direct::{direct_capable, for_each_block, pack_weights, padded_plane, padded_width};
use crate::geometry::ConvGeometry;

/// Output channels per register (f32 lanes of a 512-bit register).
const LANES: usize = 16;
/// Accumulator registers per tile: `V` registers of output channels times `R x P` pixels.
const ACCUMULATORS: usize = 24;
/// Weights per chunk of input channels (floats): 24 KiB, which stay in L1 while every tile of
/// the image passes over the chunk.
const CHUNK_WEIGHTS: usize = 6 * 1024;
/// Output rows below this width take this kernel (rows of 16 and more take [`crate::direct`]).
pub(crate) const NARROW: usize = 16;

/// Fewest output pixels per image. Measured at batch 16 (`docs/performance.md`, "Coarse meshes
/// with the channels in the lanes"): at 4^2 a 64-channel layer's forward + backward took 0.60
/// ms here against 0.54 ms on the GEMM path, which puts several images in one GEMM; at 2^2 a
/// 128-channel layer's forward 0.36 ms against 0.14 ms.
const MIN_PIXELS: usize = 64;
/// Most weights per group (`og cg kh kw` floats). Repacking larger weights for every call costs
/// more than this kernel saves: at 8^2, 128 -> 128 channels took 1.15 ms against the GEMM
/// path's 1.04 ms, 32 -> 32 channels 0.14 ms against 0.19 ms (`docs/performance.md`, "Coarse
/// meshes with the channels in the lanes").
const MAX_WEIGHTS: usize = 40_000;

/// Whether [`forward`] runs `g`: [`direct_capable`], output rows under [`NARROW`] pixels, at
/// least [`MIN_PIXELS`] output pixels, output channels per group a multiple of 32 and at most
/// [`MAX_WEIGHTS`] weights per group.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    direct_capable(g)
        && g.wo < NARROW
        && g.hw_out() >= MIN_PIXELS
        && g.og().is_multiple_of(2 * LANES)
        && g.og() * g.k_rows() <= MAX_WEIGHTS
}

/// Registers of output channels per tile: 4 (64 channels, 6 pixels) where `og` allows it, else
/// 2 (32 channels, 12 pixels). Four registers load per tap 4 weight vectors for 6 pixels and
/// 24 multiply-adds, two load 2 for 8 pixels and 16: fewer instructions per multiply-add.
fn registers(g: &ConvGeometry) -> usize {
    if g.og().is_multiple_of(4 * LANES) {
        4
    } else {
        2
    }
}

/// A tile: output rows `i0 .. i0 + rows`, columns `j0 .. j0 + cols`.
#[derive(Clone, Copy, Debug)]
struct Tile {
    i0: usize,
    j0: usize,
    rows: usize,
    cols: usize,
}

/// The output plane of `g` cut into tiles of at most `pixels` pixels: each row into column
/// pieces (greedily the widest of `pieces` that fits), each piece of `P` columns into tiles of
/// `pixels / P` rows (fewer in the last).
fn tiles(g: &ConvGeometry, pixels: usize, pieces: &[usize]) -> Vec<Tile> {
    let mut out = Vec::new();
    let mut j0 = 0;
    while j0 < g.wo {
        let cols = *pieces.iter().find(|&&c| c <= g.wo - j0).unwrap_or(&1);
        let most = (pixels / cols).max(1);
        out.extend((0..g.ho).step_by(most).map(|i0| Tile {
            i0,
            j0,
            rows: most.min(g.ho - i0),
            cols,
        }));
        j0 += cols;
    }
    out
}

/// The forward convolution of `g` (contiguous `x: [N, C_in, H, W]`, `w: [C_out, C_in / G, kh,
/// kw]`) into a fresh `[N, C_out, ho, wo]`; call only when [`applies`]`(g)`.
pub(crate) fn forward(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
    forward_chunked(g, x, w, CHUNK_WEIGHTS)
}

/// [`forward`] with chunks of input channels whose weights fit `chunk_weights` floats (at least
/// one channel).
fn forward_chunked(g: &ConvGeometry, x: &[f32], w: &[f32], chunk_weights: usize) -> Vec<f32> {
    assert!(applies(g), "coarse direct convolution called for {g:?}");
    assert!(x.len() == g.batch * g.c_in * g.hw_in() && w.len() == g.c_out * g.k_rows());
    let hw = g.hw_out();
    let v = registers(g);
    let channels = v * LANES;
    let packed = pack_weights(g, w, channels);
    let tiles = if v == 4 {
        tiles(g, ACCUMULATORS / 4, &[6, 4, 2, 1])
    } else {
        tiles(g, ACCUMULATORS / 2, &[8, 4, 2, 1])
    };
    // Written, not zeroed: the tiles cover every pixel once (checked here), and every block of
    // output planes of every image is transposed from its whole pixel-major buffer.
    assert_eq!(tiles.iter().map(|t| t.rows * t.cols).sum::<usize>(), hw);
    let plane = padded_plane(g);
    for_each_block(g, x, channels * hw, 1, |_, xp, b, yb| {
        let grp = b / (g.og() / channels);
        let xg = &xp[grp * g.cg() * plane..][..g.cg() * plane];
        let wb = &packed[b * g.k_rows() * channels..][..g.k_rows() * channels];
        let mut yt = vec![0f32; channels * hw];
        out_block(g, v, chunk_weights, xg, wb, &tiles, &mut yt);
        // `yb[o][p] = yt[p][o]`: every value of the block written.
        for (o, dst) in yb.chunks_exact_mut(hw).enumerate() {
            for (p, d) in dst.iter_mut().enumerate() {
                d.write(yt[p * channels + o]);
            }
        }
    })
}

/// The block's `16 v` output channels of every pixel, pixel-major, into `yt` (`[hw][16 v]`),
/// from one group's padded input `xg` (`cg` planes) and packed weights `wb` (`cg kh kw x 16 v`),
/// in chunks of input channels whose weights stay in L1.
fn out_block(
    g: &ConvGeometry,
    v: usize,
    chunk_weights: usize,
    xg: &[f32],
    wb: &[f32],
    tiles: &[Tile],
    yt: &mut [f32],
) {
    let (wp, plane, kk, channels) = (padded_width(g), padded_plane(g), g.kh * g.kw, v * LANES);
    // Bounds of every access in `tile`: the last output pixel's last tap `(ho - 1 + kh - 1) wp
    // + wo - 1 + kw - 1` lies in the padded plane, whose rows are `wp >= wo + kw - 1` wide.
    assert!((g.ho + g.kh - 2) * wp + g.wo + g.kw - 2 < plane && g.wo + g.kw - 1 <= wp);
    assert!(xg.len() == g.cg() * plane && wb.len() == g.k_rows() * channels);
    assert!(yt.len() == channels * g.hw_out());
    let chunk = (chunk_weights / (kk * channels)).max(1);
    for c0 in (0..g.cg()).step_by(chunk) {
        let shape = kernel::Shape {
            channels: chunk.min(g.cg() - c0),
            plane,
            kh: g.kh,
            kw: g.kw,
            row: wp,
            wo: g.wo,
            first: c0 == 0,
        };
        for t in tiles {
            assert!(t.i0 + t.rows <= g.ho && t.j0 + t.cols <= g.wo);
            // SAFETY: `applies` checked AVX-512F; the asserts above bound every read of `xg`
            // (pixel `(i, j)` of the tile reads `c plane + (i + a) wp + j + b`, `c < cg`), of
            // `wb` (`c kk + a kw + b` rows of `16 v`) and every write of `yt` (`(i wo + j) 16 v +
            // [0, 16 v)`).
            unsafe {
                let x = xg.as_ptr().add(c0 * plane + t.i0 * wp + t.j0);
                let w = wb.as_ptr().add(c0 * kk * channels);
                let y = yt.as_mut_ptr().add((t.i0 * g.wo + t.j0) * channels);
                macro_rules! dispatch {
                    ($($v:literal: $(($r:literal, $p:literal))*;)*) => {
                        match (v, t.rows, t.cols) {
                            $($(($v, $r, $p) => kernel::tile::<$v, $r, $p>(&shape, x, w, y),)*)*
                            _ => unreachable!("tile {t:?} of {v} registers"),
                        }
                    };
                }
                dispatch!(
                    4: (1, 6) (1, 4) (1, 2) (2, 2) (3, 2) (1, 1) (2, 1) (3, 1) (4, 1) (5, 1) (6, 1);
                    2: (1, 8) (1, 4) (2, 4) (3, 4) (1, 2) (2, 2) (3, 2) (4, 2) (5, 2) (6, 2) (1, 1)
                        (2, 1) (3, 1) (4, 1) (5, 1) (6, 1) (7, 1) (8, 1) (9, 1) (10, 1) (11, 1)
                        (12, 1);
                )
            }
        }
    }
}

mod kernel {
    use super::LANES;
    use std::arch::x86_64::*;

    /// Strides of one tile's loops, and whether its sums start from zero (the first chunk of
    /// input channels) or from `y`.
    pub(super) struct Shape {
        pub(super) channels: usize,
        pub(super) plane: usize,
        pub(super) kh: usize,
        pub(super) kw: usize,
        pub(super) row: usize,
        pub(super) wo: usize,
        pub(super) first: bool,
    }

    /// `R x P` pixels x `16 V` channels: `y[(r wo + p) 16 V + o] (+)= sum_{c, a, b}
    /// wb[(c, a, b), o] x[c plane + (r + a) row + p + b]`.
    ///
    /// # Safety
    /// AVX-512F present; `x`, `wb`, `y` valid for every offset the loops form (checked by the
    /// caller `out_block`).
    #[target_feature(enable = "avx512f")]
    // Indexed loops: each broadcast input value is used right away by its `V` multiply-adds.
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn tile<const V: usize, const R: usize, const P: usize>(
        t: &Shape,
        x: *const f32,
        wb: *const f32,
        y: *mut f32,
    ) {
        let out = |r: usize, p: usize, v: usize| y.add((r * t.wo + p) * V * LANES + v * LANES);
        let mut acc = [[[_mm512_setzero_ps(); V]; P]; R];
        if !t.first {
            for r in 0..R {
                for p in 0..P {
                    for v in 0..V {
                        acc[r][p][v] = _mm512_loadu_ps(out(r, p, v));
                    }
                }
            }
        }
        let mut wk = wb;
        for c in 0..t.channels {
            let xc = x.add(c * t.plane);
            for a in 0..t.kh {
                for b in 0..t.kw {
                    let wv: [__m512; V] =
                        std::array::from_fn(|v| _mm512_loadu_ps(wk.add(v * LANES)));
                    for r in 0..R {
                        let xr = xc.add((r + a) * t.row + b);
                        for p in 0..P {
                            let xv = _mm512_set1_ps(*xr.add(p));
                            for v in 0..V {
                                acc[r][p][v] = _mm512_fmadd_ps(xv, wv[v], acc[r][p][v]);
                            }
                        }
                    }
                    wk = wk.add(V * LANES);
                }
            }
        }
        for r in 0..R {
            for p in 0..P {
                for v in 0..V {
                    _mm512_storeu_ps(out(r, p, v), acc[r][p][v]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_tests::{forward_error, input_gradient_error};
    use crate::direct::cpu_has_avx512;
    use crate::elem::Elem;
    use proptest::prelude::*;

    /// The conditions of [`applies`] besides the CPU's.
    fn shape_applies(g: &ConvGeometry) -> bool {
        g.stride == 1
            && !g.is_pointwise()
            && g.wo < NARROW
            && g.hw_out() >= MIN_PIXELS
            && g.og().is_multiple_of(32)
            && g.og() * g.k_rows() <= MAX_WEIGHTS
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every row width under 16 and every height: the tiles cover each output pixel once
        /// and have a kernel instance (at most 24 sums).
        #[test]
        fn tiles_cover_every_pixel_once(ho in 1usize..40, wo in 1usize..NARROW) {
            let g = ConvGeometry::new(&[1, 1, ho, wo], &[32, 1, 1, 1], 0, 1, 1).unwrap();
            for (v, pixels, pieces) in [(4, 6, [6, 4, 2, 1]), (2, 12, [8, 4, 2, 1])] {
                let mut seen = vec![0u32; ho * wo];
                for t in tiles(&g, pixels, &pieces) {
                    prop_assert!(v * t.rows * t.cols <= ACCUMULATORS, "{t:?}");
                    for i in t.i0..t.i0 + t.rows {
                        for j in t.j0..t.j0 + t.cols {
                            seen[i * wo + j] += 1;
                        }
                    }
                }
                prop_assert!(seen.iter().all(|&k| k == 1), "{seen:?}");
            }
        }

        /// The coarse direct forward in f32 against the f64 loops of 001 eq. 1 (relative 1e-5):
        /// rows of up to 15 pixels, rectangular kernels, paddings 0..3, 32 and 64 output channels
        /// per group (two and four registers) and 96 (three blocks of two), groups, one image
        /// (blocks across threads) or several, and chunks of input channels from one channel
        /// to all. Without AVX-512 only `applies() == false` is checked.
        #[test]
        fn coarse_forward_matches_the_defining_loops(
            n in 1usize..4, cg in 1usize..12, og in prop_oneof![Just(32usize), Just(64), Just(96)],
            groups in 1usize..3, h in 4usize..24, w in 4usize..16, kh in 1usize..4,
            kw in 1usize..4, padding in 0usize..3,
            chunk in prop_oneof![Just(1usize), Just(1000), Just(CHUNK_WEIGHTS)],
            seed in any::<u64>(),
        ) {
            let Ok(g) = ConvGeometry::new(
                &[n, cg * groups, h, w], &[og * groups, cg, kh, kw], padding, 1, groups,
            ) else {
                return Ok(());
            };
            prop_assert_eq!(applies(&g), shape_applies(&g) && cpu_has_avx512());
            prop_assert_eq!(f32::has_direct(&g, crate::Policy::Fastest), applies(&g) || crate::direct::applies(&g));
            if !applies(&g) {
                return Ok(());
            }
            let err = forward_error(&g, seed, |x, w| forward_chunked(&g, x, w, chunk));
            prop_assert!(err < 1e-5, "relative error {err} for {g:?}");
        }

        /// The input gradient of a coarse stride-1 layer, which [`crate::transposed`] now runs
        /// as this kernel's forward of `conv2d(dy, W')`, against the col2im path (relative
        /// 1e-5).
        #[test]
        fn coarse_input_gradient_matches_col2im(
            n in 1usize..3, og in 1usize..20, c_in in prop_oneof![Just(32usize), Just(64)],
            h in 8usize..14, w in 8usize..16, k in prop_oneof![Just(1usize), Just(3)],
            seed in any::<u64>(),
        ) {
            let g = ConvGeometry::new(&[n, c_in, h, w], &[og, c_in, k, k], k / 2, 1, 1).unwrap();
            let err = input_gradient_error(&g, seed);
            prop_assert!(err < 1e-5, "relative error {err} for {g:?}");
        }
    }

    /// The paper UNet's 32- and 64-channel layers at 8^2 take this path on AVX-512 machines;
    /// 4^2 and 2^2 meshes, 128-channel layers and 16-channel layers keep the GEMM path.
    #[test]
    fn which_layers_take_the_coarse_path() {
        let layer = |c: usize, mesh: usize| {
            ConvGeometry::new(&[16, c, mesh, mesh], &[c, c, 3, 3], 1, 1, 1).unwrap()
        };
        assert_eq!(applies(&layer(32, 8)), cpu_has_avx512());
        assert_eq!(applies(&layer(64, 8)), cpu_has_avx512());
        for g in [
            layer(64, 4),
            layer(32, 2),
            layer(128, 8),
            layer(16, 8),
            layer(32, 16),
        ] {
            assert!(!applies(&g), "{g:?}");
        }
    }
}
