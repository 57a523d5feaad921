//! Sources of fresh finest-mesh training batches for the estimator.

use crate::{Error, Result};
use candle_core::Device;
use data::{Degradation, Degraded, Loader};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Draws `count` FRESH degraded samples on the finest mesh (each call advances the stream).
/// MGE calls it once per term per iteration (001 eq. 6: every term its own batch).
pub trait Sampler {
    /// `count` new samples; `input`/`target` are `[count, C, H, W]`.
    fn draw(&mut self, count: usize) -> Result<Degraded>;
}

/// The default sampler: clean images from a [`data::Loader`] degraded by a
/// [`data::Degradation`] with its own seeded random stream.
pub struct LoaderSampler {
    loader: Loader,
    degradation: Degradation,
    rng: StdRng,
    device: Device,
}

impl LoaderSampler {
    /// Samples from `loader`, degraded by `degradation` with randomness seeded by `seed`.
    pub fn new(loader: Loader, degradation: Degradation, seed: u64, device: Device) -> Self {
        LoaderSampler {
            loader,
            degradation,
            rng: StdRng::seed_from_u64(seed),
            device,
        }
    }
}

impl Sampler for LoaderSampler {
    fn draw(&mut self, count: usize) -> Result<Degraded> {
        let clean = self.loader.next_batch(count, &self.device)?;
        let d = self.degradation.apply(&clean, &mut self.rng)?;
        if d.input.dim(0)? != count {
            return Err(Error::Sampler(format!(
                "asked {count} samples, got {}",
                d.input.dim(0)?
            )));
        }
        Ok(d)
    }
}
