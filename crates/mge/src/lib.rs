//! Multiscale Gradient Estimation (001 section 2.1, Algorithm 1) and work units (001 Appendix B).
//!
//! Sources: every number here is from `001`, *Multiscale Training of Convolutional Neural
//! Networks* (latest version); MLMC allocation follows Giles 2015, *Multilevel Monte Carlo
//! methods*.
//!
//! | file | what |
//! |---|---|
//! | `estimator.rs` | the estimator, a telescoping sum over levels (001 eq. 6, Algorithm 1) |
//! | `plan.rs` | levels and batch sizes `N_l = 2^l N_0` of an iteration (001 eq. 6, eqs. 39, 42-45) |
//! | `coupling.rs` | coupled fine/coarse versions of one batch (001 Algorithm 1) |
//! | `sampler.rs` | sources of fresh finest-mesh batches, one per term (001 eq. 6) |
//! | `workunits.rs` | work units (001 Definition 1) and their closed forms (001 Appendix B, eqs. 39-48); the Full-Multiscale stage schedules ([`StageSchedule`]: halving `I_s = max(1, I >> (L-1-s))`, equal `I_s = I`); the accountant |
//! | `fraction.rs` | exact fractions for #WU counts |
//! | `stats.rs` | per-term statistics: losses, `norm(g^(l) - g^(l+1))` (001 eqs. 9-10), variances |
//! | `adaptive.rs` | MLMC-optimal batches `N_l ~ sqrt(V_l / C_l)` (Giles 2015) with a single-scale fallback |
//! | `error.rs` | typed errors of `mge` |
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
