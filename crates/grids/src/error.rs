//! Typed errors of the `grids` crate.

/// Everything that can go wrong in `grids`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A name given to `FromStr` is not one of the accepted names.
    #[error("unknown {kind} {name:?}; expected one of {expected}")]
    UnknownName {
        /// Which enum was being parsed.
        kind: &'static str,
        /// The rejected input.
        name: String,
        /// The accepted names, comma separated.
        expected: &'static str,
    },
    /// Inputs whose shapes do not fit the operation.
    #[error("shape error: {0}")]
    Shape(String),
    /// A valid input the operation does not handle (e.g. a 5x5 kernel).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A linear system (e.g. stencil prolongation, 002 eq. 4.14) has no unique solution.
    #[error("singular {size}x{size} system: pivot {pivot:e} at column {column}")]
    Singular {
        /// Order of the system.
        size: usize,
        /// Column where elimination found no usable pivot.
        column: usize,
        /// Largest pivot candidate found in that column.
        pivot: f64,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
