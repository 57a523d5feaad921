//! The shared conjugate-gradient kernel on flat `f64` vectors, with an optional trust region.
//!
//! Solves `A x = b` for a symmetric operator given only as a closure `v -> A v`, which is the
//! same as minimising the quadratic model `q(x) = 1/2 x^T A x - b^T x` (with `b = -g` this is
//! the Newton / Gauss-Newton model `g^T p + 1/2 p^T B p`). Iterations (Hestenes-Stiefel;
//! Nocedal & Wright, *Numerical Optimization*, 2nd ed., Algorithm 5.2), from `x_0 = 0`,
//! `r_0 = b`, `d_0 = r_0`:
//!
//! ```text
//! kappa_j = d_j^T A d_j,   alpha_j = r_j^T r_j / kappa_j,
//! x_{j+1} = x_j + alpha_j d_j,   r_{j+1} = r_j - alpha_j A d_j,
//! beta_j = r_{j+1}^T r_{j+1} / r_j^T r_j,   d_{j+1} = r_{j+1} + beta_j d_j.
//! ```
//!
//! Stopping test: `||r_j|| <= eta ||b||` (inexact Newton forcing term `eta`), or `max_iters`
//! operator products. With a radius `Delta` this is CG-Steihaug (N&W Algorithm 7.2): when
//! `kappa_j <= 0` (negative curvature) return the point `x_j + tau d_j` on `||x|| = Delta`
//! with the lower model value, and when `||x_{j+1}|| >= Delta` return the boundary point
//! `x_j + tau d_j`, `tau >= 0`. Without a radius, negative curvature stops the iteration at
//! `x_j`, or at the steepest-descent direction `b` when `j = 0` (N&W Algorithm 7.1). In exact
//! arithmetic CG reaches the solution of an `n x n` SPD system in at most `n` iterations
//! (N&W Theorem 5.1).

use crate::vector::{axpy, dot, norm};
use crate::{Error, Result};

/// Why the CG iteration stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// `||r|| <= eta ||b||`.
    Converged,
    /// `max_iters` operator products were spent.
    MaxIterations,
    /// A direction with `d^T A d <= 0` was met.
    NegativeCurvature,
    /// The iterate reached the trust-region boundary `||x|| = Delta`.
    Boundary,
}

/// Options of [`solve`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CgOptions {
    /// Maximum number of operator products (CG iterations).
    pub max_iters: usize,
    /// Relative residual tolerance `eta` in `||r|| <= eta ||b||`.
    pub rel_tol: f64,
    /// Trust-region radius `Delta` (CG-Steihaug), or `None` for plain CG.
    pub radius: Option<f64>,
}

/// Result of [`solve`].
#[derive(Debug, Clone, PartialEq)]
pub struct CgSolution {
    /// Approximate solution `x` (the step `p`).
    pub x: Vec<f64>,
    /// Number of operator products used.
    pub iterations: usize,
    /// Last computed residual norm `||b - A x_j||` (for boundary exits: of the last interior iterate).
    pub residual_norm: f64,
    /// Model value `q(x) = 1/2 x^T A x - b^T x` at the returned `x` (tracked exactly along the path).
    pub model_value: f64,
    /// Why the iteration stopped.
    pub termination: Termination,
}

/// Run (Steihaug-)CG on `A x = b` with `apply(v) = A v`; see the module doc for the algorithm.
pub fn solve<F>(mut apply: F, b: &[f64], opts: &CgOptions) -> Result<CgSolution>
where
    F: FnMut(&[f64]) -> Result<Vec<f64>>,
{
    if opts.rel_tol.is_nan() || opts.rel_tol < 0.0 {
        return Err(Error::InvalidConfig(format!(
            "CG rel_tol {} < 0",
            opts.rel_tol
        )));
    }
    if let Some(delta) = opts.radius {
        if !(delta > 0.0 && delta.is_finite()) {
            return Err(Error::InvalidConfig(format!(
                "trust radius {delta} must be > 0"
            )));
        }
    }
    let n = b.len();
    let b_norm = norm(b);
    if !b_norm.is_finite() {
        return Err(Error::NonFinite("CG right-hand side"));
    }
    let mut x = vec![0.0; n];
    let mut r = b.to_vec();
    let mut d = b.to_vec();
    let mut rr = b_norm * b_norm;
    let mut q = 0.0;
    let tol = opts.rel_tol * b_norm;
    let finish = |x, iterations, rr: f64, q, termination| CgSolution {
        x,
        iterations,
        residual_norm: rr.sqrt(),
        model_value: q,
        termination,
    };
    if b_norm <= tol || b_norm == 0.0 {
        return Ok(finish(x, 0, rr, q, Termination::Converged));
    }
    for j in 0..opts.max_iters {
        let ad = apply(&d)?;
        if ad.len() != n {
            return Err(Error::LengthMismatch {
                expected: n,
                got: ad.len(),
            });
        }
        let kappa = dot(&d, &ad);
        if !kappa.is_finite() {
            return Err(Error::NonFinite("CG operator product"));
        }
        // q(x + t d) = q(x) - t r^T d + t^2 kappa / 2
        let rd = dot(&r, &d);
        let model_along = |t: f64| q - t * rd + 0.5 * t * t * kappa;
        if kappa <= 0.0 {
            if let Some(delta) = opts.radius {
                let (t_lo, t_hi) = boundary_roots(&x, &d, delta);
                let t = if model_along(t_lo) <= model_along(t_hi) {
                    t_lo
                } else {
                    t_hi
                };
                let q_t = model_along(t);
                axpy(t, &d, &mut x);
                return Ok(finish(x, j + 1, rr, q_t, Termination::NegativeCurvature));
            }
            if j == 0 {
                // Steepest descent x = b, with q(b) = -||b||^2 + kappa / 2.
                return Ok(finish(
                    d,
                    1,
                    rr,
                    model_along(1.0),
                    Termination::NegativeCurvature,
                ));
            }
            return Ok(finish(x, j + 1, rr, q, Termination::NegativeCurvature));
        }
        let alpha = rr / kappa;
        if let Some(delta) = opts.radius {
            let mut trial = x.clone();
            axpy(alpha, &d, &mut trial);
            if norm(&trial) >= delta {
                let (_, t_hi) = boundary_roots(&x, &d, delta);
                let q_t = model_along(t_hi);
                axpy(t_hi, &d, &mut x);
                return Ok(finish(x, j + 1, rr, q_t, Termination::Boundary));
            }
        }
        q = model_along(alpha);
        axpy(alpha, &d, &mut x);
        axpy(-alpha, &ad, &mut r);
        let rr_new = dot(&r, &r);
        if rr_new.sqrt() <= tol {
            return Ok(finish(x, j + 1, rr_new, q, Termination::Converged));
        }
        let beta = rr_new / rr;
        rr = rr_new;
        d.iter_mut()
            .zip(&r)
            .for_each(|(di, ri)| *di = ri + beta * *di);
    }
    Ok(finish(x, opts.max_iters, rr, q, Termination::MaxIterations))
}

/// The two roots `t_lo <= 0 <= t_hi` of `||x + t d|| = Delta` for `||x|| < Delta`, `d != 0`.
fn boundary_roots(x: &[f64], d: &[f64], delta: f64) -> (f64, f64) {
    let dd = dot(d, d);
    let xd = dot(x, d);
    let c = dot(x, x) - delta * delta;
    let disc = (xd * xd - dd * c).max(0.0).sqrt();
    ((-xd - disc) / dd, (-xd + disc) / dd)
}
