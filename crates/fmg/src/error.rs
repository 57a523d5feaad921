//! Typed errors of the Full-Multiscale driver.

/// Errors of the `fmg` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The estimator failed (plan, sampler, tensors).
    #[error(transparent)]
    Mge(#[from] mge::Error),
    /// A tensor or optimizer operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A second-order step failed ([`crate::SecondOrderUpdate`]).
    #[error(transparent)]
    Optim(#[from] optim::Error),
    /// A schedule or driver setting is invalid; the message names it.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// The loss became NaN or infinite; the optimizer step was not taken.
    #[error("non-finite loss {loss} at iteration {iteration} (stage level {level})")]
    NonFinite {
        iteration: u64,
        level: usize,
        loss: f64,
    },
    /// A caller hook (prolongation, validation, progress) failed; the hook's own error, to
    /// downcast back to its type.
    #[error("{0}")]
    Hook(crate::HookError),
}

/// Result type of the `fmg` crate.
pub type Result<T> = std::result::Result<T, Error>;
