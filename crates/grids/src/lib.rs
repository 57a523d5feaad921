//! Grid transfer operators for multiscale training (SPEC section 1).
//!
//! - [`restrict()`] / [`prolong()`]: batch transfers of `[N,C,H,W]` candle tensors between a
//!   mesh `h` and `2h` (differentiable, any device), selected by [`Restriction`] and
//!   [`Prolongation`], with a [`Boundary`] rule at the image edge.
//! - [`sparse`]: the same operators as explicit sparse matrices on `n x n` grids.
//! - [`galerkin`]: coarse stencils `K_H = R K_h P` (002 eq. 2.6b) in closed form
//!   `s_H = M s_h M^T`, their inverse (002 eq. 4.14) and multi-channel weight transfer.
//! - [`rediscretise`]: stencils in the derivative basis of 002 eq. 2.4, moved between meshes.
//! - [`subsample`]: building level `l+1` of a sample from level `l` (coarsen, crop or both).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use grids::{galerkin, prolong, restrict, Prolongation, Restriction};
//!
//! let x = Tensor::rand(0f32, 1., (2, 3, 8, 8), &Device::Cpu)?;
//! let coarse = restrict(&x, Restriction::Average)?; // [2, 3, 4, 4]
//! let back = prolong(&coarse, Prolongation::Bilinear)?; // [2, 3, 8, 8]
//! assert_eq!(back.dims(), x.dims());
//!
//! // A fine-mesh 3x3 kernel and its Galerkin coarse-mesh equivalent.
//! let w = Tensor::randn(0f32, 1., (4, 3, 3, 3), &Device::Cpu)?;
//! let wc = galerkin::restrict_weights(&w, Restriction::Average, Prolongation::Bilinear)?;
//! assert_eq!(wc.dims(), w.dims());
//! # Ok::<(), grids::Error>(())
//! ```

#![warn(missing_docs)]

pub mod boundary;
pub mod dense;
pub mod error;
pub mod galerkin;
pub mod prolong;
pub mod rediscretise;
pub mod restrict;
pub mod sparse;
pub mod subsample;

pub use boundary::Boundary;
pub use dense::Matrix;
pub use error::{Error, Result};
pub use prolong::{prolong, prolong_with, Prolongation};
pub use restrict::{restrict, restrict_with, Restriction};
pub use subsample::Subsampling;

/// 1-D weights of a transfer operator: `weights[k]` sits at offset `offset + k`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taps {
    /// Offset of the first weight.
    pub offset: isize,
    /// The non-zero weights, in offset order.
    pub weights: &'static [f64],
}

impl Taps {
    /// The weight at offset `i` (zero outside the support).
    pub fn at(&self, i: isize) -> f64 {
        usize::try_from(i - self.offset)
            .ok()
            .and_then(|k| self.weights.get(k))
            .copied()
            .unwrap_or(0.0)
    }

    /// The support `offset ..= offset + len - 1`.
    pub fn support(&self) -> std::ops::RangeInclusive<isize> {
        self.offset..=self.offset + self.weights.len() as isize - 1
    }
}
