//! Estimator tests: fresh samples, coupling, telescoping identity, work units.

mod common;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use common::*;
use mge::workunits::{mge_wu_per_iter, single_wu_per_iter};
use mge::{Accountant, Estimator, Fraction, GradientMode, LevelPlan, Sampler};
use std::cell::RefCell;

/// Sample ids a tensor batch came from (the images' means encode `id * 1e-3` on top of 0.5
/// plus zero-mean waves of integer frequency, which average out exactly on every level).
fn ids_of(x: &Tensor) -> Vec<u64> {
    let m = x
        .flatten_from(1)
        .unwrap()
        .mean(1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    m.iter().map(|v| ((v - 0.5) * 1e3).round() as u64).collect()
}

#[test]
fn every_term_draws_fresh_samples_and_the_stream_advances() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 4);
    let seen: RefCell<Vec<Vec<u64>>> = RefCell::new(vec![]);
    let loss = |p: &Tensor, y: &Tensor| {
        seen.borrow_mut().push(ids_of(y));
        mse(p, y)
    };
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let mut s = SmoothSampler::new(1, 16, 1);
    s.tag = 1e-3;
    let est = Estimator::new(LevelPlan::multiscale(3, 2).unwrap(), GradientMode::Total, 0).unwrap();
    let mut acct = Accountant::new();
    for it in 0..3 {
        est.loss(&model, &loss, &mut s, it, &mut acct).unwrap();
    }
    // One draw per term with N_l = 2^l N_0, ids never repeat.
    let sizes: Vec<usize> = s.drawn.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![2, 4, 8, 2, 4, 8, 2, 4, 8]);
    let seen = seen.into_inner();
    // The losses saw, per term, the fine targets then the coarse targets of the SAME samples.
    let mut all: Vec<u64> = vec![];
    let mut k = 0;
    for draw in &s.drawn {
        let fine = &seen[k];
        assert_eq!(fine, draw);
        k += 1;
        if draw.len() < 8 {
            assert_eq!(&seen[k], draw, "coarse side must reuse the fine samples");
            k += 1;
        }
        all.extend(fine);
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        n,
        "a sample was used by two terms or two iterations"
    );
}

#[test]
fn loader_sampler_never_repeats_images_for_any_thread_count() {
    // A source whose image `i` is the constant i/1000: the target means reveal the indices.
    struct Indexed;
    impl data::ImageSource for Indexed {
        fn channels(&self) -> usize {
            1
        }
        fn len(&self) -> Option<usize> {
            Some(64)
        }
        fn image(&self, index: u64, n: usize) -> data::Result<Tensor> {
            Ok(Tensor::full(
                0.5 + index as f32 * 1e-3,
                (1, n, n),
                &Device::Cpu,
            )?)
        }
    }
    let mut runs = vec![];
    for threads in [1, 3] {
        let loader = data::Loader::new(std::sync::Arc::new(Indexed), 8, 7, threads);
        let mut s = mge::LoaderSampler::new(loader, data::Degradation::Denoise, 3, Device::Cpu);
        let mut ids = vec![];
        for _ in 0..2 {
            for n in [2usize, 4, 8] {
                ids.extend(ids_of(&s.draw(n).unwrap().target));
            }
        }
        let mut u = ids.clone();
        u.sort();
        u.dedup();
        assert_eq!(
            u.len(),
            ids.len(),
            "threads = {threads}: repeated images {ids:?}"
        );
        runs.push(ids);
    }
    assert_eq!(
        runs[0], runs[1],
        "the stream must not depend on the thread count"
    );
}

#[test]
fn coupling_shares_samples_t_and_noise() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 4);
    let calls: RefCell<Vec<(Tensor, Tensor)>> = RefCell::new(vec![]);
    let model = |x: &Tensor, t: Option<&Tensor>| {
        calls.borrow_mut().push((x.clone(), t.unwrap().clone()));
        net.forward(x, t)
    };
    let mut acct = Accountant::new();
    for noise_consistent in [false, true] {
        calls.borrow_mut().clear();
        let mut plan = LevelPlan::multiscale(3, 4).unwrap();
        plan.noise_consistent = noise_consistent;
        let est = Estimator::new(plan, GradientMode::Total, 0).unwrap();
        let mut s = SmoothSampler::new(1, 16, 2);
        s.noise_scale = 1.0;
        est.loss(&model, &mse, &mut s, 0, &mut acct).unwrap();
        let calls = calls.borrow();
        let (fine, t_f) = &calls[2]; // term 1: level 1
        let (coarse, t_c) = &calls[3]; // and level 2
        assert_eq!(t_f.to_vec1::<f32>().unwrap(), t_c.to_vec1::<f32>().unwrap());
        if !noise_consistent {
            let r = grids::restrict(fine, grids::Restriction::Average).unwrap();
            let d = (r - coarse)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-6, "coarse input is not R(fine input): {d}");
        } else {
            // (u - t R^2 y) / (1 - t) = 4 R^2 z must have unit per-pixel variance again.
            let t = t_c.reshape((t_c.elem_count(), 1, 1, 1)).unwrap();
            let d = s.drawn.len();
            assert_eq!(d, 3);
            let y = grids::restrict(
                &grids::restrict(
                    &Tensor::from_vec(
                        s.drawn[1]
                            .iter()
                            .flat_map(|&i| smooth_image(i, 1, 16, 0.0))
                            .collect::<Vec<f32>>(),
                        (8, 1, 16, 16),
                        &Device::Cpu,
                    )
                    .unwrap(),
                    grids::Restriction::Average,
                )
                .unwrap(),
                grids::Restriction::Average,
            )
            .unwrap();
            let z = (coarse - y.broadcast_mul(&t).unwrap())
                .unwrap()
                .broadcast_div(&t.affine(-1.0, 1.0).unwrap())
                .unwrap();
            let var = z
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                (var - 1.0).abs() < 0.35,
                "noise-consistent coarse noise variance {var}"
            );
        }
    }
}

#[test]
fn correction_variance_is_well_below_fine_variance_on_smooth_data() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 4);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let est = Estimator::new(
        LevelPlan::multiscale(3, 8).unwrap(),
        GradientMode::PerTerm,
        0,
    )
    .unwrap();
    let mut s = SmoothSampler::new(1, 32, 3);
    let mut acct = Accountant::new();
    let vars = vm.all_vars();
    let mut tr = mge::VarianceTracker::new(3, 0.0);
    let (mut v_corr, mut v_fine) = (0.0, 0.0);
    for it in 0..6 {
        let step = est
            .step(&model, &mse, &mut s, &vars, it, &mut acct)
            .unwrap();
        v_corr += step.terms[0].variance.unwrap();
        v_fine += step.terms[0].fine_variance.unwrap();
        assert!(step.terms.iter().all(|t| t.grad_norm.is_some()));
        tr.observe(&step.terms);
    }
    let ratio = v_corr / v_fine;
    assert!(ratio < 0.25, "V(g0 - g1) / V(g0) = {ratio}");
    assert!(tr.summary().starts_with("V/Vfine "));
}

/// Gradient of the single-scale loss on the fine level of a fixed batch.
fn fine_gradient(net: &Tiny, vm: &VarMap, d: &data::Degraded) -> Vec<f32> {
    let p = net.forward(&d.input, d.t.as_ref()).unwrap();
    flat(&mse(&p, &d.target).unwrap().backward().unwrap(), vm)
}

struct Repeat(data::Degraded);
impl Sampler for Repeat {
    fn draw(&mut self, count: usize) -> mge::Result<data::Degraded> {
        assert_eq!(count, self.0.input.dim(0).unwrap());
        Ok(self.0.clone())
    }
}

#[test]
fn telescoping_identity_is_exact_with_one_shared_batch() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 2, 6);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let batch = SmoothSampler::new(2, 16, 4).draw(4).unwrap();
    let g_fine = fine_gradient(&net, &vm, &batch);
    let scale = g_fine.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut sampler = Repeat(batch);
    let mut plan = LevelPlan::multiscale(4, 4).unwrap();
    plan.batch = vec![4; 4];
    for mode in [GradientMode::Total, GradientMode::PerTerm] {
        let est = Estimator::new(plan.clone(), mode, 0).unwrap();
        let step = est
            .step(
                &model,
                &mse,
                &mut sampler,
                &vm.all_vars(),
                0,
                &mut Accountant::new(),
            )
            .unwrap();
        let g = flat(&step.grads, &vm);
        let err = g
            .iter()
            .zip(&g_fine)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-5 * scale,
            "{mode:?}: max |g_MGE - g_fine| = {err} (scale {scale})"
        );
    }
}

#[test]
fn telescoping_is_unbiased_with_independent_batches() {
    // A finite data set of M fixed samples drawn uniformly with replacement: E[g^(0)] is the
    // gradient of the mean loss over all M, computed exactly.
    const M: usize = 6;
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 3);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let all = SmoothSampler::new(1, 8, 5).draw(M).unwrap();
    struct Pick(data::Degraded, rand::rngs::StdRng);
    impl Sampler for Pick {
        fn draw(&mut self, count: usize) -> mge::Result<data::Degraded> {
            use rand::Rng;
            let idx: Vec<u32> = (0..count)
                .map(|_| self.1.random_range(0..M as u32))
                .collect();
            let idx = Tensor::new(idx.as_slice(), &Device::Cpu)?;
            let pick = |x: &Tensor| x.index_select(&idx, 0);
            let d = &self.0;
            Ok(data::Degraded {
                input: pick(&d.input)?,
                target: pick(&d.target)?,
                t: d.t.as_ref().map(pick).transpose()?,
                noise: None,
                clean_input: None,
                mask: None,
            })
        }
    }
    use rand::SeedableRng;
    let mut sampler = Pick(all.clone(), rand::rngs::StdRng::seed_from_u64(9));
    let g_exact = fine_gradient(&net, &vm, &all);
    let est = Estimator::new(LevelPlan::multiscale(3, 2).unwrap(), GradientMode::Total, 0).unwrap();
    const K: usize = 300;
    let mut draws: Vec<Vec<f32>> = vec![];
    for it in 0..K {
        let step = est
            .step(
                &model,
                &mse,
                &mut sampler,
                &[],
                it as u64,
                &mut Accountant::new(),
            )
            .unwrap();
        draws.push(flat(&step.grads, &vm));
    }
    let p = g_exact.len();
    let mean: Vec<f64> = (0..p)
        .map(|j| draws.iter().map(|d| d[j] as f64).sum::<f64>() / K as f64)
        .collect();
    let tr_cov: f64 = (0..p)
        .map(|j| {
            draws
                .iter()
                .map(|d| (d[j] as f64 - mean[j]).powi(2))
                .sum::<f64>()
                / (K - 1) as f64
        })
        .sum();
    // E||mean - E g||^2 = tr(Cov) / K; tolerance: 4 standard errors in norm (Markov: <= 1/16).
    let tol = 4.0 * (tr_cov / K as f64).sqrt();
    let err = mean
        .iter()
        .zip(&g_exact)
        .map(|(a, &b)| (a - b as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        err < tol,
        "||mean MGE - E g^0|| = {err:.3e} >= tol {tol:.3e}"
    );
    // The test can fail: the coarsest-level gradient alone is biased beyond the tolerance.
    let coarse = {
        let r = |x: &Tensor| {
            grids::restrict(
                &grids::restrict(x, grids::Restriction::Average).unwrap(),
                grids::Restriction::Average,
            )
            .unwrap()
        };
        let p = net.forward(&r(&all.input), None).unwrap();
        flat(&mse(&p, &r(&all.target)).unwrap().backward().unwrap(), &vm)
    };
    let bias = coarse
        .iter()
        .zip(&g_exact)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        bias > tol,
        "coarse gradient bias {bias:.3e} should exceed tol {tol:.3e}"
    );
}

#[test]
fn accountant_equals_closed_forms_on_real_runs() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 2);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    let mut s = SmoothSampler::new(1, 16, 6);
    let it = Fraction::from_int(3);
    // MGE, L = 4, N0 = 2: 37/16 N0 per iteration (001 eq. 40).
    let mut acct = Accountant::new();
    let est = Estimator::new(LevelPlan::multiscale(4, 2).unwrap(), GradientMode::Total, 0).unwrap();
    for k in 0..3 {
        let step = est.step(&model, &mse, &mut s, &[], k, &mut acct).unwrap();
        assert_eq!(step.wu, mge_wu_per_iter(4, 2).unwrap());
    }
    assert_eq!(
        acct.total(),
        mge_wu_per_iter(4, 2).unwrap().checked_mul(it).unwrap()
    );
    assert_eq!(
        mge_wu_per_iter(4, 2).unwrap(),
        Fraction::new(37 * 2, 16).unwrap()
    );
    // Single-scale seeing the same data: batch 15 N0 on the finest mesh (eq. 41).
    let mut acct = Accountant::new();
    let est = Estimator::new(LevelPlan::single(30).unwrap(), GradientMode::Total, 0).unwrap();
    for k in 0..3 {
        est.step(&model, &mse, &mut s, &[], k, &mut acct).unwrap();
    }
    assert_eq!(
        acct.total(),
        single_wu_per_iter(4, 2).unwrap().checked_mul(it).unwrap()
    );
    assert_eq!(acct.total(), Fraction::from_int(90));
}

#[test]
fn bad_inputs_are_typed_errors() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 1, 2);
    let model = |x: &Tensor, t: Option<&Tensor>| net.forward(x, t);
    // 12 pixels cannot be halved 3 times.
    let est = Estimator::new(LevelPlan::multiscale(4, 1).unwrap(), GradientMode::Total, 0).unwrap();
    assert!(est
        .loss(
            &model,
            &mse,
            &mut SmoothSampler::new(1, 12, 0),
            0,
            &mut Accountant::new()
        )
        .is_err());
    // Noise-consistent restriction without noise parts.
    struct NoNoise;
    impl Sampler for NoNoise {
        fn draw(&mut self, n: usize) -> mge::Result<data::Degraded> {
            let x = Tensor::zeros((n, 1, 8, 8), candle_core::DType::F32, &Device::Cpu)?;
            Ok(data::Degraded::pair(x.clone(), x))
        }
    }
    let mut plan = LevelPlan::multiscale(2, 1).unwrap();
    plan.noise_consistent = true;
    let est = Estimator::new(plan, GradientMode::Total, 0).unwrap();
    let err = est
        .loss(&model, &mse, &mut NoNoise, 0, &mut Accountant::new())
        .unwrap_err();
    assert!(err.to_string().contains("noise_consistent"), "{err}");
}

#[test]
fn fused_levels_give_the_same_loss_gradient_and_wu_in_fewer_calls() {
    let vm = VarMap::new();
    let net = Tiny::new(&vm, 2, 3);
    let calls = RefCell::new(Vec::new());
    let model = |x: &Tensor, t: Option<&Tensor>| {
        calls.borrow_mut().push((x.dim(0)?, x.dim(2)?));
        net.forward(x, t)
    };
    for noise_consistent in [false, true] {
        let mut plan = LevelPlan::multiscale(3, 2).unwrap();
        plan.noise_consistent = noise_consistent;
        let mut runs = Vec::new();
        for fused in [false, true] {
            let mut est = Estimator::new(plan.clone(), GradientMode::Total, 5).unwrap();
            est.set_fused_levels(fused);
            assert_eq!(est.fused_levels(), fused);
            let mut s = SmoothSampler::new(2, 16, 9);
            let mut acct = Accountant::new();
            calls.borrow_mut().clear();
            let step = est.step(&model, &mse, &mut s, &[], 1, &mut acct).unwrap();
            let terms: Vec<_> = step
                .terms
                .iter()
                .map(|t| (t.loss_fine, t.loss_coarse, t.wu))
                .collect();
            runs.push((
                step.loss,
                flat(&step.grads, &vm),
                terms,
                acct.total(),
                calls.borrow().clone(),
            ));
        }
        let (unfused, fused) = (&runs[0], &runs[1]);
        // Unfused: fine and coarse of terms 0 and 1, then term 2 (batches 2, 4, 8).
        assert_eq!(unfused.4, vec![(2, 16), (2, 8), (4, 8), (4, 4), (8, 4)]);
        // Fused: one call per mesh on the concatenated batches.
        assert_eq!(fused.4, vec![(2, 16), (6, 8), (12, 4)]);
        assert_eq!(fused.3, unfused.3);
        assert_eq!(fused.3, mge_wu_per_iter(3, 2).unwrap());
        assert!((fused.0 - unfused.0).abs() <= 1e-6 * unfused.0.abs().max(1e-3));
        for (a, b) in fused.2.iter().zip(&unfused.2) {
            assert!((a.0 - b.0).abs() <= 1e-6 * b.0.abs().max(1e-3));
            assert_eq!(a.1.is_some(), b.1.is_some());
            if let (Some(x), Some(y)) = (a.1, b.1) {
                assert!((x - y).abs() <= 1e-6 * y.abs().max(1e-3));
            }
            assert_eq!(a.2, b.2, "per-term WU");
        }
        let scale = unfused.1.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0);
        for (a, b) in fused.1.iter().zip(&unfused.1) {
            assert!((a - b).abs() <= 1e-5 * scale, "gradient {a} vs {b}");
        }
    }
}
