//! MLMC-optimal batch allocation (Giles 2015, SPEC section 3 "Beyond the paper") with a
//! fallback to single-scale when the coarse terms stop paying.
//!
//! For a budget of `B` #WU per iteration, term costs `C_l` (#WU per sample: `c_l + c_{l+1}`
//! for a correction, `c_{L-1}` for the coarsest term) and per-sample variances `V_l`,
//! `N_l = B sqrt(V_l / C_l) / sum_k sqrt(V_k C_k)` minimises the estimator variance
//! `sum_l V_l / N_l`, giving `(sum_k sqrt(V_k C_k))^2 / B`. Single-scale with the same budget
//! has `V_fine c_s / B`. The allocation compares the two products variance x cost (after
//! rounding batches) and takes the smaller.

use crate::stats::{TermStats, VarianceTracker};
use crate::workunits::level_cost;
use crate::{Error, LevelPlan, Result};

/// The chosen batch allocation and its predicted variance x cost (per-sample units).
#[derive(Debug, Clone, PartialEq)]
pub enum Allocation {
    /// MGE over the base plan's levels with these batches (indexed by absolute level).
    Multilevel {
        batch: Vec<usize>,
        variance_cost: f64,
    },
    /// Single-scale on the base plan's finest level with this batch.
    Single { batch: usize, variance_cost: f64 },
}

/// Chooses each iteration's plan from running variance estimates.
#[derive(Debug, Clone)]
pub struct Adaptive {
    base: LevelPlan,
    budget: f64,
    probe_every: usize,
    min_batch: usize,
    tracker: VarianceTracker,
}

impl Adaptive {
    /// Allocates `budget` #WU per iteration over the levels of `base`; while single-scale
    /// wins, every `probe_every`-th iteration runs `base` to refresh the coarse variances.
    /// `decay` is the weight of old variance estimates. Batches are at least 2 (two halves).
    pub fn new(base: LevelPlan, budget: f64, probe_every: usize, decay: f64) -> Result<Self> {
        base.validate()?;
        if !(budget.is_finite() && budget > 0.0) {
            return Err(Error::InvalidPlan(format!(
                "adaptive budget {budget} must be positive"
            )));
        }
        if probe_every == 0 {
            return Err(Error::InvalidPlan(
                "adaptive probe_every must be at least 1".into(),
            ));
        }
        let tracker = VarianceTracker::new(base.levels, decay);
        Ok(Adaptive {
            base,
            budget,
            probe_every,
            min_batch: 2,
            tracker,
        })
    }

    /// Folds in the statistics of an iteration run with [`crate::GradientMode::PerTerm`].
    pub fn observe(&mut self, terms: &[TermStats]) {
        self.tracker.observe(terms);
    }

    /// The running variance estimates.
    pub fn tracker(&self) -> &VarianceTracker {
        &self.tracker
    }

    /// Continues from saved estimates (a resumed run); they must track the base plan's levels.
    pub fn with_tracker(mut self, tracker: VarianceTracker) -> Result<Self> {
        if tracker.levels() != self.base.levels {
            return Err(Error::InvalidPlan(format!(
                "saved variance estimates track {} levels, the plan has {}",
                tracker.levels(),
                self.base.levels
            )));
        }
        self.tracker = tracker;
        Ok(self)
    }

    /// The better allocation under the current estimates; `None` until every term's and the
    /// fine variance have been measured.
    pub fn allocation(&self) -> Result<Option<Allocation>> {
        let Some(v_fine) = self.tracker.fine_variance() else {
            return Ok(None);
        };
        let mut vc = Vec::new();
        for l in self.base.terms() {
            let Some(v) = self.tracker.term_variance(l) else {
                return Ok(None);
            };
            let mut c = level_cost(l)?.to_f64();
            if self.base.is_correction(l) {
                c += level_cost(l + 1)?.to_f64();
            }
            vc.push((l, v.max(0.0), c));
        }
        let s: f64 = vc.iter().map(|(_, v, c)| (v * c).sqrt()).sum();
        let mut batch = self.base.batch.clone();
        let (mut var, mut cost) = (0.0, 0.0);
        for &(l, v, c) in &vc {
            let n = if s > 0.0 {
                self.budget * (v / c).sqrt() / s
            } else {
                self.budget / c
            };
            batch[l] = (n.round() as usize).max(self.min_batch);
            var += v / batch[l] as f64;
            cost += batch[l] as f64 * c;
        }
        let c_s = level_cost(self.base.first_level)?.to_f64();
        let n_single = ((self.budget / c_s).round() as usize).max(self.min_batch);
        let single = v_fine / n_single as f64 * (n_single as f64 * c_s);
        Ok(Some(if var * cost < single {
            Allocation::Multilevel {
                batch,
                variance_cost: var * cost,
            }
        } else {
            Allocation::Single {
                batch: n_single,
                variance_cost: single,
            }
        }))
    }

    /// The plan for `iteration`: the base plan until estimates exist (and on probe
    /// iterations while single-scale wins), otherwise the chosen allocation.
    pub fn plan(&self, iteration: u64) -> Result<LevelPlan> {
        match self.allocation()? {
            None => Ok(self.base.clone()),
            Some(Allocation::Multilevel { batch, .. }) => Ok(LevelPlan {
                batch,
                ..self.base.clone()
            }),
            Some(Allocation::Single { batch, .. }) => {
                if iteration.is_multiple_of(self.probe_every as u64) {
                    return Ok(self.base.clone());
                }
                let s = self.base.first_level;
                let mut b = vec![0; s + 1];
                b[s] = batch;
                let plan = LevelPlan {
                    levels: s + 1,
                    batch: b,
                    ..self.base.clone()
                };
                plan.validate()?;
                Ok(plan)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fraction;

    fn stats(level: usize, correction: bool, v: f64, fine: Option<f64>) -> TermStats {
        TermStats {
            level,
            batch: 8,
            loss_fine: 0.0,
            loss_coarse: correction.then_some(0.0),
            grad_norm: None,
            variance: Some(v),
            fine_variance: fine,
            wu: Fraction::ZERO,
        }
    }

    #[test]
    fn cheap_corrections_choose_mlmc_batches() {
        let base = LevelPlan::multiscale(3, 4).unwrap();
        let mut a = Adaptive::new(base.clone(), 16.0, 10, 0.0).unwrap();
        assert_eq!(a.plan(1).unwrap(), base);
        // V = [0.01, 0.01, 1.0], V_fine = 1: corrections are nearly free of variance.
        a.observe(&[
            stats(0, true, 0.01, Some(1.0)),
            stats(1, true, 0.01, None),
            stats(2, false, 1.0, None),
        ]);
        let Some(Allocation::Multilevel {
            batch,
            variance_cost,
        }) = a.allocation().unwrap()
        else {
            panic!("expected multilevel")
        };
        // N_l proportional to sqrt(V_l / C_l): C = [5/4, 5/16, 1/16].
        let s = (0.01f64 * 1.25).sqrt() + (0.01f64 * 0.3125).sqrt() + (1.0f64 * 0.0625).sqrt();
        let want: Vec<usize> = [(0.01, 1.25), (0.01, 0.3125), (1.0, 0.0625)]
            .iter()
            .map(|&(v, c): &(f64, f64)| ((16.0 * (v / c).sqrt() / s).round() as usize).max(2))
            .collect();
        assert_eq!(batch, want);
        assert!(variance_cost < 1.0);
    }

    #[test]
    fn noisy_corrections_fall_back_to_single_scale() {
        let base = LevelPlan::multiscale(3, 4).unwrap();
        let mut a = Adaptive::new(base.clone(), 16.0, 5, 0.0).unwrap();
        // Trained-state premise of SPEC section 3: corrections as noisy as the fine gradient.
        a.observe(&[
            stats(0, true, 1.0, Some(1.0)),
            stats(1, true, 3.0, None),
            stats(2, false, 1.0, None),
        ]);
        assert!(matches!(
            a.allocation().unwrap(),
            Some(Allocation::Single { batch: 16, .. })
        ));
        let p = a.plan(1).unwrap();
        assert_eq!((p.levels, p.first_level, p.batch.clone()), (1, 0, vec![16]));
        assert_eq!(a.plan(5).unwrap(), base); // probe
                                              // A single-scale measurement must not overwrite the correction variance at level 0.
        a.observe(&[stats(0, false, 0.5, Some(0.5))]);
        assert_eq!(a.tracker().term_variance(0), Some(1.0));
        assert!(Adaptive::new(base, 0.0, 5, 0.0).is_err());
    }
}
