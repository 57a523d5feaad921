//! The [`ImageSource`] trait every data set implements, and the seeding helper shared by the
//! procedural sources and the loader.

use crate::Result;
use candle_core::Tensor;

/// A source of clean images with values in `[0, 1]`.
///
/// `image(index, n)` returns image number `index` as a `[C, n, n]` f32 CPU tensor and is
/// deterministic in `(index, n)`. Procedural sources sample their continuous function on the
/// unit square at mesh `h = 1/n` (SPEC section 0: pixel centres `((j+1/2)h, (i+1/2)h)`, or the
/// cell average); stored sources resize their stored image (area filter down, bicubic up).
pub trait ImageSource {
    /// Number of channels `C` (1 or 3).
    fn channels(&self) -> usize;
    /// Number of images, `None` for an infinite procedural source.
    fn len(&self) -> Option<usize>;
    /// Image `index` on an `n x n` mesh, `[C, n, n]`, values in `[0, 1]`.
    fn image(&self, index: u64, n: usize) -> Result<Tensor>;
    /// Class label of image `index` for classification data sets, `None` when unlabelled.
    fn label(&self, _index: u64) -> Result<Option<usize>> {
        Ok(None)
    }
    /// Number of classes for classification data sets, `None` when unlabelled.
    fn classes(&self) -> Option<usize> {
        None
    }
    /// True when the source holds no images (never true for infinite sources).
    fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// Mixes `(seed, index)` into one well-spread 64-bit seed (SplitMix64 finaliser applied twice),
/// so that per-image random streams are independent and reproducible.
pub fn mix_seed(seed: u64, index: u64) -> u64 {
    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    splitmix(splitmix(seed) ^ index)
}

/// Checks that a requested mesh size is usable.
pub(crate) fn check_size(n: usize) -> Result<()> {
    if n == 0 || n > 1 << 14 {
        return Err(crate::Error::InvalidArgument(format!(
            "image size {n} must be in 1..=16384"
        )));
    }
    Ok(())
}
