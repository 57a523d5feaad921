//! The Multiscale Gradient Estimator (001 eq. 6, Algorithm 1).
//!
//! `g = mean_i g_i^(L-1) [B_{L-1}] + sum_{l<L-1} mean_i (g_i^(l) - g_i^(l+1)) [B_l]`: every term
//! draws its own fresh batch `B_l` of `N_l` finest-mesh samples; inside a correction term the
//! coarse sample is built from the same fine sample (see [`crate::coupling`]).

use crate::coupling::{coupled_pair, CoupledPair, LevelBatch};
use crate::parallel::{self, Parallel};
use crate::sampler::Sampler;
use crate::stats::TermStats;
use crate::{Accountant, Error, Fraction, LevelPlan, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// The model: `f(input, t) -> prediction` (`t`: `[N]` noise level or `None`). Any
/// `models::Model` fits as `&|x, t| model.forward(x, t)`.
pub type ModelFn<'a> = dyn Fn(&Tensor, Option<&Tensor>) -> candle_core::Result<Tensor> + 'a;

/// The loss `loss(pred, target)`: a scalar MEAN over samples, pixels and channels (SPEC
/// section 0), e.g. `(pred - target)^2` averaged. Must be a per-sample mean, so that the loss
/// of a half batch is the mean over that half.
pub type LossFn<'a> = dyn Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor> + 'a;

/// How the gradient is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GradientMode {
    /// One backward pass on the one scalar loss
    /// `loss_{L-1}(B_{L-1}) + sum_l [loss_l(B_l) - loss_{l+1}(R B_l)]` (001 Algorithm 1).
    /// Only per-term losses are reported.
    #[default]
    Total,
    /// Per-term backward passes on two half batches each (four on the finest term, to also
    /// measure the single-scale variance); the gradient store is summed by hand. Adds
    /// [`TermStats::grad_norm`], [`TermStats::variance`] and [`TermStats::fine_variance`].
    /// Same forward work and #WU, 2-4x the backward work.
    PerTerm,
}

/// What one estimator iteration produced.
#[derive(Debug)]
pub struct Step {
    /// Value of the MGE loss (sum of the terms' values).
    pub loss: f64,
    /// The MGE gradient for every tracked variable (`optimizer.step(&step.grads)`).
    pub grads: GradStore,
    /// Per-term statistics, finest term first.
    pub terms: Vec<TermStats>,
    /// #WU this iteration spent (from the accountant).
    pub wu: Fraction,
}

/// The one scalar MGE loss of an iteration with its per-term parts (graph attached).
#[derive(Debug)]
pub struct MgeLoss {
    /// `sum_l (loss_fine_l - loss_coarse_l)` (001 Algorithm 1).
    pub total: Tensor,
    /// The evaluated terms, finest first.
    pub terms: Vec<TermEval>,
}

/// One evaluated term: predictions and losses on its fine and coarse side.
#[derive(Debug)]
pub struct TermEval {
    /// Level of the fine side.
    pub level: usize,
    /// Predictions and targets on the fine side (`[N, ...]`).
    pub fine: (Tensor, Tensor),
    /// Predictions and targets on the coarse side (correction terms only).
    pub coarse: Option<(Tensor, Tensor)>,
    /// `loss_l(B_l)` (scalar, graph attached).
    pub loss_fine: Tensor,
    /// `loss_{l+1}(R B_l)` (correction terms only).
    pub loss_coarse: Option<Tensor>,
    /// #WU of this term's model applications.
    pub wu: Fraction,
}

/// Builds MGE losses and gradients for a [`LevelPlan`].
#[derive(Debug, Clone)]
pub struct Estimator {
    plan: LevelPlan,
    mode: GradientMode,
    seed: u64,
    fused: bool,
    parallel: Option<Parallel>,
}

impl Estimator {
    /// An estimator for `plan`; `seed` drives the subsampling choices (crop windows), mixed
    /// with the iteration number so a resumed run repeats them.
    pub fn new(plan: LevelPlan, mode: GradientMode, seed: u64) -> Result<Self> {
        plan.validate()?;
        Ok(Estimator {
            plan,
            mode,
            seed,
            fused: false,
            parallel: None,
        })
    }

    /// The current plan.
    pub fn plan(&self) -> &LevelPlan {
        &self.plan
    }

    /// Replaces the plan (e.g. the adaptive allocation of the next iteration).
    pub fn set_plan(&mut self, plan: LevelPlan) -> Result<()> {
        plan.validate()?;
        self.plan = plan;
        Ok(())
    }

    /// The gradient mode.
    pub fn mode(&self) -> GradientMode {
        self.mode
    }

    /// Fuses the model applications that share a mesh (the fine side of term `l` and the
    /// coarse side of term `l-1`) into one call on the concatenated batch: `L` calls instead
    /// of `2L-1`, larger batches on the coarse meshes (issue 5, item 2). The same loss,
    /// gradient and #WU as unfused for models that act on each sample separately (group/layer
    /// norm, no batch statistics); models with batch norm (MgNet) must stay unfused.
    pub fn set_fused_levels(&mut self, fused: bool) {
        self.fused = fused;
    }

    /// Whether same-mesh model applications are fused.
    pub fn fused_levels(&self) -> bool {
        self.fused
    }

    /// Splits every [`Estimator::step`] over the ranks of `parallel` (`None`: this process
    /// computes everything). Only [`GradientMode::Total`] is distributed.
    pub fn set_parallel(&mut self, parallel: Option<Parallel>) {
        self.parallel = parallel;
    }

    /// The parallel context, if any.
    pub fn parallel(&self) -> Option<&Parallel> {
        self.parallel.as_ref()
    }

    /// Switches between one backward pass and per-term statistics.
    pub fn set_mode(&mut self, mode: GradientMode) {
        self.mode = mode;
    }

    /// Draws a fresh batch per term and evaluates the model on the fine and coarse side of
    /// each, building the one scalar loss of 001 Algorithm 1; records every model
    /// application in `acct` (per term and side, also when fused, so the #WU are exact).
    pub fn loss(
        &self,
        model: &ModelFn,
        loss: &LossFn,
        sampler: &mut dyn Sampler,
        iteration: u64,
        acct: &mut Accountant,
    ) -> Result<MgeLoss> {
        let part = self.loss_part(model, loss, sampler, iteration, acct, None)?;
        let total = part
            .total
            .ok_or_else(|| Error::InvalidPlan("plan has no terms".into()))?;
        Ok(MgeLoss {
            total,
            terms: part.terms,
        })
    }

    /// [`Estimator::loss`] on the samples `shares[k]` of the `k`-th term only (`None`: all),
    /// each term weighted by `|share| / N_l` so that the parts of disjoint shares sum to the
    /// full loss. Every term's full batch is still drawn and coupled, so the sampler and the
    /// subsampling choices advance as in the full iteration whatever the share.
    fn loss_part(
        &self,
        model: &ModelFn,
        loss: &LossFn,
        sampler: &mut dyn Sampler,
        iteration: u64,
        acct: &mut Accountant,
        shares: Option<&[std::ops::Range<usize>]>,
    ) -> Result<LossPart> {
        let mut rng = StdRng::seed_from_u64(data::mix_seed(self.seed, iteration));
        let mut drawn = Vec::with_capacity(self.plan.terms().len());
        let mut finest = (0, 0);
        for (k, level) in self.plan.terms().enumerate() {
            let n = self.plan.batch[level];
            let d = sampler.draw(n)?;
            if d.input.rank() != 4 || d.input.dim(0)? != n {
                return Err(Error::Sampler(format!(
                    "asked {n} samples as [N,C,H,W], got {:?}",
                    d.input.dims()
                )));
            }
            finest = (d.input.dim(2)?, d.input.dim(3)?);
            let pair = coupled_pair(&d, &self.plan, level, &mut rng)?;
            drawn.push(match shares.map(|s| s[k].clone()) {
                None => Some((pair, 1.0)),
                Some(r) if r.is_empty() => None,
                Some(r) if r.len() == n => Some((pair, 1.0)),
                Some(r) => Some((narrow_pair(&pair, r.clone())?, r.len() as f64 / n as f64)),
            });
        }
        // Model applications, grouped by mesh when fused: the fine side of term `k` and the
        // coarse side of term `k-1` both live on level `first_level + k`.
        let mut sides = Vec::new();
        for (k, d) in drawn.iter().enumerate() {
            if let Some((pair, _)) = d {
                sides.push((k, true));
                if pair.coarse.is_some() {
                    sides.push((k, false));
                }
            }
        }
        let groups: Vec<Vec<(usize, bool)>> = if self.fused {
            (0..=drawn.len())
                .map(|mesh| {
                    let mut g: Vec<(usize, bool)> = sides
                        .iter()
                        .copied()
                        .filter(|&(k, fine)| k + usize::from(!fine) == mesh)
                        .collect();
                    g.sort_by_key(|&(_, fine)| !fine);
                    g
                })
                .filter(|g| !g.is_empty())
                .collect()
        } else {
            sides.iter().map(|&p| vec![p]).collect()
        };
        let mut preds: Vec<(Option<Tensor>, Option<Tensor>)> = vec![(None, None); drawn.len()];
        let mut wus = vec![Fraction::ZERO; drawn.len()];
        let pair_of = |k: usize| {
            drawn[k]
                .as_ref()
                .map(|(p, _)| p)
                .ok_or_else(|| Error::InvalidPlan("a term outside the share was grouped".into()))
        };
        for group in groups {
            let batches: Vec<&LevelBatch> = group
                .iter()
                .map(|&(k, fine)| side(pair_of(k)?, fine))
                .collect::<Result<_>>()?;
            for (&(k, fine), (b, pred)) in group
                .iter()
                .zip(batches.iter().zip(apply(model, &batches)?))
            {
                let hw = (b.input.dim(2)?, b.input.dim(3)?);
                let wu = acct.record(b.input.dim(0)?, hw, finest)?;
                wus[k] = wus[k].checked_add(wu)?;
                if fine {
                    preds[k].0 = Some(pred);
                } else {
                    preds[k].1 = Some(pred);
                }
            }
        }
        let mut total: Option<Tensor> = None;
        let mut terms = Vec::with_capacity(drawn.len());
        for ((d, (fine_pred, coarse_pred)), wu) in drawn.into_iter().zip(preds).zip(wus) {
            let Some((pair, weight)) = d else { continue };
            let missing = || Error::InvalidPlan("a model application was skipped".into());
            let fine = (fine_pred.ok_or_else(missing)?, pair.fine.target);
            let coarse = match pair.coarse {
                Some(c) => Some((coarse_pred.ok_or_else(missing)?, c.target)),
                None => None,
            };
            let loss_fine = mean_loss(loss, &fine.0, &fine.1)?;
            let loss_coarse = coarse
                .as_ref()
                .map(|(p, t)| mean_loss(loss, p, t))
                .transpose()?;
            let mut value = match &loss_coarse {
                Some(c) => (&loss_fine - c)?,
                None => loss_fine.clone(),
            };
            if weight != 1.0 {
                value = (value * weight)?;
            }
            total = Some(match total {
                Some(s) => (s + value)?,
                None => value,
            });
            terms.push(TermEval {
                level: pair.fine.level,
                fine,
                coarse,
                loss_fine,
                loss_coarse,
                wu,
            });
        }
        Ok(LossPart {
            total,
            terms,
            finest,
        })
    }

    /// One MGE iteration: the loss, the gradient for `vars` and the per-term statistics.
    /// With a [`Parallel`] context ([`Estimator::set_parallel`]) every rank must call it with
    /// the same iteration, parameters and `vars` in the same order (e.g. sorted by name; a
    /// `VarMap`'s own order differs between processes, and shapes that differ are an error);
    /// it computes this rank's share and returns the all-reduced (global) loss, gradient,
    /// per-term losses and #WU on every rank.
    pub fn step(
        &self,
        model: &ModelFn,
        loss: &LossFn,
        sampler: &mut dyn Sampler,
        vars: &[Var],
        iteration: u64,
        acct: &mut Accountant,
    ) -> Result<Step> {
        if let Some(p) = &self.parallel {
            return self.step_parallel(p, model, loss, sampler, vars, iteration, acct);
        }
        let wu0 = acct.total();
        let mge = self.loss(model, loss, sampler, iteration, acct)?;
        let mut terms = Vec::with_capacity(mge.terms.len());
        let grads = match self.mode {
            GradientMode::Total => {
                for t in &mge.terms {
                    terms.push(term_values(t)?);
                }
                mge.total.backward()?
            }
            GradientMode::PerTerm => {
                let mut sum: Option<Vec<Tensor>> = None;
                for t in &mge.terms {
                    let (g, stats) = self.term_gradient(loss, t, vars)?;
                    sum = Some(match sum {
                        Some(s) => zip_map(&s, &g, |a, b| a + b)?,
                        None => g,
                    });
                    terms.push(stats);
                }
                let mut store = GradStore::default();
                for (v, g) in vars.iter().zip(sum.unwrap_or_default()) {
                    store.insert(v.as_tensor(), g);
                }
                store
            }
        };
        let loss_value = terms.iter().map(TermStats::value).sum();
        let wu = acct.total().checked_sub(wu0)?;
        Ok(Step {
            loss: loss_value,
            grads,
            terms,
            wu,
        })
    }

    /// [`Estimator::step`] over the ranks of `p`: this rank's share of the loss (see
    /// [`crate::parallel`]), its gradient, then one f32 all-reduce of the flattened gradient
    /// `g = sum_r g_r` and one f64 all-reduce of `(w loss_fine, w loss_coarse, H_0 W_0 WU)`
    /// per term (`w = |share| / N_l`), the number of model applications and a fingerprint of
    /// the variables' shapes. The global #WU is added to `acct` on every rank.
    #[allow(clippy::too_many_arguments)]
    fn step_parallel(
        &self,
        p: &Parallel,
        model: &ModelFn,
        loss: &LossFn,
        sampler: &mut dyn Sampler,
        vars: &[Var],
        iteration: u64,
        acct: &mut Accountant,
    ) -> Result<Step> {
        if self.mode != GradientMode::Total {
            return Err(Error::InvalidPlan(
                "per-term statistics (stats_every > 0, adaptive allocation) are not computed in distributed training".into(),
            ));
        }
        let shares = parallel::shares(&self.plan, p.split, p.comm.rank(), p.comm.size())?;
        let mut local = Accountant::new();
        let part = self.loss_part(model, loss, sampler, iteration, &mut local, Some(&shares))?;
        let store = match &part.total {
            Some(t) => t.backward()?,
            None => GradStore::default(),
        };
        let local_grads = vars
            .iter()
            .map(|v| match store.get(v.as_tensor()) {
                Some(g) => Ok(g.clone()),
                None => v.as_tensor().zeros_like(),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut flat = parallel::flatten(local_grads.into_iter())?;
        p.comm.all_reduce_sum_f32(&mut flat)?;
        let mut grads = GradStore::default();
        for (v, g) in vars.iter().zip(parallel::unflatten(&flat, vars)?) {
            grads.insert(v.as_tensor(), g);
        }
        // Per term: weighted fine and coarse loss, #WU times the finest mesh's pixel count
        // (an integer: every application adds `N H W / (H_0 W_0)`); then the applications.
        let pixels = (part.finest.0 * part.finest.1) as u128;
        let first = self.plan.first_level;
        let nterms = self.plan.terms().len();
        let mut stats = vec![0.0f64; 3 * nterms + 1];
        for t in &part.terms {
            let k = t.level - first;
            let w = shares[k].len() as f64 / self.plan.batch[t.level] as f64;
            stats[3 * k] = w * scalar(&t.loss_fine)?;
            stats[3 * k + 1] = w * t
                .loss_coarse
                .as_ref()
                .map(scalar)
                .transpose()?
                .unwrap_or(0.0);
            if pixels.checked_rem(t.wu.denom()) != Some(0) {
                return Err(Error::Fraction(format!(
                    "#WU {} is not a multiple of 1/{pixels}",
                    t.wu
                )));
            }
            stats[3 * k + 2] = (t.wu.numer() * (pixels / t.wu.denom())) as f64;
        }
        stats[3 * nterms] = local.applications() as f64;
        // A fingerprint `h < 2^26` of the variables' shapes in order, with `h^2`: all ranks
        // agree iff `P sum h^2 = (sum h)^2` (exact in f64).
        let h = shapes_fingerprint(vars) as f64;
        stats.extend([h, h * h]);
        p.comm.all_reduce_sum_f64(&mut stats)?;
        let size = p.comm.size() as f64;
        if size * stats[3 * nterms + 2] != stats[3 * nterms + 1] * stats[3 * nterms + 1] {
            return Err(Error::InvalidPlan(
                "the ranks passed different variables (shapes or order differ): pass the same variables in the same order on every rank, e.g. sorted by name".into(),
            ));
        }
        let mut terms = Vec::with_capacity(nterms);
        let mut wu = Fraction::ZERO;
        for (k, level) in self.plan.terms().enumerate() {
            let term_wu = Fraction::new(stats[3 * k + 2].round() as u128, pixels)?;
            wu = wu.checked_add(term_wu)?;
            terms.push(TermStats {
                level,
                batch: self.plan.batch[level],
                loss_fine: stats[3 * k],
                loss_coarse: self.plan.is_correction(level).then_some(stats[3 * k + 1]),
                grad_norm: None,
                variance: None,
                fine_variance: None,
                wu: term_wu,
            });
        }
        acct.add(wu, stats[3 * nterms].round() as u64)?;
        Ok(Step {
            loss: terms.iter().map(TermStats::value).sum(),
            grads,
            terms,
            wu,
        })
    }

    /// Gradient of one term from two half batches `A = [0, a)`, `B = [a, N)`:
    /// `g = (a d_A + b d_B) / N` with `d = grad(loss_fine - loss_coarse)` on each half, and
    /// `V ~ ||d_A - d_B||^2 / (1/a + 1/b)` (see [`TermStats::variance`]).
    fn term_gradient(
        &self,
        loss: &LossFn,
        t: &TermEval,
        vars: &[Var],
    ) -> Result<(Vec<Tensor>, TermStats)> {
        let mut stats = term_values(t)?;
        let n = stats.batch;
        let half_loss = |side: &(Tensor, Tensor), start: usize, len: usize| -> Result<Tensor> {
            mean_loss(
                loss,
                &side.0.narrow(0, start, len)?,
                &side.1.narrow(0, start, len)?,
            )
        };
        let diff = |start: usize, len: usize| -> Result<(Vec<Tensor>, Option<Vec<Tensor>>)> {
            let fine = half_loss(&t.fine, start, len)?;
            match &t.coarse {
                None => Ok((grads_of(&fine, vars)?, None)),
                Some(c) if t.level == self.plan.first_level => {
                    let gf = grads_of(&fine, vars)?;
                    let gc = grads_of(&half_loss(c, start, len)?, vars)?;
                    Ok((zip_map(&gf, &gc, |a, b| a - b)?, Some(gf)))
                }
                Some(c) => Ok((grads_of(&(fine - half_loss(c, start, len)?)?, vars)?, None)),
            }
        };
        if n < 2 {
            let (g, _) = diff(0, n)?;
            stats.grad_norm = Some(sq_norm(&g)?.sqrt());
            return Ok((g, stats));
        }
        let (a, b) = (n / 2, n - n / 2);
        let (da, fa) = diff(0, a)?;
        let (db, fb) = diff(a, b)?;
        let (wa, wb) = (a as f64 / n as f64, b as f64 / n as f64);
        let g = zip_map(&da, &db, |x, y| (x * wa)? + (y * wb)?)?;
        let inv = 1.0 / a as f64 + 1.0 / b as f64;
        stats.grad_norm = Some(sq_norm(&g)?.sqrt());
        stats.variance = Some(sq_norm(&zip_map(&da, &db, |x, y| x - y)?)? / inv);
        // The coarsest term alone is a plain gradient: its variance is the fine variance
        // when it is also the finest term (single-scale).
        let fine_pair = match (fa, fb) {
            (Some(fa), Some(fb)) => Some((fa, fb)),
            _ if t.coarse.is_none() && t.level == self.plan.first_level => {
                Some((da.clone(), db.clone()))
            }
            _ => None,
        };
        if let Some((fa, fb)) = fine_pair {
            stats.fine_variance = Some(sq_norm(&zip_map(&fa, &fb, |x, y| x - y)?)? / inv);
        }
        Ok((g, stats))
    }
}

/// What [`Estimator::loss_part`] built: the weighted loss of the computed terms (`None` when
/// this rank computes none), their evaluations and the finest mesh `(H_0, W_0)`.
struct LossPart {
    total: Option<Tensor>,
    terms: Vec<TermEval>,
    finest: (usize, usize),
}

/// FNV-1a over the variables' dimensions in order, folded to 26 bits.
fn shapes_fingerprint(vars: &[Var]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in vars {
        for &d in v.dims().iter().chain([&usize::MAX]) {
            h = (h ^ d as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    (h ^ (h >> 26) ^ (h >> 52)) & ((1 << 26) - 1)
}

/// Samples `range` of a coupled pair (fine and coarse side alike).
fn narrow_pair(pair: &CoupledPair, range: std::ops::Range<usize>) -> Result<CoupledPair> {
    let cut = |b: &LevelBatch| -> Result<LevelBatch> {
        let (s, n) = (range.start, range.len());
        Ok(LevelBatch {
            level: b.level,
            input: b.input.narrow(0, s, n)?,
            target: b.target.narrow(0, s, n)?,
            t: b.t.as_ref().map(|t| t.narrow(0, s, n)).transpose()?,
        })
    };
    Ok(CoupledPair {
        fine: cut(&pair.fine)?,
        coarse: pair.coarse.as_ref().map(cut).transpose()?,
    })
}

/// The fine or coarse side of a coupled pair.
fn side(pair: &CoupledPair, fine: bool) -> Result<&LevelBatch> {
    if fine {
        Ok(&pair.fine)
    } else {
        pair.coarse
            .as_ref()
            .ok_or_else(|| Error::InvalidPlan("coarsest term has no coarse side".into()))
    }
}

/// `model` on every batch of `sides`: one call on their concatenation (split back along the
/// batch) when they share the sample shape and all or none carry `t`, else one call each.
fn apply(model: &ModelFn, sides: &[&LevelBatch]) -> Result<Vec<Tensor>> {
    let first = sides[0];
    let same = sides.iter().all(|b| {
        b.input.dims().get(1..) == first.input.dims().get(1..) && b.t.is_some() == first.t.is_some()
    });
    if sides.len() == 1 || !same {
        return sides
            .iter()
            .map(|b| Ok(model(&b.input, b.t.as_ref())?))
            .collect();
    }
    let input = Tensor::cat(&sides.iter().map(|b| &b.input).collect::<Vec<_>>(), 0)?;
    let t = match first.t {
        Some(_) => Some(Tensor::cat(
            &sides
                .iter()
                .filter_map(|b| b.t.as_ref())
                .collect::<Vec<_>>(),
            0,
        )?),
        None => None,
    };
    let pred = model(&input, t.as_ref())?;
    let mut start = 0;
    let mut out = Vec::with_capacity(sides.len());
    for b in sides {
        let n = b.input.dim(0)?;
        out.push(pred.narrow(0, start, n)?);
        start += n;
    }
    Ok(out)
}

/// The loss values of a term, without gradient statistics.
fn term_values(t: &TermEval) -> Result<TermStats> {
    Ok(TermStats {
        level: t.level,
        batch: t.fine.0.dim(0)?,
        loss_fine: scalar(&t.loss_fine)?,
        loss_coarse: t.loss_coarse.as_ref().map(scalar).transpose()?,
        grad_norm: None,
        variance: None,
        fine_variance: None,
        wu: t.wu,
    })
}

/// `loss(pred, target)` reduced to a scalar (rank 0) by a mean.
fn mean_loss(loss: &LossFn, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok(loss(pred, target)?.mean_all()?)
}

fn scalar(x: &Tensor) -> Result<f64> {
    Ok(x.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

/// Gradient of `loss` for every variable (zeros where it does not depend on it).
fn grads_of(loss: &Tensor, vars: &[Var]) -> Result<Vec<Tensor>> {
    let store = loss.backward()?;
    vars.iter()
        .map(|v| match store.get(v.as_tensor()) {
            Some(g) => Ok(g.clone()),
            None => Ok(v.as_tensor().zeros_like()?),
        })
        .collect()
}

fn zip_map(
    a: &[Tensor],
    b: &[Tensor],
    f: impl Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
) -> Result<Vec<Tensor>> {
    a.iter().zip(b).map(|(x, y)| Ok(f(x, y)?)).collect()
}

/// `sum_k ||x_k||^2` over a gradient given per variable.
fn sq_norm(g: &[Tensor]) -> Result<f64> {
    let mut s = 0.0;
    for x in g {
        s += scalar(&x.sqr()?.sum_all()?)?;
    }
    Ok(s)
}
