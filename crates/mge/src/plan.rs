//! Which levels an MGE iteration uses and how many samples each term draws (001 eq. 6).

use crate::workunits::{default_batches, plan_wu_per_iter};
use crate::{Error, Fraction, Result};
use grids::{Restriction, Subsampling};

/// The levels and batch sizes of one MGE iteration (001 eq. 6, Algorithm 1).
///
/// Terms run over levels `first_level .. levels-1`: term `l < levels-1` is the correction
/// `mean_i (g_i^(l) - g_i^(l+1))` over a fresh batch of `batch[l]` samples, the last term is
/// `mean_i g_i^(levels-1)` over `batch[levels-1]` samples. `first_level > 0` is a
/// Full-Multiscale stage whose finest mesh is `2^first_level h` (001 eqs. 42-45).
#[derive(Debug, Clone, PartialEq)]
pub struct LevelPlan {
    /// Number of levels `L` (level 0 = finest mesh, level `l` = mesh `2^l h`).
    pub levels: usize,
    /// Finest level used (0 for plain MGE; the stage level in Full-Multiscale).
    pub first_level: usize,
    /// Batch size `N_l` per absolute level, length `levels` (entries below `first_level` unused).
    pub batch: Vec<usize>,
    /// How level `l+1` of a sample is built from level `l` (SPEC section 1).
    pub subsampling: Subsampling,
    /// Restriction `R` used by coarsening.
    pub restriction: Restriction,
    /// Denoising only: rebuild the coarse noisy input as `t R^l y + (1-t) g^l R^l z` with `g`
    /// the restriction's noise gain (2 for averaging), keeping per-pixel noise variance (SPEC
    /// section 3). Requires `Subsampling::Coarsen`.
    pub noise_consistent: bool,
}

impl LevelPlan {
    /// MGE over `levels` levels with `N_l = 2^l N_0` (001 Appendix B), coarsening by averaging.
    pub fn multiscale(levels: usize, n0: usize) -> Result<Self> {
        let plan = LevelPlan {
            levels,
            first_level: 0,
            batch: default_batches(levels, n0),
            subsampling: Subsampling::Coarsen,
            restriction: Restriction::Average,
            noise_consistent: false,
        };
        plan.validate()?;
        Ok(plan)
    }

    /// Single-scale SGD: one term on the finest mesh with `batch` samples.
    pub fn single(batch: usize) -> Result<Self> {
        let mut plan = LevelPlan::multiscale(1, batch)?;
        plan.batch = vec![batch];
        plan.validate()?;
        Ok(plan)
    }

    /// The Full-Multiscale stage of this plan whose finest level is `first_level`
    /// (terms `first_level .. L-1`, same `N_l`, hence base batch `2^s N_0`; 001 eqs. 42-45).
    pub fn stage(&self, first_level: usize) -> Result<Self> {
        let plan = LevelPlan {
            first_level,
            ..self.clone()
        };
        plan.validate()?;
        Ok(plan)
    }

    /// Checks the plan; the error names the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidPlan(m));
        if self.levels == 0 {
            return bad("levels must be at least 1".into());
        }
        if self.levels > 12 {
            return bad(format!("levels = {} is more than 12", self.levels));
        }
        if self.batch.len() != self.levels {
            return bad(format!(
                "batch has {} entries but levels = {}",
                self.batch.len(),
                self.levels
            ));
        }
        if self.first_level >= self.levels {
            return bad(format!(
                "first_level = {} must be below levels = {}",
                self.first_level, self.levels
            ));
        }
        if let Some(l) = self.terms().find(|&l| self.batch[l] == 0) {
            return bad(format!(
                "batch[{l}] = 0: every term needs at least one sample"
            ));
        }
        if self.noise_consistent && self.subsampling != Subsampling::Coarsen {
            return bad("noise_consistent requires subsampling = coarsen".into());
        }
        Ok(())
    }

    /// The levels that carry a term, finest first.
    pub fn terms(&self) -> std::ops::Range<usize> {
        self.first_level..self.levels
    }

    /// True when term `l` is a correction `g^(l) - g^(l+1)` (not the coarsest term).
    pub fn is_correction(&self, l: usize) -> bool {
        l + 1 < self.levels
    }

    /// Closed-form #WU of one iteration (001 eq. 39, eqs. 42-45).
    pub fn wu_per_iter(&self) -> Result<Fraction> {
        plan_wu_per_iter(&self.batch, self.first_level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let p = LevelPlan::multiscale(4, 16).unwrap();
        assert_eq!(p.batch, vec![16, 32, 64, 128]);
        assert_eq!(p.wu_per_iter().unwrap().to_string(), "37");
        assert_eq!(p.stage(2).unwrap().terms(), 2..4);
        assert!(p.stage(4).is_err());
        assert!(LevelPlan::multiscale(0, 16).is_err());
        assert!(LevelPlan::single(0).is_err());
        let mut q = p.clone();
        q.batch.pop();
        assert!(matches!(q.validate(), Err(Error::InvalidPlan(m)) if m.contains("batch")));
        let mut q = p.clone();
        q.noise_consistent = true;
        q.subsampling = Subsampling::Crop;
        assert!(
            matches!(q.validate(), Err(Error::InvalidPlan(m)) if m.contains("noise_consistent"))
        );
        let mut q = p.stage(1).unwrap();
        q.batch[0] = 0; // unused level may be 0
        assert!(q.validate().is_ok());
        assert_eq!(
            LevelPlan::single(15)
                .unwrap()
                .wu_per_iter()
                .unwrap()
                .to_string(),
            "15"
        );
    }
}
