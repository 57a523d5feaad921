//! Central finite differences along a direction in parameter space.
//!
//! candle has no forward mode and no double backward, so both matrix-free products are built
//! from differences of a vector-valued function `F(theta)` along `v`:
//!
//! ```text
//! D_v F(theta) ~= (F(theta + h v) - F(theta - h v)) / (2 h),
//! ```
//!
//! with `F = f` (network output: `J v`, Gauss-Newton) or `F = grad L` (`H v`, Steihaug).
//! Taylor expansion gives a truncation error `h^2/6 * F'''[v, v, v] = O(h^2 ||v||^3)`; rounding
//! the perturbed parameters and outputs to the working precision `eps` adds `O(eps ||F|| / h)`.
//! The step is `h = c (1 + ||theta||) / ||v||` (relative to the size of `theta`, as in
//! Jacobian-free Newton-Krylov methods, Knoll & Keyes 2004, eq. 12), with the default
//! `c = eps^(1/3)` balancing both terms so the relative error is `O(eps^(2/3))`
//! (about `2e-5` in f32, `4e-11` in f64). For a model linear in `theta` the truncation term
//! vanishes and only rounding remains.

use candle_core::{DType, Var};

use crate::flat::{assign, check_len};
use crate::vector::norm;
use crate::{Error, Result};

/// Default relative step `c = eps^(1/3)` for the least precise dtype among `vars`
/// (machine epsilon of f64, f32, bf16 = 2^-8, f16 = 2^-11).
pub fn default_rel_step(vars: &[Var]) -> f64 {
    let eps = vars
        .iter()
        .map(|v| match v.dtype() {
            DType::F64 => f64::EPSILON,
            DType::BF16 => 2f64.powi(-8),
            DType::F16 => 2f64.powi(-11),
            _ => f64::from(f32::EPSILON),
        })
        .fold(f64::EPSILON, f64::max);
    eps.cbrt()
}

/// Step `h = c (1 + ||theta||) / ||v||` (module doc); `v` must be non-zero.
pub fn step_size(rel_step: f64, theta: &[f64], v: &[f64]) -> Result<f64> {
    let v_norm = norm(v);
    if !(v_norm > 0.0 && v_norm.is_finite()) {
        return Err(Error::NonFinite(
            "finite-difference direction (zero or non-finite)",
        ));
    }
    Ok(rel_step * (1.0 + norm(theta)) / v_norm)
}

/// `(F(theta + h v) - F(theta - h v)) / (2h)`, evaluating `eval` with the variables set to the
/// two perturbed points; the variables are set back to `theta` afterwards (also on error).
pub fn central_difference<F>(
    vars: &[Var],
    theta: &[f64],
    v: &[f64],
    h: f64,
    mut eval: F,
) -> Result<Vec<f64>>
where
    F: FnMut() -> Result<Vec<f64>>,
{
    check_len(vars, theta)?;
    check_len(vars, v)?;
    let mut at = |sign: f64| -> Result<Vec<f64>> {
        let point: Vec<f64> = theta.iter().zip(v).map(|(t, d)| t + sign * h * d).collect();
        assign(vars, &point)?;
        eval()
    };
    let result = at(1.0).and_then(|plus| Ok((plus, at(-1.0)?)));
    assign(vars, theta)?;
    let (plus, minus) = result?;
    if plus.len() != minus.len() {
        return Err(Error::LengthMismatch {
            expected: plus.len(),
            got: minus.len(),
        });
    }
    let diff: Vec<f64> = plus
        .iter()
        .zip(&minus)
        .map(|(p, m)| (p - m) / (2.0 * h))
        .collect();
    if diff.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite("finite-difference product"));
    }
    Ok(diff)
}
