//! Config-file selection of a second-order optimizer.

use candle_core::Var;
use serde::{Deserialize, Serialize};

use crate::{GaussNewton, GaussNewtonConfig, Result, SecondOrder, Steihaug, SteihaugConfig};

/// Which optimizer to build, tagged by `kind = "gauss-newton" | "steihaug"` (TOML/JSON), e.g.
/// `{ kind = "steihaug", radius_init = 0.5 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OptimizerConfig {
    /// [`GaussNewton`] (closure returns a residual).
    GaussNewton(GaussNewtonConfig),
    /// [`Steihaug`] (closure per [`SteihaugConfig::objective`]).
    Steihaug(SteihaugConfig),
}

impl OptimizerConfig {
    /// Build the optimizer over `vars`.
    pub fn build(&self, vars: Vec<Var>) -> Result<Box<dyn SecondOrder>> {
        Ok(match *self {
            Self::GaussNewton(c) => Box::new(GaussNewton::new(vars, c)?),
            Self::Steihaug(c) => Box::new(Steihaug::new(vars, c)?),
        })
    }
}
