//! Training for any candle model with multiscale gradient estimation: the composition of a
//! sampler (`mge`), the estimator (`mge`, 001 eq. 6), the stage driver (`fmg`, 001
//! Algorithm 2) and an optimizer (`optim`), with validation, history, atomic verified
//! checkpoints and exact resume. Progress reaches the caller through a callback
//! ([`Trainer::on_progress`]) and `tracing`; the crate never prints.
//!
//! Sources: `001` is *Multiscale Training of Convolutional Neural Networks* (multiscale gradient
//! estimation and Full-Multiscale training); the Galerkin hot start follows `002`, Haber,
//! Ruthotto and Holtham, *Learning across scales* (eq. 4.14).
//!
//! | file | what |
//! |---|---|
//! | `trainer.rs` | [`Trainer`]: the loop, hooks, resume (001 Algorithms 1-2) |
//! | `checkpoint.rs` | atomic checkpoint folders with checksums and a digest; run-folder lock |
//! | `history.rs` | [`HistoryPoint`] per iteration, `history.csv` |
//! | `validation.rs` | validation loss, divergence checks |
//! | `evaluate.rs` | [`TestSet`]: a fixed degraded test set, predictions and per-image [`Scores`] (MSE `mean((f(u) - y)^2)`, PSNR `10 log10(1 / MSE)`, SSIM) |
//! | `loss.rs` | MSE and physical-window SSIM losses (SPEC sections 0 and 6) |
//! | `threads.rs` | thread-pool settings, and the pool worker to train on, that make CPU steps faster |
//! | `error.rs` | typed errors naming the file or setting at fault |
//!
//! Train your own candle model with Full-Multiscale and MGE (`examples/own_model.rs`):
//!
//! ```no_run
#![doc = include_str!("../examples/own_model.rs")]
//! ```

pub mod checkpoint;
pub mod error;
pub mod evaluate;
pub mod history;
pub mod loss;
pub mod threads;
pub mod trainer;
pub mod validation;

pub use error::{Error, Result};
pub use evaluate::{Scores, TestSet, TestSpec};
pub use history::HistoryPoint;
pub use loss::{loss_fn, LossKind};
pub use trainer::{OptimizerKind, Outcome, Progress, Resumed, Trainer};
