//! Typed errors of the `mfc` crate.

/// Errors returned by the mesh-free convolution layers and transforms.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error raised by candle (shape mismatch, device, dtype, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A configuration value out of its valid range.
    #[error("invalid mfc configuration: {0}")]
    Config(String),
}

/// `Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
