//! [`DriverState`]: where a run stands and the running estimates that steer it, so that a
//! checkpointed run resumes exactly.

use crate::early_stop::EarlyStopping;
use mge::VarianceTracker;
use serde::{Deserialize, Serialize};

/// What a checkpoint keeps of the driver, beside the parameters, the optimizer, the #WU
/// accountant and the sampler position: the next iteration, its stage, and the stage's
/// running estimates (the per-term variances `V_l` of SPEC section 3, the adaptive
/// allocation's estimates and early stopping's best loss). Without these a resumed stage
/// would re-learn its allocation and restart its patience.
///
/// Get one from [`crate::Driver::state_at`] (a fresh start) or from
/// [`crate::Context::state`] (after an iteration); serialise it with serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverState {
    /// Global number (over all stages) of the next iteration to run.
    pub next_iteration: u64,
    /// Stage of that iteration (the number of stages once the run is over).
    pub stage: usize,
    /// Running per-term variance estimates of the stage.
    pub tracker: VarianceTracker,
    /// The adaptive allocation's estimates (when `DriverConfig::adaptive` is set).
    pub adaptive: Option<VarianceTracker>,
    /// Early stopping's state (when `DriverConfig::patience` is set).
    pub early_stop: Option<EarlyStopping>,
}

impl DriverState {
    /// True once every stage has run (or stopped early).
    pub fn is_done(&self, stages: usize) -> bool {
        self.stage >= stages
    }
}
