//! How an MGE iteration is split over ranks (issue 18): which samples and terms a rank
//! computes, and the context that makes [`crate::Estimator::step`] all-reduce the result.
//!
//! The estimate `g = sum_l mean_{i in B_l} d_i^(l)` (001 eq. 6) is a sum of independent terms,
//! each a mean over its own batch, so it splits two ways:
//!
//! - [`Split::Data`]: rank `r` of `P` takes the samples `[floor(N_l r / P), floor(N_l (r+1) / P))`
//!   of every term and contributes `(n_r / N_l) mean_{i in share} d_i^(l)`; the sum over ranks
//!   is the full mean exactly (up to float rounding).
//! - [`Split::Level`]: whole terms go to ranks, balanced by their #WU
//!   `C_l = N_l (c_l + c_{l+1})` (`c_l = 4^-l`, 001 eq. 39) with the longest-processing-time
//!   rule; a rank contributes its terms' full means. At L = 4, N_l = 2^l N_0 the fine term
//!   costs `20/16 N_0` WU against `17/16 N_0` for the three coarser ones together, so two
//!   ranks are balanced to 54% / 46%; ranks beyond the number of terms idle.
//!
//! Every rank draws every term's full batch from the same seeded stream and keeps its part,
//! so a seed gives the same samples whatever `P` (the drawing is repeated on every rank; it is
//! cheap next to the model applications).

use crate::workunits::level_cost;
use crate::{Error, Fraction, LevelPlan, Result};
use candle_core::{DType, Tensor, Var};
use comm::Communicator;
use std::ops::Range;
use std::rc::Rc;

/// How an MGE iteration is divided over ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Every rank takes a contiguous, disjoint share of every term's batch.
    #[default]
    Data,
    /// Whole terms are assigned to ranks, balanced by #WU (longest processing time first).
    Level,
}

impl std::str::FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "data" => Ok(Split::Data),
            "level" => Ok(Split::Level),
            _ => Err(Error::InvalidPlan(format!(
                "split {s:?}: expected \"data\" or \"level\""
            ))),
        }
    }
}

/// Rank `rank`'s share of `n` samples under [`Split::Data`]:
/// `[floor(n r / P), floor(n (r+1) / P))`; the shares of `r = 0..P` partition `0..n`.
pub fn data_share(n: usize, rank: usize, size: usize) -> Range<usize> {
    let at = |r: usize| (n as u128 * r as u128 / size.max(1) as u128) as usize;
    at(rank)..at(rank + 1)
}

/// #WU of term `level` of `plan`: `C_l = N_l (c_l + c_{l+1})` for a correction,
/// `N_{L-1} c_{L-1}` for the coarsest term (001 eq. 39, one summand).
pub fn term_cost(plan: &LevelPlan, level: usize) -> Result<Fraction> {
    let mut c = level_cost(level)?;
    if plan.is_correction(level) {
        c = c.checked_add(level_cost(level + 1)?)?;
    }
    c.checked_mul(Fraction::from_int(plan.batch[level] as u128))
}

/// The rank that computes each term under [`Split::Level`] (`costs[k]` is the #WU of the
/// `k`-th term): longest processing time first, i.e. terms by decreasing cost (ties: finer
/// first) each to the least loaded rank (ties: lowest rank). Deterministic, so every rank
/// computes the same assignment; its makespan is at most `4/3` of the optimum (Graham 1969).
pub fn level_owners(costs: &[Fraction], size: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    // Costs are dyadic rationals (`N_l 4^-l`), exact in f64.
    order.sort_by(|&a, &b| {
        costs[b]
            .to_f64()
            .total_cmp(&costs[a].to_f64())
            .then(a.cmp(&b))
    });
    let mut load = vec![0.0f64; size.max(1)];
    let mut owner = vec![0; costs.len()];
    for k in order {
        let r = (0..load.len())
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .unwrap_or(0);
        load[r] += costs[k].to_f64();
        owner[k] = r;
    }
    owner
}

/// The samples of each term of `plan` (finest first) that rank `rank` of `size` computes;
/// an empty range where it computes none of them.
pub fn shares(
    plan: &LevelPlan,
    split: Split,
    rank: usize,
    size: usize,
) -> Result<Vec<Range<usize>>> {
    if size == 0 || rank >= size {
        return Err(Error::InvalidPlan(format!("rank {rank} of {size} ranks")));
    }
    match split {
        Split::Data => Ok(plan
            .terms()
            .map(|l| data_share(plan.batch[l], rank, size))
            .collect()),
        Split::Level => {
            let costs = plan
                .terms()
                .map(|l| term_cost(plan, l))
                .collect::<Result<Vec<_>>>()?;
            let owners = level_owners(&costs, size);
            Ok(plan
                .terms()
                .zip(owners)
                .map(|(l, o)| if o == rank { 0..plan.batch[l] } else { 0..0 })
                .collect())
        }
    }
}

/// A communicator and a split: set on an [`crate::Estimator`] with
/// [`crate::Estimator::set_parallel`], its [`crate::Estimator::step`] computes this rank's
/// share and all-reduces the gradient (one f32 all-reduce of all parameters) and the
/// per-term losses, #WU and a check that all ranks pass the same variables (one f64
/// all-reduce of `3 T + 3` numbers).
#[derive(Clone)]
pub struct Parallel {
    /// The ranks.
    pub comm: Rc<dyn Communicator>,
    /// How the iteration is divided.
    pub split: Split,
}

impl std::fmt::Debug for Parallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Parallel({:?}, rank {} of {})",
            self.split,
            self.comm.rank(),
            self.comm.size()
        )
    }
}

/// Copies rank `root`'s values of `vars` to every rank (one f32 broadcast of all of them),
/// so all ranks start from the same parameters.
pub fn broadcast_vars(comm: &dyn Communicator, vars: &[Var], root: usize) -> Result<()> {
    let mut flat = flatten(vars.iter().map(|v| v.as_tensor().clone()))?;
    comm.broadcast_f32(&mut flat, root)?;
    for (v, t) in vars.iter().zip(unflatten(&flat, vars)?) {
        v.set(&t)?;
    }
    Ok(())
}

/// The tensors' values, converted to f32, one after the other.
pub(crate) fn flatten(ts: impl Iterator<Item = Tensor>) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for t in ts {
        out.extend(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// `flat` cut into tensors shaped, typed and placed like `vars` (the inverse of [`flatten`]).
pub(crate) fn unflatten(flat: &[f32], vars: &[Var]) -> Result<Vec<Tensor>> {
    let mut at = 0;
    let mut out = Vec::with_capacity(vars.len());
    for v in vars {
        let n = v.elem_count();
        let part = flat.get(at..at + n).ok_or_else(|| {
            Error::InvalidPlan(format!("flat buffer of {} values is too short", flat.len()))
        })?;
        out.push(Tensor::from_slice(part, v.shape(), v.device())?.to_dtype(v.dtype())?);
        at += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn level_split_of_four_levels_balances_the_fine_term_against_the_rest() {
        let plan = LevelPlan::multiscale(4, 16).unwrap();
        let costs: Vec<String> = plan
            .terms()
            .map(|l| term_cost(&plan, l).unwrap().to_string())
            .collect();
        assert_eq!(costs, ["20", "10", "5", "2"]);
        let c: Vec<Fraction> = plan.terms().map(|l| term_cost(&plan, l).unwrap()).collect();
        assert_eq!(level_owners(&c, 2), [0, 1, 1, 1]);
        assert_eq!(level_owners(&c, 3), [0, 1, 2, 2]);
        assert_eq!(level_owners(&c, 5), [0, 1, 2, 3]);
        assert_eq!(
            shares(&plan, Split::Level, 1, 2).unwrap(),
            [0..0, 0..32, 0..64, 0..128]
        );
        assert_eq!(
            shares(&plan, Split::Data, 2, 3).unwrap(),
            [10..16, 21..32, 42..64, 85..128]
        );
        assert!(shares(&plan, Split::Data, 2, 2).is_err());
        assert_eq!("level".parse::<Split>().unwrap(), Split::Level);
        assert!("levels".parse::<Split>().is_err());
    }

    proptest! {
        #[test]
        fn shares_partition_every_term(
            levels in 1usize..6,
            first in 0usize..6,
            batch in proptest::collection::vec(1usize..40, 6),
            size in 1usize..9,
            level_split in any::<bool>(),
        ) {
            let mut plan = LevelPlan::multiscale(levels, 1).unwrap();
            plan.batch = batch[..levels].to_vec();
            let plan = plan.stage(first.min(levels - 1)).unwrap();
            let split = if level_split { Split::Level } else { Split::Data };
            let all: Vec<Vec<Range<usize>>> =
                (0..size).map(|r| shares(&plan, split, r, size).unwrap()).collect();
            for (k, l) in plan.terms().enumerate() {
                // Every sample of every term is computed by exactly one rank.
                let mut hits = vec![0; plan.batch[l]];
                for s in &all {
                    for i in s[k].clone() {
                        hits[i] += 1;
                    }
                }
                prop_assert!(hits.iter().all(|&h| h == 1), "term {l}: {hits:?}");
            }
            if split == Split::Level {
                // LPT: no rank's load exceeds the mean load plus the largest term.
                let costs: Vec<f64> =
                    plan.terms().map(|l| term_cost(&plan, l).unwrap().to_f64()).collect();
                let total: f64 = costs.iter().sum();
                let max = costs.iter().cloned().fold(0.0, f64::max);
                for s in &all {
                    let load: f64 = s.iter().zip(&costs).filter(|(r, _)| !r.is_empty()).map(|(_, c)| c).sum();
                    prop_assert!(load <= total / size as f64 + max + 1e-12);
                }
            }
        }
    }
}
