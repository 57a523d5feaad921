//! Residual blocks as forward-Euler steps of `dy/dt = F(theta(t), y)` (002 eq. 2.9, 003 eq. 2.9):
//! `y_{j+1} = y_j + dt F(theta_j, y_j)`. `dt = 1` is the plain ResNet; a smaller `dt` with more
//! blocks refines the time discretisation of the same ODE (stable for small enough `dt`).

use crate::error::{Error, Result};
use candle_core::Tensor;

/// The step size `dt` of `y <- y + dt F(y)`, checked finite and positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EulerStep {
    dt: f64,
}

impl EulerStep {
    /// `dt = 1`: the plain residual block `y + F(y)`.
    pub const UNIT: Self = Self { dt: 1.0 };

    /// A step of size `dt`; `Error::InvalidConfig` unless `dt` is finite and positive.
    pub fn new(dt: f64) -> Result<Self> {
        if dt.is_finite() && dt > 0.0 {
            Ok(Self { dt })
        } else {
            Err(Error::InvalidConfig(format!(
                "residual step dt = {dt}: must be a positive number"
            )))
        }
    }

    /// The step size.
    pub fn dt(self) -> f64 {
        self.dt
    }

    /// `y + dt f` with `f = F(y)` (002 eq. 2.9); at `dt = 1` exactly `y + f`.
    pub fn apply(self, y: &Tensor, f: &Tensor) -> candle_core::Result<Tensor> {
        if self.dt == 1.0 {
            y + f
        } else {
            y + (f * self.dt)?
        }
    }
}
