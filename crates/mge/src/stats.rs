//! Per-term statistics of MGE iterations (SPEC section 3: loss per term, `||g^(l) - g^(l+1)||`
//! (001 eq. 10), sample variances and variance ratios against the fine gradient).

use crate::Fraction;

/// What one term of one iteration measured.
#[derive(Debug, Clone, PartialEq)]
pub struct TermStats {
    /// Level `l` of the term (the fine side of a correction).
    pub level: usize,
    /// Samples drawn `N_l`.
    pub batch: usize,
    /// `loss_l(B_l)` on the fine side.
    pub loss_fine: f64,
    /// `loss_{l+1}(R B_l)` on the coarse side (`None` for the coarsest term).
    pub loss_coarse: Option<f64>,
    /// `||mean_i (g_i^(l) - g_i^(l+1))||` (001 eq. 9-10), or `||mean_i g_i^(l)||` for the
    /// coarsest term; only with per-term gradients.
    pub grad_norm: Option<f64>,
    /// Per-sample variance `V_l = E||d_i - E d||^2` of the term's integrand `d_i`, estimated
    /// from two half batches `A, B` (sizes `a, b`): `V_l ~ ||d_A - d_B||^2 / (1/a + 1/b)`
    /// (unbiased since `E||d_A - d_B||^2 = V (1/a + 1/b)`); needs `N_l >= 2`.
    pub variance: Option<f64>,
    /// Same estimator for the fine gradient `g^(l)` alone; measured on the finest term only
    /// (the single-scale reference of the variance ratios).
    pub fine_variance: Option<f64>,
    /// #WU of the term's model applications (from the accountant).
    pub wu: Fraction,
}

impl TermStats {
    /// The term's contribution to the MGE loss: `loss_fine - loss_coarse`.
    pub fn value(&self) -> f64 {
        self.loss_fine - self.loss_coarse.unwrap_or(0.0)
    }
}

/// Exponential moving averages of the per-term variances `V_l` and of the fine variance
/// (serialisable, so that a checkpoint can resume them exactly).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VarianceTracker {
    decay: f64,
    term: Vec<Option<f64>>,
    fine: Option<f64>,
}

impl VarianceTracker {
    /// A tracker for `levels` levels; `decay` in `[0, 1)` is the weight of the old average.
    pub fn new(levels: usize, decay: f64) -> Self {
        VarianceTracker {
            decay: decay.clamp(0.0, 0.999),
            term: vec![None; levels],
            fine: None,
        }
    }

    /// Folds one iteration's measurements in, keyed by term level (a single-scale term below
    /// the coarsest level only updates the fine variance).
    pub fn observe(&mut self, terms: &[TermStats]) {
        let ema =
            |old: Option<f64>, new: f64, d: f64| Some(old.map_or(new, |o| d * o + (1.0 - d) * new));
        let coarsest = self.term.len().saturating_sub(1);
        for t in terms {
            // A lone fine term below the coarsest level (single-scale) is not a correction.
            let is_term = t.loss_coarse.is_some() || t.level == coarsest;
            if let (true, Some(slot), Some(v)) = (is_term, self.term.get_mut(t.level), t.variance) {
                *slot = ema(*slot, v, self.decay);
            }
            if let Some(v) = t.fine_variance {
                self.fine = ema(self.fine, v, self.decay);
            }
        }
    }

    /// Number of levels tracked.
    pub fn levels(&self) -> usize {
        self.term.len()
    }

    /// Smoothed `V_l` of the term at level `l`.
    pub fn term_variance(&self, l: usize) -> Option<f64> {
        self.term.get(l).copied().flatten()
    }

    /// Smoothed variance of the single-scale (finest) gradient.
    pub fn fine_variance(&self) -> Option<f64> {
        self.fine
    }

    /// `V_l / V_fine` per level (SPEC section 3, "The premise, measured").
    pub fn ratios(&self) -> Vec<Option<f64>> {
        self.term
            .iter()
            .map(|v| match (v, self.fine) {
                (Some(v), Some(f)) if f > 0.0 => Some(v / f),
                _ => None,
            })
            .collect()
    }

    /// A progress-line fragment `"V/Vfine 0.15 0.31 0.9 -"` (one entry per level).
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .ratios()
            .iter()
            .map(|r| r.map_or("-".to_string(), |r| format!("{r:.2}")))
            .collect();
        format!("V/Vfine {}", parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(level: usize, coarse: bool, v: f64, fine: Option<f64>) -> TermStats {
        TermStats {
            level,
            batch: 4,
            loss_fine: 1.0,
            loss_coarse: coarse.then_some(0.5),
            grad_norm: None,
            variance: Some(v),
            fine_variance: fine,
            wu: Fraction::ZERO,
        }
    }

    #[test]
    fn ema_and_ratios() {
        let mut tr = VarianceTracker::new(2, 0.5);
        tr.observe(&[term(0, true, 1.0, Some(4.0)), term(1, false, 8.0, None)]);
        tr.observe(&[term(0, true, 3.0, Some(4.0)), term(1, false, 8.0, None)]);
        assert_eq!(tr.term_variance(0), Some(2.0));
        assert_eq!(tr.ratios(), vec![Some(0.5), Some(2.0)]);
        assert_eq!(tr.summary(), "V/Vfine 0.50 2.00");
        assert_eq!(term(0, true, 1.0, None).value(), 0.5);
    }
}
