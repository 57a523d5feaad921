//! What the caller plugs into a [`crate::Driver`]: hot-start prolongation, validation,
//! progress and checkpoints, with typed errors and access to the optimizer and sampler.

use crate::state::DriverState;
use crate::update::Update;
use crate::IterRecord;
use mge::Sampler;

/// A hook's error: any error type, boxed as it is so that the caller can downcast it back
/// from [`crate::Error::Hook`] (`err.downcast::<MyError>()`).
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// Result of a hook.
pub type HookResult<T> = std::result::Result<T, HookError>;

/// What the driver should do after [`Hooks::on_iteration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// Stop the whole run now (records so far are returned).
    Stop,
}

/// What [`Hooks::on_iteration`] may read besides the record: everything a checkpoint of
/// the iteration needs, without shared ownership.
pub struct Context<'c, U: ?Sized, S: ?Sized> {
    /// The update that just stepped (e.g. [`crate::FirstOrder`] over an Adam whose moments
    /// a checkpoint saves).
    pub update: &'c U,
    /// The sampler of fresh batches (e.g. its stream position).
    pub sampler: &'c S,
    /// The driver's state after this iteration: pass it to [`crate::Driver::run`] to resume
    /// exactly here.
    pub state: &'c DriverState,
}

/// Caller-supplied hooks, so `fmg` needs no model internals. All have no-op defaults; `U` and
/// `S` are the update and sampler types of the run, so a hook reaches their state through
/// [`Context`].
pub trait Hooks<U: ?Sized = dyn Update, S: ?Sized = dyn Sampler> {
    /// Galerkin hot start: prolong every weight from the mesh of level `from` to `to = from-1`.
    fn prolong(&mut self, from: usize, to: usize) -> HookResult<()> {
        Err(format!("Galerkin hot start from level {from} to {to} needs a prolong hook").into())
    }
    /// Validation loss of the current parameters (the stage's finest level is given).
    fn validate(&mut self, _level: usize) -> HookResult<Option<f64>> {
        Ok(None)
    }
    /// Progress and checkpoints: called after every optimizer step.
    fn on_iteration(&mut self, _rec: &IterRecord, _ctx: Context<'_, U, S>) -> HookResult<Control> {
        Ok(Control::Continue)
    }
    /// Called when a stage ends (after its last iteration or early stop).
    fn on_stage_end(&mut self, _stage: usize, _level: usize) -> HookResult<()> {
        Ok(())
    }
}

/// Hooks that do nothing (identity hot start, no validation).
pub struct NoHooks;
impl<U: ?Sized, S: ?Sized> Hooks<U, S> for NoHooks {}
