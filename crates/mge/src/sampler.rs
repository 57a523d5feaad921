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
/// [`data::Degradation`]. The degradation's randomness of a draw is seeded by
/// `mix_seed(seed, position)` (the loader's stream position before the draw), so a run
/// resumed with [`LoaderSampler::set_position`] draws exactly what the uninterrupted run drew.
pub struct LoaderSampler {
    loader: Loader,
    degradation: Degradation,
    seed: u64,
    device: Device,
}

impl LoaderSampler {
    /// Samples from `loader`, degraded by `degradation` with randomness seeded by `seed`.
    pub fn new(loader: Loader, degradation: Degradation, seed: u64, device: Device) -> Self {
        LoaderSampler {
            loader,
            degradation,
            seed,
            device,
        }
    }

    /// Images drawn so far (the loader's stream position; save it to resume).
    pub fn position(&self) -> u64 {
        self.loader.position()
    }

    /// Moves the stream to `position` (a saved [`LoaderSampler::position`]).
    pub fn set_position(&mut self, position: u64) {
        self.loader.set_position(position);
    }
}

impl Sampler for LoaderSampler {
    fn draw(&mut self, count: usize) -> Result<Degraded> {
        let mut rng = StdRng::seed_from_u64(data::mix_seed(self.seed, self.loader.position()));
        let clean = self.loader.next_batch(count, &self.device)?;
        let d = self.degradation.apply(&clean, &mut rng)?;
        if d.input.dim(0)? != count {
            return Err(Error::Sampler(format!(
                "asked {count} samples, got {}",
                d.input.dim(0)?
            )));
        }
        Ok(d)
    }
}
