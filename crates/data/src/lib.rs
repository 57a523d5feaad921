//! Clean images, degradations and metrics for multiscale training (SPEC section 6).
//!
//! - Sources ([`ImageSource`]): procedural continuous functions that can be sampled at any mesh
//!   ([`DeadLeaves`], [`GaussianRandomField`], [`MarkovField`]), the shipped photos
//!   ([`PhotoFolder`], [`photos_dir`]) and exact readers of stored data sets ([`Idx`] plain or
//!   gzipped, [`Cifar`] 10/100, [`Stl10`], [`fashion_mnist`]).
//! - [`Loader`]: a seeded stream of fresh batches `[N, C, n, n]`, identical for any thread count.
//! - [`Degradation`]: denoise, deblur, inpaint, super-resolve x2, returning the parts needed for
//!   coupled coarse inputs ([`Degraded`]).
//! - [`metrics`] (MSE, PSNR, SSIM, differentiable SSIM loss) and [`stats`] (paired t-test).
//!
//! ```
//! use std::sync::Arc;
//! use candle_core::Device;
//! use rand::{rngs::StdRng, SeedableRng};
//! use data::{DeadLeaves, Degradation, Loader};
//!
//! let mut loader = Loader::new(Arc::new(DeadLeaves::new(7)), 32, 0, 2);
//! let clean = loader.next_batch(4, &Device::Cpu)?; // [4, 1, 32, 32], fresh on every call
//! let deg = Degradation::Denoise.apply(&clean, &mut StdRng::seed_from_u64(1))?;
//! assert_eq!(deg.input.dims(), &[4, 1, 32, 32]);
//! let psnr = data::metrics::per_image(data::metrics::Metric::Psnr, &deg.input, &clean)?;
//! assert_eq!(psnr.len(), 4);
//! # Ok::<(), data::Error>(())
//! ```

#![warn(missing_docs)]

mod cifar;
mod dead_leaves;
pub mod degrade;
mod error;
mod fashion_mnist;
mod fourier;
mod grf;
mod idx;
mod loader;
mod markov;
pub mod metrics;
mod photos;
pub mod resize;
mod source;
pub mod stats;
mod stl10;
mod stored;

pub use cifar::{Cifar, CifarKind};
pub use dead_leaves::DeadLeaves;
pub use degrade::{Degradation, Degraded};
pub use error::{Error, Result};
pub use fashion_mnist::{fashion_mnist, fashion_mnist_in, fashion_mnist_test, FASHION_MNIST_DIR};
pub use grf::GaussianRandomField;
pub use idx::{parse_idx, read_idx, Idx, IdxArray};
pub use loader::{load_batch, Loader, SharedSource};
pub use markov::MarkovField;
pub use photos::{photos_dir, PhotoFolder};
pub use source::{mix_seed, ImageSource};
pub use stats::{paired_t_test, TTest};
pub use stl10::Stl10;
pub use stored::StoredImages;
