//! Coupled fine/coarse versions of one batch (001 Algorithm 1; SPEC section 3, "Coupling").
//!
//! A finest-mesh batch is brought to level `l` by applying [`grids::subsample::next_level`]
//! `l` times to all its tensors at once (input, target and, for noise-consistent denoising,
//! clean input and noise), so every tensor sees the same random choices (crop windows); the
//! coarse version is one more step from the fine one. `t` is shared, never redrawn.

use crate::{Error, LevelPlan, Result};
use candle_core::Tensor;
use data::Degraded;

/// One level's model input and target, plus the noise level `t` (`[N]`) if any.
#[derive(Debug, Clone)]
pub struct LevelBatch {
    /// Level index (`0` = finest).
    pub level: usize,
    /// Model input `[N, C, H, W]`.
    pub input: Tensor,
    /// Target `[N, C, H', W']`.
    pub target: Tensor,
    /// Noise level `[N]` shared by every level of the sample.
    pub t: Option<Tensor>,
}

/// The fine (level `l`) and, for a correction term, coarse (level `l+1`) versions of a batch.
#[derive(Debug, Clone)]
pub struct CoupledPair {
    /// Level `l`.
    pub fine: LevelBatch,
    /// Level `l+1` built from the same samples; `None` for the coarsest term.
    pub coarse: Option<LevelBatch>,
}

/// Per-step gain `g = 1 / sum_k w_k^2` of the separable restriction `R` (2-D variance of `R z`
/// for white `z` is `(sum_k w_k^2)^2`, so `g R z` has unit variance again; 2 for averaging).
pub fn noise_gain(r: grids::Restriction) -> f64 {
    1.0 / r.taps().weights.iter().map(|w| w * w).sum::<f64>()
}

/// Builds the coupled pair of term `level` from a finest-mesh batch (001 Algorithm 1).
///
/// With `plan.noise_consistent`, the input at level `k > 0` is rebuilt as
/// `t R^k y + (1-t) g^k R^k z` from `d.clean_input` (`y`) and `d.noise` (`z`) (SPEC section 3).
pub fn coupled_pair(
    d: &Degraded,
    plan: &LevelPlan,
    level: usize,
    rng: &mut impl rand::Rng,
) -> Result<CoupledPair> {
    let mut xs = vec![d.input.clone(), d.target.clone()];
    if plan.noise_consistent {
        match (&d.clean_input, &d.noise, &d.t) {
            (Some(y), Some(z), Some(_)) => xs.extend([y.clone(), z.clone()]),
            _ => {
                return Err(Error::InvalidPlan(
                    "noise_consistent needs a degradation with t, noise and clean_input (denoise)"
                        .into(),
                ))
            }
        }
    }
    for k in 0..level {
        xs = step(&xs, k, plan, rng)?;
    }
    let fine = assemble(&xs, level, plan, d)?;
    let coarse = if plan.is_correction(level) {
        Some(assemble(&step(&xs, level, plan, rng)?, level + 1, plan, d)?)
    } else {
        None
    };
    Ok(CoupledPair { fine, coarse })
}

fn step(
    xs: &[Tensor],
    level: usize,
    plan: &LevelPlan,
    rng: &mut impl rand::Rng,
) -> Result<Vec<Tensor>> {
    Ok(grids::subsample::next_level(
        xs,
        level,
        plan.levels,
        plan.subsampling,
        plan.restriction,
        rng,
    )?)
}

fn assemble(xs: &[Tensor], level: usize, plan: &LevelPlan, d: &Degraded) -> Result<LevelBatch> {
    let input = match (plan.noise_consistent && level > 0, &d.t) {
        (true, Some(t)) => {
            let t = t
                .reshape((t.elem_count(), 1, 1, 1))?
                .to_dtype(xs[2].dtype())?;
            let gain = noise_gain(plan.restriction).powi(level as i32);
            let signal = xs[2].broadcast_mul(&t)?;
            let noise = (xs[3].broadcast_mul(&t.affine(-1.0, 1.0)?)? * gain)?;
            (signal + noise)?
        }
        _ => xs[0].clone(),
    };
    Ok(LevelBatch {
        level,
        input,
        target: xs[1].clone(),
        t: d.t.clone(),
    })
}
