//! Typed errors of the trainer.

use std::path::{Path, PathBuf};

/// Errors returned by this crate. Every message names the file or the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was attempted ("cannot write", ...).
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint is missing a part, damaged or edited (the message names the file).
    #[error("{0}")]
    Checkpoint(String),
    /// The run folder is in use by another live process.
    #[error("{} is in use by another run (process {owner}; lock file {}): wait for it to finish or choose another output folder (delete the lock file only if no such run is going)", out.display(), lock.display())]
    InUse {
        /// The run folder.
        out: PathBuf,
        /// Process id written in the lock file.
        owner: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// Training produced a non-finite loss, validation loss or parameter. `kept` says which
    /// checkpoint is the last good one.
    #[error("training diverged: {why}; {kept} (try a smaller learning rate)")]
    Diverged {
        /// What was found non-finite, and when.
        why: String,
        /// The last good checkpoint, or that none was written.
        kept: String,
    },
    /// A resume was asked for a run that cannot continue (another configuration, a finished
    /// run).
    #[error("{0}")]
    Resume(String),
    /// An invalid setting of the trainer.
    #[error("invalid trainer setting: {0}")]
    Invalid(String),
    /// The progress callback failed; its own error, to downcast back to its type.
    #[error("{0}")]
    Callback(fmg::HookError),
    /// JSON (de)serialisation of the trainer state.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A tensor operation.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The estimator.
    #[error(transparent)]
    Mge(#[from] mge::Error),
    /// The stage driver.
    #[error(transparent)]
    Fmg(#[from] fmg::Error),
    /// Models and model files.
    #[error(transparent)]
    Models(#[from] models::Error),
    /// The optimizers.
    #[error(transparent)]
    Optim(#[from] optim::Error),
    /// Data sources and degradations.
    #[error(transparent)]
    Data(#[from] data::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// `map_err` adapter turning an I/O error on `path` into [`Error::Io`].
pub fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}
