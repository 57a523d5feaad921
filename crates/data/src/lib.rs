//! data
mod error;
mod fourier;
pub mod resize;
mod source;
mod dead_leaves;
mod grf;
mod markov;

pub use dead_leaves::DeadLeaves;
pub use error::{Error, Result};
pub use grf::GaussianRandomField;
pub use markov::MarkovField;
pub use source::{mix_seed, ImageSource};
