//! Typed errors of the estimator.

/// Errors of the `mge` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shapes, devices, backward).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The data pipeline failed (loader, degradation).
    #[error(transparent)]
    Data(#[from] data::Error),
    /// A grid transfer failed (restriction, subsampling).
    #[error(transparent)]
    Grids(#[from] grids::Error),
    /// A collective operation of distributed training failed (a peer died, mismatched calls).
    #[error(transparent)]
    Comm(#[from] comm::Error),
    /// A [`crate::LevelPlan`] or strategy parameter is inconsistent; the message names it.
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
    /// A sampler returned a batch of the wrong size or layout.
    #[error("sampler: {0}")]
    Sampler(String),
    /// An exact work-unit fraction overflowed or failed to parse.
    #[error("work units: {0}")]
    Fraction(String),
}

/// Result type of the `mge` crate.
pub type Result<T> = std::result::Result<T, Error>;
