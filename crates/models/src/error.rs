//! Typed errors of the `models` crate.

use std::path::PathBuf;

/// Everything that can go wrong while building, running, saving or transferring a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The input mesh `h x w` is not a multiple of the model's total down-sampling factor.
    #[error("mesh {h}x{w} is not divisible by the model's down-sampling factor {factor}")]
    MeshNotDivisible {
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
        /// Total down-sampling factor of the model.
        factor: usize,
    },
    /// The input has the wrong rank or number of channels.
    #[error("input shape {got:?} does not fit the model: {expected}")]
    InputShape {
        /// Shape received.
        got: Vec<usize>,
        /// What the model expects.
        expected: String,
    },
    /// A conditioned model was called without the noise level `t`.
    #[error("this model is conditioned on the noise level t; call forward with Some(t) ([N])")]
    MissingNoiseLevel,
    /// A configuration value is out of range.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// A name given to `FromStr` is not one of the accepted names.
    #[error("unknown {kind} {name:?}; expected one of {expected}")]
    UnknownName {
        /// Which enum was being parsed.
        kind: &'static str,
        /// The rejected input.
        name: String,
        /// The accepted names.
        expected: &'static str,
    },
    /// Reading or writing a checkpoint file failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint file is not a valid checkpoint of this crate (truncated, bit flips, no config).
    #[error("checkpoint {path} is corrupt: {reason}")]
    CorruptCheckpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint holds a different architecture than the one it is loaded into.
    #[error("checkpoint {path} does not fit this architecture: {reason}")]
    ArchitectureMismatch {
        /// The file.
        path: PathBuf,
        /// The first difference found.
        reason: String,
    },
    /// A stencil transfer of the `grids` crate failed.
    #[error("Galerkin transfer of {name}: {source}")]
    Transfer {
        /// Variable whose stencils were being transferred.
        name: String,
        /// The underlying error.
        #[source]
        source: grids::Error,
    },
    /// A layer of the `mfc` crate could not be built.
    #[error("mfc layer: {0}")]
    Mfc(#[from] mfc::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Carry this error inside a `candle_core::Error` (for `Module`-style signatures such as
    /// [`crate::Model::forward`]); recover it with [`Error::from_candle`].
    pub fn into_candle(self) -> candle_core::Error {
        let context = self.to_string();
        candle_core::Error::WrappedContext {
            wrapped: Box::new(self),
            context,
        }
    }

    /// The typed `models` error carried inside a `candle_core::Error`, if there is one.
    pub fn from_candle(e: &candle_core::Error) -> Option<&Error> {
        match e {
            candle_core::Error::WrappedContext { wrapped, .. } => wrapped.downcast_ref::<Error>(),
            candle_core::Error::WithBacktrace { inner, .. }
            | candle_core::Error::Context { inner, .. }
            | candle_core::Error::WithPath { inner, .. } => Error::from_candle(inner),
            _ => None,
        }
    }
}
