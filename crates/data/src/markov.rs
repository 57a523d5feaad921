//! The random Markov field of 000's blur experiment ("We simulate y as a Random Markov Field
//! (Tenorio et al., 2011)", 000 section 5, Blur Estimation).
//!
//! We take the Gaussian Markov random field whose precision operator is `(kappa^2 - Delta)^2`
//! (Whittle-Matern with smoothness 1 in 2-D; Lindgren, Rue & Lindstrom 2011 show its
//! discretisation has a sparse, Markov precision matrix). On the periodic unit square its
//! spectrum is `S(k) = (kappa^2 + 4 pi^2 |k|^2)^-2`, correlation length `sqrt(8) / kappa`; it is
//! realised as a finite Fourier sum like [`crate::GaussianRandomField`].

use crate::fourier::FourierField;
use crate::source::ImageSource;
use crate::Result;
use candle_core::Tensor;
use std::f64::consts::PI;

/// Random Markov field `f` with spectrum `(kappa^2 + 4 pi^2 |k|^2)^-2`, `|k|_inf <= K`, shown as
/// `Phi(f / sigma)`, sampled at pixel centres. Infinite (`len() == None`).
#[derive(Debug, Clone)]
pub struct MarkovField {
    field: FourierField,
    kappa: f64,
}

impl MarkovField {
    /// Field with `kappa = sqrt(8) / 0.1` (correlation length 0.1), `K = 32`, one channel.
    pub fn new(seed: u64) -> Self {
        Self::build(seed, 8f64.sqrt() / 0.1, 1, 32)
    }

    fn build(seed: u64, kappa: f64, channels: usize, kmax: usize) -> Self {
        let spectrum = move |k: f64| (kappa * kappa + 4.0 * PI * PI * k * k).powi(-2);
        Self {
            field: FourierField::new(seed, channels, kmax, spectrum),
            kappa,
        }
    }

    /// Sets `kappa` (inverse correlation length, `rho = sqrt(8) / kappa`).
    pub fn with_kappa(self, kappa: f64) -> Self {
        Self::build(
            self.field.seed,
            kappa.abs(),
            self.field.channels,
            self.field.kmax,
        )
    }

    /// Sets the number of channels (independent fields); 0 is taken as 1.
    pub fn with_channels(self, channels: usize) -> Self {
        Self::build(self.field.seed, self.kappa, channels, self.field.kmax)
    }
}

impl ImageSource for MarkovField {
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
