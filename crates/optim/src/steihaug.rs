//! CG-Steihaug trust-region Newton method (003 eq. 3.7; Nocedal & Wright Algorithms 4.1, 7.2).
//!
//! Each iteration approximately solves
//!
//! ```text
//! min_p  m_k(p) = L_k + g_k^T p + 1/2 p^T H_k p   subject to ||p|| <= Delta_k
//! ```
//!
//! by CG-Steihaug ([`crate::cg::solve`] with a radius), stopping when
//! `||H p + g|| <= eta_k ||g||` with the forcing term `eta_k = min(1/2, sqrt(||g_k||))`
//! (N&W eq. 7.3, superlinear) unless fixed in the config, on negative curvature, or on the
//! boundary. Hessian-vector products are central differences of gradients
//! ([`crate::fd`]): `H v ~= (grad L(theta + h v) - grad L(theta - h v)) / (2h)`, two forward
//! and two backward passes each, error `O(h^2) + O(eps/h)`.
//!
//! With `rho_k = (L(theta_k) - L(theta_k + p)) / (m_k(0) - m_k(p))` (N&W eq. 4.4), the radius
//! update of N&W Algorithm 4.1: `Delta <- Delta/4` if `rho < 1/4`; `Delta <- min(2 Delta,
//! Delta_max)` if `rho > 3/4` and `||p|| = Delta`; the step is taken if `rho > eta`.

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::cg::{self, CgOptions, Termination};
use crate::fd::{central_difference, default_rel_step, step_size};
use crate::flat::{flatten, flatten_grads};
use crate::objective::{loss_value, scalar_loss, ClosureKind};
use crate::trial::try_step;
use crate::vector::norm;
use crate::{check_range, float_vars, Error, Result, SecondOrder, StepReport};

/// Settings of [`Steihaug`] (serde: all fields optional, unknown fields rejected).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SteihaugConfig {
    /// What the closure returns: a scalar loss (default) or a least-squares residual.
    pub objective: ClosureKind,
    /// Initial trust radius `Delta_0`.
    pub radius_init: f64,
    /// Largest radius `Delta_max`.
    pub radius_max: f64,
    /// Acceptance threshold `eta` on `rho` (in [0, 1/4)).
    pub accept_ratio: f64,
    /// Maximum CG iterations per step.
    pub cg_max_iters: usize,
    /// Fixed forcing term `eta_k`; `None` = `min(1/2, sqrt(||g||))`.
    pub forcing: Option<f64>,
    /// Relative finite-difference step `c`; `None` = `eps^(1/3)` of the variables' dtype.
    pub fd_rel_step: Option<f64>,
}

impl Default for SteihaugConfig {
    fn default() -> Self {
        Self {
            objective: ClosureKind::Loss,
            radius_init: 1.0,
            radius_max: 1e3,
            accept_ratio: 1e-4,
            cg_max_iters: 20,
            forcing: None,
            fd_rel_step: None,
        }
    }
}

impl SteihaugConfig {
    /// Error on out-of-range settings.
    pub fn validate(&self) -> Result<()> {
        if self.cg_max_iters == 0 {
            return Err(Error::InvalidConfig("cg_max_iters must be >= 1".into()));
        }
        check_range("radius_max", self.radius_max, 0.0, f64::INFINITY)?;
        if !(self.radius_init > 0.0 && self.radius_init <= self.radius_max) {
            return Err(Error::InvalidConfig(format!(
                "radius_init = {} must lie in (0, radius_max]",
                self.radius_init
            )));
        }
        check_range("accept_ratio", self.accept_ratio, -f64::MIN_POSITIVE, 0.25)?;
        if let Some(eta) = self.forcing {
            check_range("forcing", eta, -f64::MIN_POSITIVE, 1.0)?;
        }
        if let Some(c) = self.fd_rel_step {
            check_range("fd_rel_step", c, 0.0, 1.0)?;
        }
        Ok(())
    }
}

/// CG-Steihaug trust-region optimizer.
#[derive(Debug)]
pub struct Steihaug {
    vars: Vec<Var>,
    config: SteihaugConfig,
    radius: f64,
}

impl Steihaug {
    /// Optimizer over the floating-point `vars` (others are dropped, as in candle-nn).
    pub fn new(vars: Vec<Var>, config: SteihaugConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            vars: float_vars(vars)?,
            radius: config.radius_init,
            config,
        })
    }

    /// Current trust radius `Delta`.
    pub fn radius(&self) -> f64 {
        self.radius
    }

    /// Give the variables back (as candle-nn's `SGD::into_inner`).
    pub fn into_inner(self) -> Vec<Var> {
        self.vars
    }
}

/// `(L, grad L)` at the current variable values: one forward and one backward pass.
fn loss_and_grad(
    vars: &[Var],
    closure: &mut dyn FnMut() -> candle_core::Result<Tensor>,
    kind: ClosureKind,
) -> Result<(f64, Vec<f64>)> {
    let loss = scalar_loss(&closure()?, kind)?;
    let grads = loss.backward()?;
    Ok((loss_value(&loss)?, flatten_grads(vars, &grads)?))
}

/// `H v` by central differences of `grad L` along `v` (module doc); variables left at `theta`.
pub fn hessian_vector(
    vars: &[Var],
    closure: &mut dyn FnMut() -> candle_core::Result<Tensor>,
    kind: ClosureKind,
    theta: &[f64],
    v: &[f64],
    rel_step: f64,
) -> Result<Vec<f64>> {
    let h = step_size(rel_step, theta, v)?;
    central_difference(vars, theta, v, h, || {
        Ok(loss_and_grad(vars, closure, kind)?.1)
    })
}

impl SecondOrder for Steihaug {
    fn closure_kind(&self) -> ClosureKind {
        self.config.objective
    }

    fn step(
        &mut self,
        closure: &mut dyn FnMut() -> candle_core::Result<Tensor>,
    ) -> Result<StepReport> {
        let cfg = self.config;
        let kind = cfg.objective;
        let vars = &self.vars;
        let theta = flatten(vars)?;
        let (loss0, grad) = loss_and_grad(vars, closure, kind)?;
        let grad_norm = norm(&grad);
        if !(loss0.is_finite() && grad_norm.is_finite()) {
            return Err(Error::NonFinite("loss or gradient"));
        }
        let rel_step = cfg.fd_rel_step.unwrap_or_else(|| default_rel_step(vars));
        let (mut forward_passes, mut backward_passes) = (1, 1);
        let apply = |v: &[f64]| -> Result<Vec<f64>> {
            forward_passes += 2;
            backward_passes += 2;
            hessian_vector(vars, closure, kind, &theta, v, rel_step)
        };
        let rhs: Vec<f64> = grad.iter().map(|g| -g).collect();
        let rel_tol = cfg.forcing.unwrap_or_else(|| grad_norm.sqrt().min(0.5));
        let opts = CgOptions {
            max_iters: cfg.cg_max_iters,
            rel_tol,
            radius: Some(self.radius),
        };
        let sol = cg::solve(apply, &rhs, &opts)?;
        let step_norm = norm(&sol.x);
        let pred = -sol.model_value;
        let trial = try_step(
            vars,
            &theta,
            &sol.x,
            closure,
            kind,
            loss0,
            pred,
            cfg.accept_ratio,
        )?;
        forward_passes += 1;
        let on_boundary = matches!(
            sol.termination,
            Termination::Boundary | Termination::NegativeCurvature
        );
        if trial.ratio < 0.25 {
            self.radius *= 0.25;
        } else if trial.ratio > 0.75 && on_boundary {
            self.radius = (2.0 * self.radius).min(cfg.radius_max);
        }
        // Keep Delta representable so CG-Steihaug accepts it after many shrinks.
        self.radius = self.radius.max(f64::MIN_POSITIVE);
        Ok(StepReport {
            loss_before: loss0,
            loss_after: trial.loss,
            predicted_reduction: pred,
            ratio: trial.ratio,
            accepted: trial.accepted,
            grad_norm,
            step_norm,
            cg_iterations: sol.iterations,
            cg_termination: sol.termination,
            radius: Some(self.radius),
            damping: None,
            forward_passes,
            backward_passes,
        })
    }

    fn vars(&self) -> &[Var] {
        &self.vars
    }
}
