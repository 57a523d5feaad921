//! Typed errors of the data crate: every file problem names the file and what is wrong.

use std::path::PathBuf;

/// Errors returned by readers, sources, the loader, degradations and statistics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but its content does not follow the format.
    #[error("{path}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong (truncated, bad magic, wrong dimensions, label out of range, ...).
        problem: String,
    },
    /// A PNG/JPEG file that the `image` crate could not decode.
    #[error("{path}: cannot decode image: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A data set that is not installed, with the command that installs it.
    #[error("{what} not found at {path}: {hint}")]
    NotInstalled {
        /// The data set.
        what: String,
        /// Where it was looked for.
        path: PathBuf,
        /// How to install it.
        hint: String,
    },
    /// An image index beyond the end of a finite source.
    #[error("image index {index} out of range for a source of {len} images")]
    IndexOutOfRange {
        /// The requested index.
        index: u64,
        /// The number of images.
        len: usize,
    },
    /// A bad argument (size, shape, string to parse, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// A [`Error::Format`] for `path`.
    pub(crate) fn format(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result type of the data crate.
pub type Result<T> = std::result::Result<T, Error>;
