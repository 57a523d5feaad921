//! Shapes of one convolution: input, weight, output, and the tiling of the im2col buffer.

use crate::error::ConvError;

/// Bytes of im2col buffer per tile; sized to stay in a Zen 4 core's 1 MiB L2 next to the packed
/// GEMM operands.
const TILE_BYTES: usize = 384 * 1024;

/// Fewest output pixels per im2col tile: GEMMs with fewer columns run at about half speed
/// (measured 53-66 GFLOP/s at 24-40 columns against 82-92 at 64, `k_rows` = 2304 on one core),
/// so a tile may exceed [`TILE_BYTES`] to reach this width.
const MIN_TILE_COLS: usize = 64;

/// Fewest pixels per GEMM of the weight gradient. Its GEMM `dW_g^T += cols dy^T` has the
/// tile's pixels as inner dimension and reads and writes all of `dW_g^T` once per tile: with
/// 64-128 pixels (the tiles of a 128-channel layer at 32^2 and 64^2) that traffic, not the
/// multiply-adds, set its speed. Measured in `docs/performance.md`, "Wider weight-gradient
/// tiles".
const MIN_WEIGHT_GRAD_COLS: usize = 512;

/// Geometry of `y = conv2d(x, w)` with `x: [batch, c_in, h, w]`, `w: [c_out, c_in / groups, kh, kw]`,
/// `y: [batch, c_out, ho, wo]`, `ho = (h + 2 padding - kh) / stride + 1` (candle's `conv2d`
/// convention, dilation 1), likewise `wo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub padding: usize,
    pub stride: usize,
    pub groups: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeometry {
    /// Validate the dims of `x` and `w` and derive the output size.
    pub fn new(
        x: &[usize],
        w: &[usize],
        padding: usize,
        stride: usize,
        groups: usize,
    ) -> Result<Self, ConvError> {
        let (&[batch, c_in, h, wi], &[c_out, w_c, kh, kw]) = (x, w) else {
            return Err(ConvError::Rank {
                x: x.to_vec(),
                w: w.to_vec(),
            });
        };
        if groups == 0 || c_in % groups != 0 || c_out % groups != 0 || w_c * groups != c_in {
            return Err(ConvError::Groups {
                groups,
                c_in,
                c_out,
                w_c,
            });
        }
        if stride == 0 {
            return Err(ConvError::Stride);
        }
        if kh == 0 || kw == 0 || h + 2 * padding < kh || wi + 2 * padding < kw {
            return Err(ConvError::KernelTooLarge {
                kh,
                kw,
                h,
                w: wi,
                padding,
            });
        }
        let ho = (h + 2 * padding - kh) / stride + 1;
        let wo = (wi + 2 * padding - kw) / stride + 1;
        Ok(Self {
            batch,
            c_in,
            h,
            w: wi,
            c_out,
            kh,
            kw,
            padding,
            stride,
            groups,
            ho,
            wo,
        })
    }

    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group.
    pub fn og(&self) -> usize {
        self.c_out / self.groups
    }

    /// Rows of the im2col matrix of one group: `(c_in / groups) kh kw`.
    pub fn k_rows(&self) -> usize {
        self.cg() * self.kh * self.kw
    }

    /// Pixels of one input channel.
    pub fn hw_in(&self) -> usize {
        self.h * self.w
    }

    /// Pixels of one output channel.
    pub fn hw_out(&self) -> usize {
        self.ho * self.wo
    }

    /// `[batch, c_in, h, w]`.
    pub fn x_dims(&self) -> Vec<usize> {
        vec![self.batch, self.c_in, self.h, self.w]
    }

    /// `[c_out, c_in / groups, kh, kw]`.
    pub fn w_dims(&self) -> Vec<usize> {
        vec![self.c_out, self.cg(), self.kh, self.kw]
    }

    /// `[batch, c_out, ho, wo]`.
    pub fn y_dims(&self) -> Vec<usize> {
        vec![self.batch, self.c_out, self.ho, self.wo]
    }

    /// Multiply-adds times two of the forward pass: `2 N c_out (c_in / g) kh kw ho wo`.
    /// The input gradient and the weight gradient cost the same each.
    pub fn forward_flops(&self) -> f64 {
        2.0 * (self.batch * self.c_out * self.k_rows() * self.hw_out()) as f64
    }

    /// A 1x1, stride 1, unpadded kernel: the input itself is the im2col matrix.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == 0
    }

    /// Bytes of im2col buffer per tile (also the budget of a multi-image tile).
    pub(crate) fn tile_bytes(&self) -> usize {
        TILE_BYTES
    }

    /// Bytes of im2col buffer per tile of the weight gradient: [`TILE_BYTES`], or more so that
    /// a tile holds [`MIN_WEIGHT_GRAD_COLS`] pixels of `elem_bytes`-byte elements.
    pub(crate) fn weight_grad_tile_bytes(&self, elem_bytes: usize) -> usize {
        TILE_BYTES.max(self.k_rows() * MIN_WEIGHT_GRAD_COLS * elem_bytes)
    }

    /// The bands of output rows `[i0, i1)` that im2col tiles of `tile_bytes` cover, top to
    /// bottom, of heights that differ by at most one row.
    pub(crate) fn bands(
        &self,
        elem_bytes: usize,
        tile_bytes: usize,
    ) -> impl Iterator<Item = (usize, usize)> {
        let (ho, count) = (self.ho, self.band_count(elem_bytes, tile_bytes));
        (0..count).map(move |k| (k * ho / count, (k + 1) * ho / count))
    }

    /// Rows of the tallest of [`Self::bands`]: the im2col scratch holds `k_rows x (rows wo)`.
    pub(crate) fn tile_rows(&self, elem_bytes: usize, tile_bytes: usize) -> usize {
        self.ho.div_ceil(self.band_count(elem_bytes, tile_bytes))
    }

    /// How many bands: `rows` = as many rows as fit one tile of `k_rows x (rows wo)` elements of
    /// `elem_bytes` bytes in `tile_bytes`, at least [`MIN_TILE_COLS`] pixels' worth; then
    /// `ceil(ho / rows)` bands of even height, or `floor(ho / rows)` slightly taller ones when
    /// the former would be narrower than [`MIN_TILE_COLS`] (8 rows that fit 7 at a time become
    /// one band of 8, not 4 and 4).
    fn band_count(&self, elem_bytes: usize, tile_bytes: usize) -> usize {
        let (ho, wo) = (self.ho.max(1), self.wo.max(1));
        let fit = tile_bytes / (self.k_rows() * wo * elem_bytes).max(1);
        let rows = fit.max(MIN_TILE_COLS.div_ceil(wo)).clamp(1, ho);
        let count = ho.div_ceil(rows);
        if (ho / count) * wo >= MIN_TILE_COLS.min(ho * wo) {
            count
        } else {
            (ho / rows).max(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn geometry(c_in: usize, k: usize, h: usize, w: usize) -> ConvGeometry {
        ConvGeometry::new(&[1, c_in, h, w], &[1, c_in, k, k], k / 2, 1, 1).unwrap()
    }

    #[test]
    fn an_eight_row_image_is_one_band_rather_than_seven_rows_and_one() {
        // k_rows = 1728: 7 rows of 8 pixels fit in the tile budget, the image has 8.
        let g = geometry(192, 3, 8, 8);
        assert_eq!(TILE_BYTES / (g.k_rows() * g.wo * 4), 7);
        assert_eq!(g.bands(4, TILE_BYTES).collect::<Vec<_>>(), [(0, 8)]);
        assert_eq!(g.tile_rows(4, TILE_BYTES), 8);
    }

    proptest! {
        /// For the tile budget of every pass: the forward's and the input gradient's, and the
        /// weight gradient's wider one.
        #[test]
        fn bands_cover_the_image_wide_even_and_within_budget(
            c_in in 1usize..300, k in prop_oneof![Just(1usize), Just(3)], h in 1usize..130,
            w in 1usize..130, eb in prop_oneof![Just(4usize), Just(8)], weights in any::<bool>(),
        ) {
            let g = geometry(c_in, k, h, w);
            let tile = if weights { g.weight_grad_tile_bytes(eb) } else { g.tile_bytes() };
            prop_assert!(tile >= TILE_BYTES);
            let bands: Vec<(usize, usize)> = g.bands(eb, tile).collect();
            // Contiguous, top to bottom, covering every row.
            prop_assert_eq!(bands[0].0, 0);
            prop_assert_eq!(bands[bands.len() - 1].1, g.ho);
            prop_assert!(bands.windows(2).all(|p| p[0].1 == p[1].0));
            let heights: Vec<usize> = bands.iter().map(|(i0, i1)| i1 - i0).collect();
            let (lo, hi) = (*heights.iter().min().unwrap(), *heights.iter().max().unwrap());
            prop_assert!(lo >= 1 && hi - lo <= 1);
            prop_assert_eq!(hi, g.tile_rows(eb, tile));
            // No band narrower than MIN_TILE_COLS, unless the image is; the weight gradient's
            // no narrower than about half MIN_WEIGHT_GRAD_COLS (whole rows, heights evened
            // out), unless the image is.
            prop_assert!(lo * g.wo >= MIN_TILE_COLS.min(g.ho * g.wo));
            if weights {
                prop_assert!(2 * lo * g.wo + g.wo > MIN_WEIGHT_GRAD_COLS.min(g.ho * g.wo));
            }
            // At most twice the rows of the budget (or of the width alone).
            let raw = (tile / (g.k_rows() * g.wo * eb))
                .max(MIN_TILE_COLS.div_ceil(g.wo))
                .clamp(1, g.ho);
            prop_assert!(hi <= 2 * raw);
        }
    }
}
