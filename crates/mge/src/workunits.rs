//! Work units (001 Definition 1, Appendix B): one model application to one image on the finest
//! mesh is 1 WU; on level `l` (mesh `2^l h`) it costs `c_l = 4^-l`.
//!
//! Closed forms (eqs. 39-48) and an [`Accountant`] that counts what actually ran.

use crate::{Error, Fraction, Result};
use std::str::FromStr;

/// Cost factor of level `l` in 2-D: `c_l = 4^-l` (001 Appendix B, Remark 1).
pub fn level_cost(level: usize) -> Result<Fraction> {
    let den = 4u128
        .checked_pow(level as u32)
        .ok_or_else(|| Error::Fraction(format!("level {level} too deep")))?;
    Fraction::new(1, den)
}

/// Default batch sizes `N_l = 2^l N_0`, `l = 0 .. levels-1` (001 Appendix B, below eq. 39).
pub fn default_batches(levels: usize, n0: usize) -> Vec<usize> {
    (0..levels).map(|l| n0 << l).collect()
}

/// #WU of one MGE iteration over the terms `first .. L-1` of a plan with per-level batches
/// `batch[l]` (eq. 39, eqs. 42-45 for `first > 0`):
/// `N_{L-1} c_{L-1} + sum_{l=first}^{L-2} N_l (c_l + c_{l+1})`.
pub fn plan_wu_per_iter(batch: &[usize], first: usize) -> Result<Fraction> {
    let levels = batch.len();
    if first >= levels {
        return Err(Error::InvalidPlan(format!(
            "first level {first} outside 0..{levels}"
        )));
    }
    let mut wu = Fraction::ZERO;
    for (l, &n) in batch.iter().enumerate().skip(first) {
        let mut c = level_cost(l)?;
        if l + 1 < levels {
            c = c.checked_add(level_cost(l + 1)?)?;
        }
        wu = wu.checked_add(c.checked_mul(Fraction::from_int(n as u128))?)?;
    }
    Ok(wu)
}

/// #WU of one MGE iteration with `N_l = 2^l N_0` on `levels` levels (eq. 39; `37/16 N_0` at
/// `L = 4`, eq. 40).
pub fn mge_wu_per_iter(levels: usize, n0: usize) -> Result<Fraction> {
    plan_wu_per_iter(&default_batches(levels, n0), 0)
}

/// #WU of one single-scale iteration seeing the same data as MGE, everything on the finest mesh:
/// `sum_l N_l = (2^L - 1) N_0` (eq. 41; `15 N_0` at `L = 4`).
pub fn single_wu_per_iter(levels: usize, n0: usize) -> Result<Fraction> {
    let n: usize = default_batches(levels, n0).iter().sum();
    Ok(Fraction::from_int(n as u128))
}

/// Iterations per Full-Multiscale stage (001 Appendix B, below eq. 46). Spelled `halving`,
/// `equal` in configuration files and on command lines; [`FromStr`] and serde accept the same
/// names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum StageSchedule {
    /// `I_s = I / 2^(L-1-s)`: the coarsest stage runs `I`, each finer one half as many
    /// (denoising, deblurring: `[2000, 1000, 500, 250]`), at least 1.
    #[default]
    Halving,
    /// `I_s = I` on every stage (inpainting, super-resolution).
    Equal,
}

impl FromStr for StageSchedule {
    type Err = Error;
    /// Parses the names of [`StageSchedule::name`]; an unknown name is an error listing them.
    fn from_str(s: &str) -> Result<Self> {
        StageSchedule::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                Error::InvalidPlan(format!(
                    "unknown stage schedule {s:?}: expected one of {}",
                    StageSchedule::ALL.map(StageSchedule::name).join(", ")
                ))
            })
    }
}

impl std::fmt::Display for StageSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl StageSchedule {
    /// Both schedules.
    pub const ALL: [StageSchedule; 2] = [StageSchedule::Halving, StageSchedule::Equal];

    /// The name accepted by [`FromStr`] and serde.
    pub fn name(self) -> &'static str {
        match self {
            StageSchedule::Halving => "halving",
            StageSchedule::Equal => "equal",
        }
    }

    /// Iterations of stage `s` (its finest level), for `levels` stages whose coarsest runs
    /// `iters`: `I_s = max(1, I >> (L-1-s))` for halving, `I` for equal.
    pub fn stage_iters(&self, levels: usize, iters: usize, stage: usize) -> usize {
        match self {
            StageSchedule::Halving => (iters >> (levels - 1 - stage).min(63)).max(1),
            StageSchedule::Equal => iters,
        }
    }
}

/// #WU of Full-Multiscale (eqs. 42-48): `sum_s I_s * WU_s`, where stage `s` is an MGE over
/// levels `s .. L-1` with `N_l = 2^l N_0` (so base batch `2^s N_0`). With `I` divisible by
/// `2^(L-1)` this is `115/128 N_0 I` (halving, eq. 47) or `63/16 N_0 I` (equal, eq. 48) at L = 4.
pub fn fmg_wu(levels: usize, n0: usize, iters: usize, schedule: StageSchedule) -> Result<Fraction> {
    if levels == 0 {
        return Err(Error::InvalidPlan("levels must be at least 1".into()));
    }
    let batch = default_batches(levels, n0);
    let mut wu = Fraction::ZERO;
    for s in 0..levels {
        let i_s = schedule.stage_iters(levels, iters, s) as u128;
        wu = wu.checked_add(plan_wu_per_iter(&batch, s)?.checked_mul(Fraction::from_int(i_s))?)?;
    }
    Ok(wu)
}

/// Counts #WU from the model applications that actually ran (001 Definition 1):
/// an application to `N` images of `H x W` pixels whose finest-mesh size is `H_0 x W_0` adds
/// `N H W / (H_0 W_0)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accountant {
    total: Fraction,
    applications: u64,
}

impl Accountant {
    /// A fresh accountant at 0 WU.
    pub fn new() -> Self {
        Self::default()
    }

    /// An accountant resuming from `total` (e.g. read back from a checkpoint).
    pub fn with_total(total: Fraction) -> Self {
        Accountant {
            total,
            applications: 0,
        }
    }

    /// Record one model application to `n` images of `hw` pixels whose finest-mesh version
    /// has `finest_hw` pixels; returns the WU it added.
    pub fn record(
        &mut self,
        n: usize,
        hw: (usize, usize),
        finest_hw: (usize, usize),
    ) -> Result<Fraction> {
        let den = (finest_hw.0 * finest_hw.1) as u128;
        let wu = Fraction::new((n * hw.0 * hw.1) as u128, den)?;
        self.total = self.total.checked_add(wu)?;
        self.applications += 1;
        Ok(wu)
    }

    /// Adds `wu` spent in `applications` model applications elsewhere (the other ranks of a
    /// distributed iteration, summed by an all-reduce).
    pub fn add(&mut self, wu: Fraction, applications: u64) -> Result<()> {
        self.total = self.total.checked_add(wu)?;
        self.applications += applications;
        Ok(())
    }

    /// Total #WU so far.
    pub fn total(&self) -> Fraction {
        self.total
    }

    /// Number of model applications recorded (since creation, not counting a resumed total).
    pub fn applications(&self) -> u64 {
        self.applications
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frac(n: u128, d: u128) -> Fraction {
        Fraction::new(n, d).unwrap()
    }

    #[test]
    fn schedule_names_agree_with_serde() {
        for v in StageSchedule::ALL {
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.name()));
            assert_eq!(serde_json::from_str::<StageSchedule>(&json).unwrap(), v);
            assert_eq!(v.name().parse::<StageSchedule>().unwrap(), v);
            assert_eq!(v.to_string(), v.name());
        }
        let e = "halve".parse::<StageSchedule>().unwrap_err().to_string();
        assert!(
            e.contains("\"halve\"") && e.contains("halving, equal"),
            "{e}"
        );
        assert!(serde_json::from_str::<StageSchedule>("\"halve\"").is_err());
    }

    #[test]
    fn closed_forms_per_iteration() {
        // eq. 40, eq. 41, the 2-level example of section 2.1 (9N/16 with N = N_1 = 4 N_0... per N_0: 7/4).
        assert_eq!(mge_wu_per_iter(4, 1).unwrap(), frac(37, 16));
        assert_eq!(single_wu_per_iter(4, 1).unwrap(), frac(15, 1));
        assert_eq!(mge_wu_per_iter(2, 4).unwrap(), frac(7, 1));
        assert_eq!(plan_wu_per_iter(&[1, 4], 0).unwrap(), frac(9, 4)); // N_1 = N/4, N_2 = N: 9N/16
        assert_eq!(mge_wu_per_iter(1, 5).unwrap(), frac(5, 1));
    }

    #[test]
    fn fmg_matches_eqs_47_48_and_stage_terms() {
        assert_eq!(
            fmg_wu(4, 16, 2000, StageSchedule::Halving).unwrap(),
            frac(115 * 16 * 2000, 128)
        );
        assert_eq!(
            fmg_wu(4, 1, 8, StageSchedule::Halving).unwrap(),
            frac(115 * 8, 128)
        );
        assert_eq!(fmg_wu(4, 1, 1, StageSchedule::Equal).unwrap(), frac(63, 16));
        // eq. 43: stage 2h = 1/4 [2N0 (1 + 1/4) + 4N0 (1/4 + 1/16) + 8N0/16] = 17/16 N0
        assert_eq!(
            plan_wu_per_iter(&default_batches(4, 1), 1).unwrap(),
            frac(17, 16)
        );
        assert_eq!(
            plan_wu_per_iter(&default_batches(4, 1), 3).unwrap(),
            frac(1, 8)
        );
    }

    #[test]
    fn table2_and_table6_figures() {
        let n = |f: Fraction| f.to_string();
        let it = |f: Fraction, i: u128| f.checked_mul(Fraction::from_int(i)).unwrap();
        assert_eq!(n(it(single_wu_per_iter(4, 16).unwrap(), 2000)), "480000");
        assert_eq!(n(it(mge_wu_per_iter(4, 16).unwrap(), 2000)), "74000");
        assert_eq!(
            n(fmg_wu(4, 16, 2000, StageSchedule::Halving).unwrap()),
            "28750"
        );
        assert_eq!(
            n(fmg_wu(4, 16, 2000, StageSchedule::Equal).unwrap()),
            "126000"
        );
        assert_eq!(n(it(single_wu_per_iter(4, 8).unwrap(), 250)), "30000");
        assert_eq!(n(it(mge_wu_per_iter(4, 8).unwrap(), 250)), "4625");
        assert_eq!(n(fmg_wu(4, 8, 250, StageSchedule::Equal).unwrap()), "7875");
        // Table 6: L = 3 and 2 (finest stage always 250 iterations).
        assert_eq!(n(it(mge_wu_per_iter(3, 16).unwrap(), 2000)), "68000");
        assert_eq!(n(it(mge_wu_per_iter(2, 16).unwrap(), 2000)), "56000");
        assert_eq!(
            n(fmg_wu(3, 16, 1000, StageSchedule::Halving).unwrap()),
            "19500"
        );
        assert_eq!(
            n(fmg_wu(2, 16, 500, StageSchedule::Halving).unwrap()),
            "11000"
        );
    }

    #[test]
    fn accountant_adds_scaled_shapes() {
        let mut a = Accountant::new();
        a.record(16, (64, 64), (64, 64)).unwrap();
        a.record(32, (32, 32), (64, 64)).unwrap();
        a.record(3, (8, 8), (64, 64)).unwrap();
        assert_eq!(a.total(), frac(16 * 64 + 32 * 16 + 3, 64));
        assert_eq!(a.applications(), 3);
        assert!(a.record(1, (8, 8), (0, 64)).is_err());
    }

    #[test]
    fn schedules() {
        let s: Vec<_> = (0..4)
            .map(|s| StageSchedule::Halving.stage_iters(4, 2000, s))
            .collect();
        assert_eq!(s, vec![250, 500, 1000, 2000]);
        assert_eq!(StageSchedule::Equal.stage_iters(4, 7, 0), 7);
        assert_eq!(StageSchedule::Halving.stage_iters(4, 3, 0), 1);
        assert!("both".parse::<StageSchedule>().is_err());
    }
}
