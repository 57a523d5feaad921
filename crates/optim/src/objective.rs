//! What the user closure returns and how the scalar loss is formed from it.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Meaning of the tensor returned by the closure passed to [`crate::SecondOrder::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClosureKind {
    /// A residual `r(theta) = f(theta) - y` of any shape; the loss is
    /// `L = 1/(2m) ||r||^2` with `m` the number of entries (least squares, 002 section 3).
    Residual,
    /// A scalar loss `L(theta)` (any objective, e.g. 003 eq. 3.7's `l`).
    #[default]
    Loss,
}

/// The scalar loss `L` (0-d tensor, differentiable) from the closure output.
pub fn scalar_loss(output: &Tensor, kind: ClosureKind) -> Result<Tensor> {
    match kind {
        ClosureKind::Residual => Ok((output.sqr()?.mean_all()? * 0.5)?),
        ClosureKind::Loss => {
            if output.elem_count() != 1 {
                return Err(Error::NotScalar(output.dims().to_vec()));
            }
            Ok(output.flatten_all()?.squeeze(0)?)
        }
    }
}

/// `L` as an `f64` (may be NaN or infinite; callers decide).
pub fn loss_value(loss: &Tensor) -> Result<f64> {
    Ok(loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}
