//! Multiscale Gradient Estimation (001 section 2.1, Algorithm 1) and work units (001 Appendix B).
//!
//! ```
//! use mge::workunits::{mge_wu_per_iter, single_wu_per_iter};
//! assert_eq!(mge_wu_per_iter(4, 16).unwrap().to_string(), "37");
//! assert_eq!(single_wu_per_iter(4, 16).unwrap().to_string(), "240");
//! ```

pub mod adaptive;
pub mod coupling;
pub mod error;
pub mod estimator;
pub mod fraction;
pub mod parallel;
pub mod plan;
pub mod sampler;
pub mod stats;
pub mod workunits;

pub use adaptive::{Adaptive, Allocation};
pub use error::{Error, Result};
pub use estimator::{Estimator, GradientMode, LossFn, MgeLoss, ModelFn, Step, TermEval};
pub use fraction::Fraction;
pub use parallel::{Parallel, Split};
pub use plan::LevelPlan;
pub use sampler::{LoaderSampler, Sampler};
pub use stats::{TermStats, VarianceTracker};
pub use workunits::{Accountant, StageSchedule};
