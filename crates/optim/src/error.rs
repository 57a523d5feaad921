//! Typed errors of the optimizers.

/// Errors returned by this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A candle operation failed (forward pass, backward pass, device copy).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A configuration value is out of its valid range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A flat vector does not match the parameter count (or an operator returned the wrong length).
    #[error("length mismatch: expected {expected} entries, got {got}")]
    LengthMismatch {
        /// Length required by the parameter list or operator.
        expected: usize,
        /// Length supplied.
        got: usize,
    },
    /// The closure was expected to return a scalar loss.
    #[error("the loss closure must return a scalar (single-element) tensor, got shape {0:?}")]
    NotScalar(Vec<usize>),
    /// A loss, gradient or operator product contained NaN or infinity.
    #[error("non-finite value in {0}")]
    NonFinite(&'static str),
    /// A saved optimizer state does not fit the optimizer (missing, extra or misshapen entry).
    #[error("optimizer state {0}")]
    State(String),
    /// An optimizer state file cannot be written or read.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The optimizer was built over no trainable floating-point variables.
    #[error("no trainable floating-point variables")]
    NoVariables,
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
