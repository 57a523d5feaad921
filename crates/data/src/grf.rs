//! Gaussian random fields with power spectrum `|k|^-beta` on the periodic unit square (SPEC
//! section 6), as finite Fourier sums (see [`crate::fourier`]'s formula).

use crate::fourier::FourierField;
use crate::source::ImageSource;
use crate::Result;
use candle_core::Tensor;

/// Gaussian random field `f = sum_{0 < |k|_inf <= K} a_k cos(2 pi k.x) + b_k sin(2 pi k.x)`,
/// `a_k, b_k ~ N(0, |k|^-beta)`, shown as `Phi(f / sigma)`; a smooth function sampled at pixel
/// centres, so restricting a mesh-`n` image by 2x2 averaging is within `O(h^2)` of mesh `n/2`.
/// Infinite (`len() == None`).
#[derive(Debug, Clone)]
pub struct GaussianRandomField {
    field: FourierField,
    beta: f64,
}

impl GaussianRandomField {
    /// Field with spectrum exponent `beta` (e.g. 3), `K = 32` modes per axis, one channel.
    pub fn new(seed: u64, beta: f64) -> Self {
        Self::build(seed, beta, 1, 32)
    }

    fn build(seed: u64, beta: f64, channels: usize, kmax: usize) -> Self {
        Self {
            field: FourierField::new(seed, channels, kmax, |k| k.powf(-beta)),
            beta,
        }
    }

    /// Sets the number of channels (independent fields); 0 is taken as 1.
    pub fn with_channels(self, channels: usize) -> Self {
        Self::build(self.field.seed, self.beta, channels, self.field.kmax)
    }

    /// Sets the highest frequency `K` per axis (at least 1).
    pub fn with_max_frequency(self, kmax: usize) -> Self {
        Self::build(self.field.seed, self.beta, self.field.channels, kmax.max(1))
    }
}

impl ImageSource for GaussianRandomField {
    fn channels(&self) -> usize {
        self.field.channels
    }

    fn len(&self) -> Option<usize> {
        None
    }

    fn image(&self, index: u64, n: usize) -> Result<Tensor> {
        self.field.image(index, n)
    }
}
