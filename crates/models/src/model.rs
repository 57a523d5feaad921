//! The object-safe interface every network implements.

use crate::error::{Error, Result};
use candle_core::Tensor;

/// A network built by [`crate::build`].
pub trait Model: Send + Sync {
    /// Apply the network to `x` (`[N, C_in, H, W]`); `t` is the `[N]` noise level for
    /// denoising, required by conditioned models and ignored by the others. Bad input shapes
    /// come back as a typed [`Error`] inside the candle error (see [`Error::from_candle`]).
    fn forward(&self, x: &Tensor, t: Option<&Tensor>) -> candle_core::Result<Tensor>;
    /// Total down-sampling factor: `H` and `W` must be multiples of it.
    fn downsampling_factor(&self) -> usize;
    /// Output mesh refinement: 2 for the x2 super-resolution models, else 1.
    fn upscale(&self) -> usize {
        1
    }
    /// Number of input channels.
    fn in_channels(&self) -> usize;
}

/// Check that `x` is `[N, C_in, H, W]` with `H`, `W` multiples of the model's down-sampling
/// factor: [`Error::InputShape`] or [`Error::MeshNotDivisible`] otherwise.
pub fn check_input(model: &dyn Model, x: &Tensor) -> Result<()> {
    let (_, c, h, w) = x.dims4().map_err(|_| Error::InputShape {
        got: x.dims().to_vec(),
        expected: format!("[N, {}, H, W]", model.in_channels()),
    })?;
    if c != model.in_channels() {
        return Err(Error::InputShape {
            got: x.dims().to_vec(),
            expected: format!("[N, {}, H, W]", model.in_channels()),
        });
    }
    let factor = model.downsampling_factor();
    if h == 0 || w == 0 || h % factor != 0 || w % factor != 0 {
        return Err(Error::MeshNotDivisible { h, w, factor });
    }
    Ok(())
}

/// [`check_input`] as a candle error carrying the typed error.
pub(crate) fn validate(model: &dyn Model, x: &Tensor) -> candle_core::Result<()> {
    check_input(model, x).map_err(Error::into_candle)
}
