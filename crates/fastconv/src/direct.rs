//! Direct stride-1 convolution in f32 with AVX-512, no im2col:
//! `y[n, o, i, j] = sum_{c, a, b} w[o, c, a, b] xp[n, g(o) cg + c, i + a, j + b]` (001 eq. 1),
//! `xp` the input zero-padded by `p` on every side.
//!
//! Every output row is cut into segments of 16 pixels (one 512-bit register; the last one of a
//! row masked). A tile of up to [`SEGMENTS`] segments times [`OUT_BLOCK`] output channels keeps
//! its 24 sums in registers over the whole inner dimension `(c, a, b)`: per tap, one unaligned
//! load of 16 shifted input pixels per segment, one broadcast weight per output channel, and
//! `SEGMENTS x OUT_BLOCK` fused multiply-adds. The im2col matrix of the GEMM path (`kh kw` copies
//! of the input, written and read again) never exists: for the UNet's 32-channel layers that
//! copy cost as much as a third of the GEMM (`docs/performance.md`, "A direct convolution").
//! No maintained Rust crate offers a direct convolution; the `gemm` crate's packing cannot be
//! told to read an image.
//!
//! Taken for f32 on x86-64 CPUs with AVX-512F when [`applies`]; everything else runs the im2col
//! path of [`crate::forward`].

use crate::batch::plan;
use crate::elem::Elem;
use crate::geometry::ConvGeometry;
use gemm::Parallelism;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output channels per tile: one broadcast weight each per tap.
const OUT_BLOCK: usize = 8;
/// Segments of 16 pixels per tile: `SEGMENTS x OUT_BLOCK = 24` accumulators of the 32 vector
/// registers, the rest for the loaded pixels and the broadcast weight.
const SEGMENTS: usize = 3;
/// Pixels per segment (f32 lanes of a 512-bit register).
const LANES: usize = 16;
/// Padded input per band of output rows: stays in a core's L2 (1-2 MiB) beside the weights
/// while every block of output channels runs over it.
const BAND_BYTES: usize = 256 * 1024;

/// Whether [`forward`] runs `g`: stride 1, not a 1x1 unpadded kernel (that one needs no im2col
/// anyway), output channels per group a multiple of [`OUT_BLOCK`], output rows at least
/// [`LANES`] wide, and a CPU with AVX-512F.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    direct_capable(g) && g.og().is_multiple_of(OUT_BLOCK) && g.wo >= LANES
}

/// What every direct kernel needs: stride 1, not a 1x1 unpadded kernel, a non-empty batch and
/// a CPU with AVX-512F.
pub(crate) fn direct_capable(g: &ConvGeometry) -> bool {
    g.stride == 1 && !g.is_pointwise() && g.batch > 0 && cpu_has_avx512()
}

pub(crate) fn cpu_has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One segment: where its first output pixel's top-left tap lies in the padded plane, where the
/// pixel lies in the output plane, and how many of its 16 lanes are pixels.
#[derive(Clone, Copy)]
struct Segment {
    input: usize,
    output: usize,
    lanes: usize,
}

/// The forward convolution of `g` (contiguous `x: [N, C_in, H, W]`, `w: [C_out, C_in / G, kh,
/// kw]`) into a fresh `[N, C_out, ho, wo]`; call only when [`applies`]`(g)`.
pub(crate) fn forward(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
    forward_banded(g, x, w, BAND_BYTES)
}

/// [`forward`] with bands of output rows whose padded input fits `band_bytes` (at least one row).
fn forward_banded(g: &ConvGeometry, x: &[f32], w: &[f32], band_bytes: usize) -> Vec<f32> {
    assert!(applies(g), "direct convolution called for {g:?}");
    assert!(x.len() == g.batch * g.c_in * g.hw_in() && w.len() == g.c_out * g.k_rows());
    let packed = pack_weights(g, w, OUT_BLOCK);
    let segments = segments(g);
    let plane = padded_plane(g);
    // Written, not zeroed: the segments cover every pixel of every block of 8 output planes of
    // every image (checked below), and the kernel stores every covered lane.
    assert_eq!(segments.iter().map(|s| s.lanes).sum::<usize>(), g.hw_out());
    let bands: Vec<&[Segment]> = bands(g, &segments, band_bytes).collect();
    let block = OUT_BLOCK * g.hw_out();
    for_each_block(g, x, block, bands.len(), |band, xp, b, yb| {
        let grp = b / (g.og() / OUT_BLOCK);
        let xg = &xp[grp * g.cg() * plane..][..g.cg() * plane];
        let wb = &packed[b * g.k_rows() * OUT_BLOCK..][..g.k_rows() * OUT_BLOCK];
        out_block(g, xg, wb, bands[band], yb);
    })
}

/// The output `[N][C_out ho wo]` of a direct kernel, written block by block: each image's input
/// is zero-padded once ([`pad`]), then for each of `phases` phases (bands of rows, which keep
/// their input in L2 while every block passes over them), `write(phase, xp, b, yb)` must write
/// every value of block `b` (`yb`, `block` values) of that phase. Images run on the pool's
/// threads when there are at least as many as threads, else the blocks of each phase do.
pub(crate) fn for_each_block(
    g: &ConvGeometry,
    x: &[f32],
    block: usize,
    phases: usize,
    write: impl Fn(usize, &[f32], usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let (xs, ys) = (g.c_in * g.hw_in(), g.c_out * g.hw_out());
    assert!(x.len() == g.batch * xs && ys.is_multiple_of(block));
    let mut y = Vec::with_capacity(g.batch * ys);
    let (workers, par) = plan(g.batch);
    let image = |(n, yn): (usize, &mut [MaybeUninit<f32>]), parallel: bool| {
        f32::with_scratch(g.c_in * padded_plane(g), |xp| {
            pad(g, &x[n * xs..][..xs], xp);
            let xp = &*xp;
            for phase in 0..phases {
                let run = |(b, yb): (usize, &mut [MaybeUninit<f32>])| write(phase, xp, b, yb);
                if parallel {
                    yn.par_chunks_mut(block).enumerate().for_each(run);
                } else {
                    yn.chunks_mut(block).enumerate().for_each(run);
                }
            }
        })
    };
    let out = &mut y.spare_capacity_mut()[..g.batch * ys];
    if workers > 1 {
        out.par_chunks_mut(ys)
            .enumerate()
            .for_each(|p| image(p, false));
    } else {
        // One worker: the blocks of output channels take the threads, if there are several.
        let parallel = !matches!(par, Parallelism::None);
        out.chunks_mut(ys)
            .enumerate()
            .for_each(|p| image(p, parallel));
    }
    // SAFETY: every element of `out` was written: `write` writes every value of every block of
    // every image (its callers' contract).
    unsafe { y.set_len(g.batch * ys) };
    y
}

/// `w + 2p`: one row of the padded input.
pub(crate) fn padded_width(g: &ConvGeometry) -> usize {
    g.w + 2 * g.padding
}

/// `(h + 2p) (w + 2p)`: one channel of the padded input.
pub(crate) fn padded_plane(g: &ConvGeometry) -> usize {
    (g.h + 2 * g.padding) * padded_width(g)
}

/// `segments` cut into bands of whole tiles whose padded input rows (`cg (rows + kh - 1)
/// (w + 2p)` floats) fit `band_bytes` ([`BAND_BYTES`]): every block of output channels of a band
/// re-reads the same input from L2, not the whole image from memory.
fn bands<'s>(
    g: &ConvGeometry,
    segments: &'s [Segment],
    band_bytes: usize,
) -> std::slice::Chunks<'s, Segment> {
    let row_bytes = g.cg() * padded_width(g) * std::mem::size_of::<f32>();
    let rows = (band_bytes / row_bytes.max(1))
        .saturating_sub(g.kh - 1)
        .max(1);
    let per_row = g.wo.div_ceil(LANES);
    let len = (rows * per_row / SEGMENTS).max(1) * SEGMENTS;
    segments.chunks(len)
}

/// `w` regrouped as `[C_out / block][cg kh kw][block]` (blocks within a group, since `og` is a
/// multiple of `block`): a tile reads one tap's `block` weights contiguously. Written in that
/// order, 16 taps at a time, so that the rows read and the values written stay in L1.
pub(crate) fn pack_weights(g: &ConvGeometry, w: &[f32], block: usize) -> Vec<f32> {
    const TAPS: usize = 16;
    let kr = g.k_rows();
    let mut packed = vec![0f32; w.len()];
    for (dst, rows) in packed
        .chunks_exact_mut(block * kr)
        .zip(w.chunks_exact(block * kr))
    {
        for k0 in (0..kr).step_by(TAPS) {
            let taps = TAPS.min(kr - k0);
            for (lane, row) in rows.chunks_exact(kr).enumerate() {
                for (k, &v) in row[k0..k0 + taps].iter().enumerate() {
                    dst[(k0 + k) * block + lane] = v;
                }
            }
        }
    }
    packed
}

/// Every output row of `g` cut into segments of [`LANES`] pixels, the last one of a row shorter.
fn segments(g: &ConvGeometry) -> Vec<Segment> {
    let wp = padded_width(g);
    (0..g.ho)
        .flat_map(|i| {
            (0..g.wo).step_by(LANES).map(move |j| Segment {
                input: i * wp + j,
                output: i * g.wo + j,
                lanes: LANES.min(g.wo - j),
            })
        })
        .collect()
}

/// `xp[c]` = `x[c]` with `p` zero rows above and below and `p` zero columns left and right.
pub(crate) fn pad(g: &ConvGeometry, x: &[f32], xp: &mut [f32]) {
    let (p, w, wp) = (g.padding, g.w, padded_width(g));
    let plane = padded_plane(g);
    for (src, dst) in x.chunks_exact(g.hw_in()).zip(xp.chunks_exact_mut(plane)) {
        dst[..p * wp].fill(0.0);
        dst[(p + g.h) * wp..].fill(0.0);
        for (row, d) in src.chunks_exact(w).zip(dst[p * wp..].chunks_exact_mut(wp)) {
            d[..p].fill(0.0);
            d[p..p + w].copy_from_slice(row);
            d[p + w..].fill(0.0);
        }
    }
}

/// The pixels of `segments` in the [`OUT_BLOCK`] output planes `yb` (`8 x ho wo`) from one
/// group's padded input `xg` (`cg` planes) and packed weights `wb` (`cg kh kw x 8`), tile by
/// tile.
fn out_block(
    g: &ConvGeometry,
    xg: &[f32],
    wb: &[f32],
    segments: &[Segment],
    yb: &mut [MaybeUninit<f32>],
) {
    let wp = padded_width(g);
    let plane = padded_plane(g);
    // Bounds of every access in `tile`: the last tap of a segment reads lanes `input + (kh - 1)
    // wp + kw - 1 + [0, lanes)` of the last channel's plane, and the output writes `output +
    // (7 hw_out) + [0, lanes)`.
    let Some(last) = segments.last() else {
        return;
    };
    assert!(last.input + (g.kh - 1) * wp + g.kw - 1 + last.lanes <= plane);
    assert!(xg.len() == g.cg() * plane && wb.len() == g.k_rows() * OUT_BLOCK);
    assert!(yb.len() == OUT_BLOCK * g.hw_out() && last.output + last.lanes <= g.hw_out());
    let shape = TileShape {
        channels: g.cg(),
        plane,
        kh: g.kh,
        kw: g.kw,
        row: wp,
        out_plane: g.hw_out(),
    };
    for tile in segments.chunks(SEGMENTS) {
        // SAFETY: `applies` checked AVX-512F; the asserts above bound every segment's reads of
        // `xg` and writes of `yb` (segments are sorted, so `last` has the largest offsets).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            let y = yb.as_mut_ptr().cast::<f32>();
            match tile.len() {
                3 => kernel::tile::<3>(&shape, xg.as_ptr(), wb.as_ptr(), tile, y),
                2 => kernel::tile::<2>(&shape, xg.as_ptr(), wb.as_ptr(), tile, y),
                _ => kernel::tile::<1>(&shape, xg.as_ptr(), wb.as_ptr(), tile, y),
            }
        }
    }
}

/// Strides of one tile's loops.
struct TileShape {
    channels: usize,
    plane: usize,
    kh: usize,
    kw: usize,
    row: usize,
    out_plane: usize,
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{Segment, TileShape, OUT_BLOCK};
    use std::arch::x86_64::*;

    /// `S` segments x [`OUT_BLOCK`] channels: `y[o, seg] = sum_{c, a, b} wb[(c, a, b), o]
    /// xg[c, seg.input + a row + b + lane]`.
    ///
    /// # Safety
    /// AVX-512F present; `xg`, `wb`, `yb` valid for every offset the loops form (checked by the
    /// caller `out_block`).
    #[target_feature(enable = "avx512f")]
    // Indexed loops: each broadcast weight is used right away by its `S` multiply-adds.
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn tile<const S: usize>(
        t: &TileShape,
        xg: *const f32,
        wb: *const f32,
        segs: &[Segment],
        yb: *mut f32,
    ) {
        let masks: [__mmask16; S] = std::array::from_fn(|s| ((1u32 << segs[s].lanes) - 1) as u16);
        let mut acc = [[_mm512_setzero_ps(); OUT_BLOCK]; S];
        let mut wk = wb;
        for c in 0..t.channels {
            let xc = xg.add(c * t.plane);
            for a in 0..t.kh {
                for b in 0..t.kw {
                    let at = a * t.row + b;
                    let v: [__m512; S] = std::array::from_fn(|s| {
                        _mm512_maskz_loadu_ps(masks[s], xc.add(segs[s].input + at))
                    });
                    for o in 0..OUT_BLOCK {
                        let wv = _mm512_set1_ps(*wk.add(o));
                        for s in 0..S {
                            acc[s][o] = _mm512_fmadd_ps(v[s], wv, acc[s][o]);
                        }
                    }
                    wk = wk.add(OUT_BLOCK);
                }
            }
        }
        for s in 0..S {
            for (o, sum) in acc[s].iter().enumerate() {
                _mm512_mask_storeu_ps(yb.add(o * t.out_plane + segs[s].output), masks[s], *sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_tests::{f32s, f64s, forward_error, input_gradient_error, max_err, values};
    use proptest::prelude::*;

    /// The conditions of [`applies`] besides the CPU's.
    fn shape_applies(g: &ConvGeometry) -> bool {
        g.stride == 1 && !g.is_pointwise() && g.og().is_multiple_of(OUT_BLOCK) && g.wo >= LANES
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The direct forward in f32 against the f64 loops of 001 eq. 1 (relative 1e-5), for
        /// rectangular kernels, paddings 0..3, rows of 16..40 pixels (a masked last segment),
        /// groups, batches of one (channel blocks across threads) and more (images across
        /// threads), and bands from one row to the whole image. Without AVX-512 only
        /// `applies() == false` is checked.
        #[test]
        fn direct_forward_matches_the_defining_loops(
            n in 1usize..4, cg in 1usize..10, blocks in 1usize..3, groups in 1usize..3,
            h in 1usize..20, w in 14usize..40, kh in 1usize..4, kw in 1usize..4,
            padding in 0usize..3, band in prop_oneof![Just(1usize), Just(4096), Just(BAND_BYTES)],
            seed in any::<u64>(),
        ) {
            let og = blocks * OUT_BLOCK;
            let Ok(g) = ConvGeometry::new(
                &[n, cg * groups, h, w], &[og * groups, cg, kh, kw], padding, 1, groups,
            ) else {
                return Ok(());
            };
            prop_assert_eq!(applies(&g), shape_applies(&g) && cpu_has_avx512());
            prop_assert_eq!(f32::has_direct(&g, crate::Policy::Fastest), applies(&g));
            prop_assert!(!f64::has_direct(&g, crate::Policy::Fastest));
            if !applies(&g) {
                return Ok(());
            }
            let err = forward_error(&g, seed, |x, w| forward_banded(&g, x, w, band));
            prop_assert!(err < 1e-5, "relative error {err} for {g:?}");
        }

        /// The input gradient of a stride-1 layer that keeps or widens the channels, which the
        /// direct forward of `conv2d(dy, W')` now runs, against the col2im path in f32
        /// (relative 1e-5).
        #[test]
        fn direct_input_gradient_matches_col2im(
            n in 1usize..3, og in 1usize..10, cblocks in 1usize..3, h in 1usize..20,
            w in 16usize..36, k in prop_oneof![Just(3usize), Just(5)], seed in any::<u64>(),
        ) {
            let c_in = cblocks * OUT_BLOCK;
            prop_assume!(og <= c_in);
            let g = ConvGeometry::new(&[n, c_in, h, w], &[og, c_in, k, k], k / 2, 1, 1).unwrap();
            let err = input_gradient_error(&g, seed);
            prop_assert!(err < 1e-5, "relative error {err} for {g:?}");
        }
    }

    /// The UNet's layers at 32^2 take the direct path on AVX-512 machines and match the GEMM.
    #[test]
    fn unet_layers_match_the_gemm_path() {
        for &(c_in, c_out, k, pad) in &[(32, 32, 3, 1), (96, 32, 3, 1), (64, 64, 3, 1)] {
            let g = ConvGeometry::new(&[2, c_in, 32, 32], &[c_out, c_in, k, k], pad, 1, 1).unwrap();
            assert_eq!(applies(&g), cpu_has_avx512(), "{g:?}");
            if !applies(&g) {
                continue;
            }
            let x = f32s(&values(11, 2 * c_in * 32 * 32));
            let wt = f32s(&values(12, c_out * g.k_rows()));
            let want = crate::forward::forward_with(&g, &x, &wt, 1);
            let err = max_err(&f64s(&forward(&g, &x, &wt)), &f64s(&want));
            assert!(err < 1e-5, "relative error {err} for {g:?}");
        }
    }
}
