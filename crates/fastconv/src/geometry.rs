//! Shapes of one convolution: input, weight, output, and the tiling of the im2col buffer.

use crate::error::ConvError;

/// Bytes of im2col buffer per tile; sized to stay in a Zen 4 core's 1 MiB L2 next to the packed
/// GEMM operands.
const TILE_BYTES: usize = 384 * 1024;

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

    /// Output rows per im2col tile, so that one tile of `k_rows x (rows wo)` elements of
    /// `elem_bytes` bytes fits in [`TILE_BYTES`] (at least one row).
    pub(crate) fn tile_rows(&self, elem_bytes: usize) -> usize {
        let row_bytes = self.k_rows() * self.wo * elem_bytes;
        (TILE_BYTES / row_bytes.max(1)).clamp(1, self.ho)
    }
}
