//! Gauss-Newton-CG with Levenberg-Marquardt damping (002 section 3).
//!
//! For the least-squares loss `L(theta) = 1/(2m) ||r(theta)||^2`, `r = f(theta) - y` with `m`
//! entries, `grad L = J^T r / m` and the Gauss-Newton matrix is `G = J^T J / m`
//! (`J = dr/dtheta = df/dtheta`). Each iteration solves the damped system
//!
//! ```text
//! (J^T J / m + lambda I) p = -J^T r / m
//! ```
//!
//! approximately by CG ([`crate::cg::solve`]) using only
//! * `J v`: central finite differences of the residual along `v` ([`crate::fd`], error
//!   `O(h^2)` truncation + `O(eps/h)` rounding, `h = eps^(1/3) (1 + ||theta||) / ||v||`);
//!   two forward passes per product;
//! * `J^T w`: one backward pass of `<r(theta), w>` through the graph of the forward pass at
//!   `theta` (recorded once per iteration, reused for every product).
//!
//! The step is accepted when `rho = (L(theta) - L(theta + p)) / pred > eta` with the
//! Gauss-Newton model reduction `pred = -(g^T p + 1/2 p^T G p)`; the damping follows the
//! Levenberg-Marquardt trust-region rule (Nocedal & Wright section 10.3, Algorithm 4.1 with
//! `lambda` in place of `1/Delta`): `lambda <- lambda * decrease` if `rho > 3/4`,
//! `lambda <- lambda * increase` if `rho < 1/4`, clamped to `[lambda_min, lambda_max]`.

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::cg::{self, CgOptions};
use crate::fd::{central_difference, default_rel_step, step_size};
use crate::flat::{flatten, flatten_grads, tensor_to_f64};
use crate::objective::ClosureKind;
use crate::trial::try_step;
use crate::vector::{dot, norm};
use crate::{check_range, float_vars, Error, Result, SecondOrder, StepReport};

/// Settings of [`GaussNewton`] (serde: all fields optional, unknown fields rejected).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GaussNewtonConfig {
    /// Maximum CG iterations per step.
    pub cg_max_iters: usize,
    /// CG forcing term `eta` in `||r_cg|| <= eta ||g||`.
    pub cg_rel_tol: f64,
    /// Initial damping `lambda_0`.
    pub damping_init: f64,
    /// Lower clamp of `lambda` (> 0).
    pub damping_min: f64,
    /// Upper clamp of `lambda`.
    pub damping_max: f64,
    /// Factor applied to `lambda` when `rho > 3/4` (in (0, 1)).
    pub damping_decrease: f64,
    /// Factor applied to `lambda` when `rho < 1/4` (> 1).
    pub damping_increase: f64,
    /// Acceptance threshold `eta` on `rho` (in [0, 1/4)).
    pub accept_ratio: f64,
    /// Relative finite-difference step `c`; `None` = `eps^(1/3)` of the variables' dtype.
    pub fd_rel_step: Option<f64>,
}

impl Default for GaussNewtonConfig {
    fn default() -> Self {
        Self {
            cg_max_iters: 20,
            cg_rel_tol: 1e-3,
            damping_init: 1e-3,
            damping_min: 1e-12,
            damping_max: 1e12,
            damping_decrease: 1.0 / 3.0,
            damping_increase: 2.0,
            accept_ratio: 1e-4,
            fd_rel_step: None,
        }
    }
}

impl GaussNewtonConfig {
    /// Error on out-of-range settings.
    pub fn validate(&self) -> Result<()> {
        if self.cg_max_iters == 0 {
            return Err(Error::InvalidConfig("cg_max_iters must be >= 1".into()));
        }
        check_range("cg_rel_tol", self.cg_rel_tol, -f64::MIN_POSITIVE, 1.0)?;
        check_range("damping_min", self.damping_min, 0.0, f64::INFINITY)?;
        check_range(
            "damping_max",
            self.damping_max,
            self.damping_min,
            f64::INFINITY,
        )?;
        if !(self.damping_init >= self.damping_min && self.damping_init <= self.damping_max) {
            return Err(Error::InvalidConfig(format!(
                "damping_init = {} must lie in [damping_min, damping_max]",
                self.damping_init
            )));
        }
        check_range("damping_decrease", self.damping_decrease, 0.0, 1.0)?;
        check_range(
            "damping_increase",
            self.damping_increase,
            1.0,
            f64::INFINITY,
        )?;
        check_range("accept_ratio", self.accept_ratio, -f64::MIN_POSITIVE, 0.25)?;
        if let Some(c) = self.fd_rel_step {
            check_range("fd_rel_step", c, 0.0, 1.0)?;
        }
        Ok(())
    }
}

/// Gauss-Newton-CG optimizer; the closure returns the residual `r(theta) = f(theta) - y`.
#[derive(Debug)]
pub struct GaussNewton {
    vars: Vec<Var>,
    config: GaussNewtonConfig,
    damping: f64,
}

impl GaussNewton {
    /// Optimizer over the floating-point `vars` (others are dropped, as in candle-nn).
    pub fn new(vars: Vec<Var>, config: GaussNewtonConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            vars: float_vars(vars)?,
            damping: config.damping_init,
            config,
        })
    }

    /// Current damping `lambda`.
    pub fn damping(&self) -> f64 {
        self.damping
    }

    /// Give the variables back (as candle-nn's `SGD::into_inner`).
    pub fn into_inner(self) -> Vec<Var> {
        self.vars
    }
}

/// `J v` by central differences of the closure output (module doc); the variables are left at
/// `theta`. `rel_step` is the constant `c` of [`crate::fd::step_size`].
pub fn jacobian_vector(
    vars: &[Var],
    closure: &mut dyn FnMut() -> candle_core::Result<Tensor>,
    theta: &[f64],
    v: &[f64],
    rel_step: f64,
) -> Result<Vec<f64>> {
    let h = step_size(rel_step, theta, v)?;
    central_difference(vars, theta, v, h, || tensor_to_f64(&closure()?))
}

/// `J^T w = grad_theta <f(theta), w>`: one backward pass through the recorded `output`.
pub fn jacobian_transpose_vector(output: &Tensor, vars: &[Var], w: &[f64]) -> Result<Vec<f64>> {
    if w.len() != output.elem_count() {
        return Err(Error::LengthMismatch {
            expected: output.elem_count(),
            got: w.len(),
        });
    }
    let w = Tensor::from_slice(w, output.shape(), output.device())?.to_dtype(output.dtype())?;
    let grads = (output * w)?.sum_all()?.backward()?;
    flatten_grads(vars, &grads)
}

impl SecondOrder for GaussNewton {
    fn closure_kind(&self) -> ClosureKind {
        ClosureKind::Residual
    }

    fn step(
        &mut self,
        closure: &mut dyn FnMut() -> candle_core::Result<Tensor>,
    ) -> Result<StepReport> {
        let cfg = self.config;
        let vars = &self.vars;
        let theta = flatten(vars)?;
        let residual = closure()?;
        let r = tensor_to_f64(&residual)?;
        let m = r.len().max(1) as f64;
        let loss0 = 0.5 * dot(&r, &r) / m;
        if !loss0.is_finite() {
            return Err(Error::NonFinite("loss"));
        }
        let r_over_m: Vec<f64> = r.iter().map(|x| x / m).collect();
        let grad = jacobian_transpose_vector(&residual, vars, &r_over_m)?;
        let rel_step = cfg.fd_rel_step.unwrap_or_else(|| default_rel_step(vars));
        let lambda = self.damping;
        let (mut forward_passes, mut backward_passes) = (1, 1);
        let apply = |v: &[f64]| -> Result<Vec<f64>> {
            let jv = jacobian_vector(vars, closure, &theta, v, rel_step)?;
            let jv_over_m: Vec<f64> = jv.iter().map(|x| x / m).collect();
            let mut gv = jacobian_transpose_vector(&residual, vars, &jv_over_m)?;
            forward_passes += 2;
            backward_passes += 1;
            gv.iter_mut().zip(v).for_each(|(a, vi)| *a += lambda * vi);
            Ok(gv)
        };
        let rhs: Vec<f64> = grad.iter().map(|g| -g).collect();
        let opts = CgOptions {
            max_iters: cfg.cg_max_iters,
            rel_tol: cfg.cg_rel_tol,
            radius: None,
        };
        let sol = cg::solve(apply, &rhs, &opts)?;
        let step_norm = norm(&sol.x);
        // Undamped model: q_damped(p) - lambda/2 ||p||^2 = g^T p + 1/2 p^T G p.
        let pred = -(sol.model_value - 0.5 * lambda * step_norm * step_norm);
        let trial = try_step(
            vars,
            &theta,
            &sol.x,
            closure,
            ClosureKind::Residual,
            loss0,
            pred,
            cfg.accept_ratio,
        )?;
        forward_passes += 1;
        self.damping = if trial.ratio > 0.75 {
            lambda * cfg.damping_decrease
        } else if trial.ratio < 0.25 {
            lambda * cfg.damping_increase
        } else {
            lambda
        }
        .clamp(cfg.damping_min, cfg.damping_max);
        Ok(StepReport {
            loss_before: loss0,
            loss_after: trial.loss,
            predicted_reduction: pred,
            ratio: trial.ratio,
            accepted: trial.accepted,
            grad_norm: norm(&grad),
            step_norm,
            cg_iterations: sol.iterations,
            cg_termination: sol.termination,
            radius: None,
            damping: Some(self.damping),
            forward_passes,
            backward_passes,
        })
    }

    fn vars(&self) -> &[Var] {
        &self.vars
    }
}
