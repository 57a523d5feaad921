//! Paired two-sided t-test between a strategy and the single-scale baseline on per-image test
//! metrics (001 Table 2 markers `*` p < 0.05 and `**` p < 0.01; SPEC section 6).

use crate::{Error, Result};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Result of [`paired_t_test`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TTest {
    /// `t = mean(d) / (sd(d) / sqrt(n))`, `d = a - b`.
    pub t: f64,
    /// Degrees of freedom `n - 1`.
    pub df: f64,
    /// Two-sided p-value `2 (1 - F_{n-1}(|t|))`.
    pub p_value: f64,
    /// `mean(a - b)`.
    pub mean_diff: f64,
    /// Cohen's `d_z = mean(d) / sd(d)` (sample standard deviation, `n - 1`).
    pub effect_size: f64,
}

/// Paired two-sided Student t-test of `H0: mean(a - b) = 0`. Errors when the lengths differ or
/// fewer than 2 pairs are given. Identical pairs give `t = 0, p = 1`; a constant nonzero
/// difference gives `t = ±inf, p = 0`.
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Result<TTest> {
    if a.len() != b.len() || a.len() < 2 {
        return Err(Error::InvalidArgument(format!(
            "paired t-test needs two samples of equal length >= 2, got {} and {}",
            a.len(),
            b.len()
        )));
    }
    let n = a.len() as f64;
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mean = d.iter().sum::<f64>() / n;
    let sd = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let df = n - 1.0;
    if sd == 0.0 {
        let (t, p) = if mean == 0.0 {
            (0.0, 1.0)
        } else {
            (mean.signum() * f64::INFINITY, 0.0)
        };
        return Ok(TTest {
            t,
            df,
            p_value: p,
            mean_diff: mean,
            effect_size: t,
        });
    }
    let t = mean / (sd / n.sqrt());
    let dist = StudentsT::new(0.0, 1.0, df)
        .map_err(|e| Error::InvalidArgument(format!("Student t: {e}")))?;
    let p_value = (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0);
    Ok(TTest {
        t,
        df,
        p_value,
        mean_diff: mean,
        effect_size: mean / sd,
    })
}
