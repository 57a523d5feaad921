//! Full-Multiscale training (001 section 3, Algorithm 2, Appendix B eqs. 42-48): stages from
//! the coarsest mesh to the finest, each an MGE (001 Algorithm 1) over the levels at or below
//! it with base batch `2^s N_0`, hot-started from the previous stage.
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
pub mod lr;
pub mod schedule;
pub mod update;

pub use driver::{Control, Driver, DriverConfig, Hooks, HotStart, IterRecord, NoHooks, Problem};
pub use early_stop::EarlyStopping;
pub use error::{Error, Result};
pub use lr::CosineLr;
pub use mge::StageSchedule;
pub use schedule::{stages, stages_wu, Stage, Strategy};
pub use update::{FirstOrder, Recorder, Reevaluate, Replay, SecondOrderUpdate, Update};
