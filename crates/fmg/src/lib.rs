//! Full-Multiscale training (001 section 3, Algorithm 2, Appendix B eqs. 42-48): stages from
//! the coarsest mesh to the finest, each an MGE (001 Algorithm 1) over the levels at or below
//! it with base batch `2^s N_0`, hot-started from the previous stage.
//!
//! Sources: `001` is *Multiscale Training of Convolutional Neural Networks*; the hot-start choices
//! cite `002`, Haber, Ruthotto and Holtham, *Learning across scales*, and `003`, Crafts,
//! *Multiresolution Methods for Convolutional Neural Networks*.
//!
//! | file | what |
//! |---|---|
//! | `schedule.rs` | the strategies ([`StrategyKind`]: single, multiscale, full-multiscale), the stages of a strategy (001 Algorithm 2) and their closed-form #WU `sum_s I_s WU_s` (001 Appendix B, eqs. 39-48) |
//! | `driver.rs` | the driver: stages coarse to fine, each an MGE (001 Algorithm 1); hot start by reuse (003) or Galerkin prolongation (002 section 4) |
//! | `hooks.rs` | what the caller plugs in (hot start, validation, progress, checkpoints), typed hook errors, the [`Context`] a checkpoint reads |
//! | `state.rs` | [`DriverState`]: next iteration, stage and the stage's running estimates (variances, adaptive allocation, early stopping) for an exact resume |
//! | `update.rs` | one update: first-order from the MGE gradient (001 eq. 6) or second-order (Gauss-Newton-CG, 002 section 3; CG-Steihaug, 003 eq. 3.7) replaying the iteration's draws |
//! | `lr.rs` | cosine learning rate (`CosineAnnealingLR`), over all stages or restarted per stage |
//! | `early_stop.rs` | early stopping on a validation loss |
//! | `error.rs` | typed errors of the driver |
//!
//! ```
//! use fmg::schedule::{stages, stages_wu, Strategy};
//! use mge::{LevelPlan, StageSchedule};
//! let base = LevelPlan::multiscale(4, 16)?;
//! let st = stages(Strategy::FullMultiscale { schedule: StageSchedule::Halving }, &base, 2000)?;
//! assert_eq!(st.iter().map(|s| s.iters).collect::<Vec<_>>(), vec![2000, 1000, 500, 250]);
//! assert_eq!(stages_wu(&st)?.to_string(), "28750"); // 115/128 N0 I (eq. 47)
//! # Ok::<(), fmg::Error>(())
//! ```

pub mod driver;
pub mod early_stop;
pub mod error;
pub mod hooks;
pub mod lr;
pub mod schedule;
pub mod state;
pub mod update;

pub use driver::{Driver, DriverConfig, HotStart, IterRecord, Problem};
pub use early_stop::EarlyStopping;
pub use error::{Error, Result};
pub use hooks::{Context, Control, HookError, HookResult, Hooks, NoHooks};
pub use lr::CosineLr;
pub use mge::StageSchedule;
pub use schedule::{stages, stages_wu, Stage, Strategy, StrategyKind};
pub use state::DriverState;
pub use update::{FirstOrder, Recorder, Reevaluate, Replay, SecondOrderUpdate, Update};
