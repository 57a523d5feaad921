//! Multiscale Gradient Estimation (001 section 2.1, Algorithm 1) and work units (001 Appendix B).
//!
//! ```
//! use mge::workunits::{mge_wu_per_iter, single_wu_per_iter};
//! assert_eq!(mge_wu_per_iter(4, 16).unwrap().to_string(), "37");
//! assert_eq!(single_wu_per_iter(4, 16).unwrap().to_string(), "240");
//! ```

pub mod error;
pub mod fraction;
pub mod workunits;

pub use error::{Error, Result};
pub use fraction::Fraction;
pub use workunits::{Accountant, StageSchedule};
