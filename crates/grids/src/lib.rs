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
//! Sources: `002` is Haber, Ruthotto and Holtham, *Learning across scales - A multiscale method
//! for Convolution Neural Networks*; `003` is Crafts, *Multiresolution Methods for Convolutional
//! Neural Networks*; `001` is *Multiscale Training of Convolutional Neural Networks*.
//!
//! | file | what |
//! |---|---|
//! | `restrict.rs` | restriction `R`, `[N,C,H,W]` to `[N,C,H/2,W/2]`: 2x2 average (003 section 3.1.4), injection, full weighting |
//! | `prolong.rs` | prolongation `P`, coarse to fine: bilinear, constant (002 eq. 2.5) |
//! | `boundary.rs` | the edge rule of the operators that read across it |
//! | `sparse.rs` | `R`, `P` and convolutions as CSR matrices on `n x n` grids, the reference for 002 eq. 2.6b |
//! | `galerkin.rs` | `K_H = R K_h P` as `s_H = M s_h M^T` (002 eq. 2.6b, 003 eq. 3.5), its inverse (002 eq. 4.14), multi-channel weights |
//! | `dense.rs` | small dense matrices: stencils, `M`, the 9x9 prolongation system (002 eq. 4.14) |
//! | `rediscretise.rs` | stencils in the derivative basis of 002 eq. 2.4 (section 2.1), moved between meshes |
//! | `subsample.rs` | level `l+1` from level `l`: coarsen, crop or both (001 section 4, Appendix A.2) |
//! | `error.rs` | typed errors of `grids` |
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
