//! Clean images, degradations and metrics for multiscale training (SPEC section 6).
//!
//! - Sources ([`ImageSource`]): procedural continuous functions that can be sampled at any mesh
//!   ([`DeadLeaves`], [`GaussianRandomField`], [`MarkovField`]), the shipped photos
//!   ([`PhotoFolder`], [`photos_dir`]) and exact readers of stored data sets ([`Idx`] plain or
//!   gzipped, [`Cifar`] 10/100, [`Stl10`], [`fashion_mnist`]).
//! - [`Loader`]: a seeded stream of fresh batches `[N, C, n, n]`, identical for any thread count.
//! - [`Degradation`]: denoise, deblur, inpaint, super-resolve x2, returning the parts needed for
//!   coupled coarse inputs ([`Degraded`]).
//! - [`Task`]: the four restoration tasks with their degradation and test [`Metric`].
//! - [`metrics`] (MSE, PSNR, SSIM, differentiable SSIM loss) and [`stats`] (paired t-test).
//! - [`label_field`](mod@label_field): classification labels as one-hot fields on the mesh, so that a
//!   classifier can be trained with the multiscale gradient estimator.
//!
//! Sources: `001` is *Multiscale Training of Convolutional Neural Networks* (its degradations,
//! tests and metrics), `000` its earlier version (the blur experiment's Markov field); `SPEC
//! section N` is the project specification.
//!
//! | file | what |
//! |---|---|
//! | `source.rs` | the [`ImageSource`] trait and the seeding helper |
//! | `dead_leaves.rs` | dead-leaves images (Matheron; Lee, Mumford & Huang 2001), cell-averaged on any mesh (SPEC section 6) |
//! | `fourier.rs` | random fields as finite Fourier sums, `Phi(f / sigma)` at the pixel centres |
//! | `grf.rs` | Gaussian random fields with power spectrum `k^-beta` (SPEC section 6) |
//! | `markov.rs` | the Gaussian Markov random field of 000 section 5 (Whittle-Matern, spectrum `(kappa^2 + 4 pi^2 k^2)^-2`) |
//! | `loader.rs` | [`Loader`]: a seeded stream of fresh batches, identical for any thread count |
//! | `photos.rs` | photo folders: centre crop, resize, optional grey (ITU-R BT.601) and patches |
//! | `resize.rs` | area averaging down, bicubic (Keys `a = -1/2`) up (SPEC section 6) |
//! | `idx.rs` | IDX files (MNIST format), plain or gzipped |
//! | `fashion_mnist.rs` | Fashion-MNIST from Debian's `dataset-fashion-mnist` |
//! | `cifar.rs` | CIFAR-10 and CIFAR-100, binary version |
//! | `stl10.rs` | STL-10, binary version |
//! | `stored.rs` | in-memory byte images shared by the binary readers |
//! | `degrade.rs` | [`Degradation`]: denoise `u = t y + (1 - t) z` (001 section 4.1), deblur, inpaint (001 Appendix D), super-resolve x2 |
//! | `task.rs` | [`Task`]: denoise, deblur, inpaint, superres (001 section 4), its degradation and its Table 2 metric |
//! | `metrics.rs` | [`Metric`]: MSE `mean((x - y)^2)`, PSNR `10 log10(1 / MSE)`, SSIM (Wang et al. 2004) and the SSIM loss `1 - SSIM` of 001 Table 8 |
//! | `label_field.rs` | labels as one-hot fields `F[i, k] = [k = y_i]` `[N, K, h, w]`, unchanged by restriction; cross-entropy `-sum_k mean(F_k) log softmax(z)_k` |
//! | `stats.rs` | paired two-sided t-test (001 Table 2 markers `*`, `**`) |
//! | `error.rs` | typed errors naming the file and what is wrong |
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
pub mod label_field;
mod loader;
mod markov;
pub mod metrics;
mod photos;
pub mod resize;
mod source;
pub mod stats;
mod stl10;
mod stored;
mod task;

pub use cifar::{Cifar, CifarKind};
pub use dead_leaves::DeadLeaves;
pub use degrade::{Degradation, Degraded};
pub use error::{Error, Result};
pub use fashion_mnist::{fashion_mnist, fashion_mnist_in, fashion_mnist_test, FASHION_MNIST_DIR};
pub use grf::GaussianRandomField;
pub use idx::{parse_idx, read_idx, Idx, IdxArray};
pub use label_field::{field_cross_entropy, label_field};
pub use loader::{load_batch, Loader, SharedSource};
pub use markov::MarkovField;
pub use metrics::Metric;
pub use photos::{photos_dir, PhotoFolder};
pub use source::{mix_seed, ImageSource};
pub use stats::{paired_t_test, TTest};
pub use stl10::Stl10;
pub use stored::StoredImages;
pub use task::Task;
