//! The x2 super-resolution output stage shared by ESPCN and the SR ResNet.

use candle_core::Tensor;

/// Up-scaling factor of the super-resolution models.
pub const UPSCALE: usize = 2;

/// `y = PixelShuffle_2(features) + P x` (Shi et al. 2016, sub-pixel convolution): `features`
/// `[N, 4 C, H, W]` are rearranged to `[N, C, 2H, 2W]` and added to the cell-centred bilinear
/// prolongation of the low-resolution input (global residual, as the authors' SR training adds
/// the bilinear up-sampling of the input).
pub fn pixel_shuffle_residual(features: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    let shuffled = candle_nn::ops::pixel_shuffle(features, UPSCALE)?;
    shuffled + grids::prolong(x, grids::Prolongation::Bilinear)?
}
