//! The premise of MGE (001 section 2.1, eqs. 7-13): on smooth data the correction terms
//! `g^(l) - g^(l+1)` have small variance (Lemma 1), so at equal #WU the multiscale estimate
//! (001 eq. 6) has a smaller variance than single-scale SGD's.
//!
//! Data: Gaussian random fields ([`data::GaussianRandomField`], spectrum `|k|^-4`, 1 mode per
//! axis) on the 128 mesh; the task is blur regression `y = K * u` (a fixed 3x3 average, so the
//! target is as smooth as the input); the model a 3x3 convolution with random weights in
//! `[0.2, 0.8]`, far from the fit (`sum w ~ 4.5` against the target's 1): the early-training
//! regime, where the residual is `O(1)` and the mesh-dependent `O(h)` parts of the per-sample
//! gradients are small beside it. (Near a fit the `O(h)` parts dominate what is left of the
//! gradient and the correction terms stop paying: a run here with weights in `[-0.5, 0.5]`
//! found MGE/single variance ratios up to 26; SPEC section 3 reports the same for trained UNets.)
//! Loss MSE (a mean). MGE: `L = 3`, `N_l = 4, 8, 16` (8.5 #WU per iteration,
//! eq. 39). Single-scale: batch 9 (9 #WU). The variance is the empirical one over independent
//! iterations (fresh batches each): `mean_r ||g_r - mean g||^2`.

use candle_core::{DType, Device, Tensor, Var};
use data::{Degraded, GaussianRandomField, ImageSource};
use mge::{Accountant, Estimator, GradientMode, LevelPlan, Sampler};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

const N: usize = 128;
const DRAWS: u64 = 64;

/// Fresh GRF images `u` (ids `next, next+1, ...`) and their blurred versions `y = K * u`.
struct BlurSampler {
    source: GaussianRandomField,
    next: u64,
    kernel: Tensor,
}

impl Sampler for BlurSampler {
    fn draw(&mut self, count: usize) -> mge::Result<Degraded> {
        let imgs = (self.next..self.next + count as u64)
            .map(|i| self.source.image(i, N))
            .collect::<data::Result<Vec<_>>>()?;
        self.next += count as u64;
        let input = Tensor::stack(&imgs, 0)?;
        let target = input.conv2d(&self.kernel, 1, 1, 1, 1)?;
        Ok(Degraded::pair(input, target))
    }
}

fn mse(p: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    (p - y)?.sqr()?.mean_all()
}

/// Empirical variance of the estimator's gradient over `DRAWS` iterations, and its #WU per
/// iteration counted by the accountant.
fn variance(plan: LevelPlan, seed: u64, w: &Var) -> (f64, f64) {
    let mut sampler = BlurSampler {
        source: GaussianRandomField::new(seed, 4.0).with_max_frequency(1),
        next: 0,
        kernel: Tensor::full(1f32 / 9.0, (1, 1, 3, 3), &Device::Cpu).unwrap(),
    };
    let est = Estimator::new(plan, GradientMode::Total, seed).unwrap();
    let model = |x: &Tensor, _t: Option<&Tensor>| x.conv2d(w.as_tensor(), 1, 1, 1, 1);
    let mut acct = Accountant::new();
    let grads: Vec<Vec<f64>> = (0..DRAWS)
        .map(|it| {
            let step = est
                .step(
                    &model,
                    &mse,
                    &mut sampler,
                    std::slice::from_ref(w),
                    it,
                    &mut acct,
                )
                .unwrap();
            let g = step.grads.get(w.as_tensor()).unwrap();
            g.to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect();
    let mean: Vec<f64> = (0..9)
        .map(|k| grads.iter().map(|g| g[k]).sum::<f64>() / DRAWS as f64)
        .collect();
    let var = grads
        .iter()
        .map(|g| {
            g.iter()
                .zip(&mean)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        / (DRAWS - 1) as f64;
    (var, acct.total().to_f64() / DRAWS as f64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2))]

    #[test]
    fn mge_variance_at_equal_work_is_below_single_scale(seed in 0u64..1_000_000) {
        let mut rng = StdRng::seed_from_u64(seed);
        let w0: Vec<f32> = (0..9).map(|_| rng.random_range(0.2f32..0.8)).collect();
        let w = Var::from_tensor(&Tensor::from_vec(w0, (1, 1, 3, 3), &Device::Cpu).unwrap()).unwrap();
        let (v_mge, wu_mge) = variance(LevelPlan::multiscale(3, 4).unwrap(), seed, &w);
        let (v_single, wu_single) = variance(LevelPlan::single(9).unwrap(), seed, &w);
        eprintln!("MGE: var {v_mge:.3e} at {wu_mge} WU/iter; single: var {v_single:.3e} at {wu_single} WU/iter; ratio {:.3}", v_mge / v_single);
        prop_assert!(wu_mge <= wu_single, "MGE spent more work: {wu_mge} > {wu_single}");
        // Ratios seen: 0.36 - 0.86 (seed 888795: 0.858, kept in the regression file); a bound
        // below 1 tighter than that fails on some seeds from the 64-draw estimate's noise alone.
        prop_assert!(v_mge < v_single, "MGE variance {v_mge} not below single-scale {v_single}");
    }
}
