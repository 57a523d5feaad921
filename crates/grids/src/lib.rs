//! Grid transfer operators (restriction, prolongation), Galerkin stencil transfer and
//! subsampling strategies. (Skeleton: being filled in.)

use candle_core::{Result, Tensor};

/// Fine-to-coarse transfer `R` (SPEC section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restriction {
    /// 2x2 block average (cell-centred).
    #[default]
    Average,
    /// Every other pixel.
    Injection,
    /// Full weighting.
    FullWeighting,
}

/// Coarse-to-fine transfer `P` (SPEC section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prolongation {
    /// Cell-centred bilinear (9/16, 3/16, 3/16, 1/16).
    #[default]
    Bilinear,
    /// Piecewise constant, `P = 4 R^T`.
    Constant,
}

/// Restrict a batch `[N, C, H, W] -> [N, C, H/2, W/2]`.
pub fn restrict(x: &Tensor, kind: Restriction) -> Result<Tensor> {
    match kind {
        Restriction::Average => x.avg_pool2d(2),
        _ => candle_core::bail!("restriction {kind:?} not implemented yet"),
    }
}
