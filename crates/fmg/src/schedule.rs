//! Stages of a training strategy (001 Algorithm 2, Appendix B eqs. 42-48).

use crate::{Error, Result};
use mge::{LevelPlan, StageSchedule};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// One stage: `iters` MGE iterations with `plan` (its finest level is `plan.first_level`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The stage's plan.
    pub plan: LevelPlan,
    /// Iterations of the stage.
    pub iters: usize,
}

impl Stage {
    /// Level of the stage's finest mesh (`2^level h`).
    pub fn level(&self) -> usize {
        self.plan.first_level
    }
}

/// A training strategy (001 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Single-scale SGD on the finest mesh with this batch (the paper's baseline uses
    /// `sum_l N_l = 15 N_0`, the practical one `N_0`).
    Single { batch: usize },
    /// MGE (001 Algorithm 1) with the base plan, `I` iterations.
    Multiscale,
    /// Full-Multiscale (001 Algorithm 2): stages `L-1 .. 0`, stage `s` an MGE over levels
    /// `s .. L-1` with `N_l = 2^l N_0` (base batch `2^s N_0`), `I_s` from the schedule.
    FullMultiscale { schedule: StageSchedule },
}

impl Strategy {
    /// The kind of this strategy, without its data.
    pub fn kind(&self) -> StrategyKind {
        match self {
            Strategy::Single { .. } => StrategyKind::Single,
            Strategy::Multiscale => StrategyKind::Multiscale,
            Strategy::FullMultiscale { .. } => StrategyKind::FullMultiscale,
        }
    }
}

/// The kind of a training strategy (001 sections 2-3) as configuration files and command lines
/// name it (`single`, `multiscale`, `full-multiscale`); [`FromStr`] and serde accept the same
/// names. [`StrategyKind::with`] adds the data of a [`Strategy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// Plain SGD on the finest mesh ([`Strategy::Single`]).
    Single,
    /// The multiscale gradient estimator on every iteration (001 Algorithm 1,
    /// [`Strategy::Multiscale`]).
    Multiscale,
    /// Stages coarse to fine, each an MGE over the levels at or below it (001 Algorithm 2,
    /// [`Strategy::FullMultiscale`]).
    FullMultiscale,
}

impl StrategyKind {
    /// Every kind.
    pub const ALL: [StrategyKind; 3] = [
        StrategyKind::Single,
        StrategyKind::Multiscale,
        StrategyKind::FullMultiscale,
    ];

    /// The name accepted by [`FromStr`] and serde.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Single => "single",
            StrategyKind::Multiscale => "multiscale",
            StrategyKind::FullMultiscale => "full-multiscale",
        }
    }

    /// The strategy of this kind: single-scale with batch `single_batch`, Full-Multiscale with
    /// stage `schedule` (each unused by the other kinds).
    pub fn with(self, single_batch: usize, schedule: StageSchedule) -> Strategy {
        match self {
            StrategyKind::Single => Strategy::Single {
                batch: single_batch,
            },
            StrategyKind::Multiscale => Strategy::Multiscale,
            StrategyKind::FullMultiscale => Strategy::FullMultiscale { schedule },
        }
    }
}

impl FromStr for StrategyKind {
    type Err = Error;
    /// Parses the names of [`StrategyKind::name`]; an unknown name is an error listing them.
    fn from_str(s: &str) -> Result<Self> {
        StrategyKind::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown strategy {s:?}: expected one of {}",
                    StrategyKind::ALL.map(StrategyKind::name).join(", ")
                ))
            })
    }
}

impl std::fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The stages of `strategy` over the levels and batches of `base` (a plan with
/// `first_level = 0`), `iters` iterations (the coarsest stage's count for Full-Multiscale),
/// coarsest first.
pub fn stages(strategy: Strategy, base: &LevelPlan, iters: usize) -> Result<Vec<Stage>> {
    base.validate()?;
    if base.first_level != 0 {
        return Err(Error::Invalid("the base plan must start at level 0".into()));
    }
    if iters == 0 {
        return Err(Error::Invalid("iters must be at least 1".into()));
    }
    Ok(match strategy {
        Strategy::Single { batch } => {
            let plan = LevelPlan {
                levels: 1,
                batch: vec![batch],
                ..base.clone()
            };
            plan.validate()?;
            vec![Stage { plan, iters }]
        }
        Strategy::Multiscale => vec![Stage {
            plan: base.clone(),
            iters,
        }],
        Strategy::FullMultiscale { schedule } => (0..base.levels)
            .rev()
            .map(|s| {
                Ok(Stage {
                    plan: base.stage(s)?,
                    iters: schedule.stage_iters(base.levels, iters, s),
                })
            })
            .collect::<Result<Vec<_>>>()?,
    })
}

/// Closed-form #WU of a list of stages: `sum_stages I_s * WU_s` (001 eqs. 39-48).
pub fn stages_wu(stages: &[Stage]) -> Result<mge::Fraction> {
    let mut wu = mge::Fraction::ZERO;
    for s in stages {
        let it = mge::Fraction::from_int(s.iters as u128);
        wu = wu.checked_add(s.plan.wu_per_iter()?.checked_mul(it)?)?;
    }
    Ok(wu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_agree_with_serde() {
        for k in StrategyKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<StrategyKind>(&json).unwrap(), k);
            assert_eq!(k.name().parse::<StrategyKind>().unwrap(), k);
            assert_eq!(k.to_string(), k.name());
            assert_eq!(k.with(4, StageSchedule::Equal).kind(), k);
        }
        let e = "multi-scale"
            .parse::<StrategyKind>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"multi-scale\"") && e.contains("single, multiscale, full-multiscale"),
            "{e}"
        );
        assert!(serde_json::from_str::<StrategyKind>("\"multi-scale\"").is_err());
        assert_eq!(
            StrategyKind::Single.with(4, StageSchedule::Equal),
            Strategy::Single { batch: 4 }
        );
        assert_eq!(
            StrategyKind::FullMultiscale.with(4, StageSchedule::Equal),
            Strategy::FullMultiscale {
                schedule: StageSchedule::Equal
            }
        );
    }

    #[test]
    fn fmg_stages_match_appendix_b() {
        let base = LevelPlan::multiscale(4, 16).unwrap();
        let st = stages(
            Strategy::FullMultiscale {
                schedule: StageSchedule::Halving,
            },
            &base,
            2000,
        )
        .unwrap();
        let shape: Vec<_> = st
            .iter()
            .map(|s| (s.level(), s.iters, s.plan.batch[s.level()]))
            .collect();
        assert_eq!(
            shape,
            vec![(3, 2000, 128), (2, 1000, 64), (1, 500, 32), (0, 250, 16)]
        );
        assert_eq!(stages_wu(&st).unwrap().to_string(), "28750");
        let eq = stages(
            Strategy::FullMultiscale {
                schedule: StageSchedule::Equal,
            },
            &base,
            2000,
        )
        .unwrap();
        assert_eq!(stages_wu(&eq).unwrap().to_string(), "126000");
        let single = stages(Strategy::Single { batch: 240 }, &base, 2000).unwrap();
        assert_eq!(stages_wu(&single).unwrap().to_string(), "480000");
        assert_eq!(
            stages_wu(&stages(Strategy::Multiscale, &base, 2000).unwrap())
                .unwrap()
                .to_string(),
            "74000"
        );
        assert!(stages(Strategy::Single { batch: 0 }, &base, 10).is_err());
        assert!(stages(Strategy::Multiscale, &base, 0).is_err());
    }
}
