//! Fused same-mesh MGE model calls (`mge::Estimator::set_fused_levels`) on the real networks:
//! for every model that normalises per sample ([`ModelConfig::normalises_per_sample`]) the fused
//! estimator gives the unfused loss, per-term losses and gradient (f32: the embedding is f32;
//! loss to 1e-5 relative, gradient to 2e-5 of its largest entry), in
//! fewer model calls; MgNet with batch norm is the one configuration that is not per sample.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use data::Degraded;
use mge::{Accountant, Estimator, GradientMode, LevelPlan, Sampler};
use models::{build, MgnetConfig, ModelConfig, ResnetConfig, UnetConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::Cell;

/// Denoising samples `u = t y + (1 - t) z` of smooth random images (made in f64, used in f32).
struct Noisy {
    c: usize,
    n: usize,
    rng: StdRng,
}

impl Sampler for Noisy {
    fn draw(&mut self, count: usize) -> mge::Result<Degraded> {
        let (c, n) = (self.c, self.n);
        let mut y = Vec::with_capacity(count * c * n * n);
        let mut z = Vec::with_capacity(count * c * n * n);
        let mut t = Vec::with_capacity(count);
        for _ in 0..count {
            let (fx, fy, ph): (f64, f64, f64) =
                (self.rng.random(), self.rng.random(), self.rng.random());
            for ch in 0..c {
                for i in 0..n {
                    for j in 0..n {
                        let (u, v) = (i as f64 / n as f64, j as f64 / n as f64);
                        y.push((6.0 * (fx * u + fy * v) + ph + ch as f64).sin());
                        z.push(self.rng.random::<f64>() * 2.0 - 1.0);
                    }
                }
            }
            t.push(self.rng.random_range(0.2..0.9));
        }
        let dev = Device::Cpu;
        let y = Tensor::from_vec(y, (count, c, n, n), &dev)?.to_dtype(DType::F32)?;
        let z = Tensor::from_vec(z, (count, c, n, n), &dev)?.to_dtype(DType::F32)?;
        let tt = Tensor::from_vec(t, count, &dev)?.to_dtype(DType::F32)?;
        let tb = tt.reshape((count, 1, 1, 1))?;
        let input = (y.broadcast_mul(&tb)? + z.broadcast_mul(&tb.affine(-1.0, 1.0)?)?)?;
        Ok(Degraded {
            input,
            target: y.clone(),
            t: Some(tt),
            noise: Some(z),
            clean_input: Some(y),
            mask: None,
        })
    }
}

fn mse(p: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    (p - y)?.sqr()?.mean_all()
}

/// `(loss, per-term (fine, coarse) losses, flattened gradient, #WU, model calls)` of one MGE
/// step, fused or not.
#[allow(clippy::type_complexity)]
fn one_step(
    cfg: &ModelConfig,
    vm: &VarMap,
    levels: usize,
    n: usize,
    fused: bool,
) -> (f64, Vec<(f64, Option<f64>)>, Vec<f64>, mge::Fraction, usize) {
    let net = build(cfg, VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu)).unwrap();
    let calls = Cell::new(0);
    let model = |x: &Tensor, t: Option<&Tensor>| {
        calls.set(calls.get() + 1);
        net.forward(x, t)
    };
    let mut est = Estimator::new(
        LevelPlan::multiscale(levels, 2).unwrap(),
        GradientMode::Total,
        3,
    )
    .unwrap();
    est.set_fused_levels(fused);
    let mut sampler = Noisy {
        c: 3,
        n,
        rng: StdRng::seed_from_u64(11),
    };
    let mut acct = Accountant::new();
    let step = est
        .step(&model, &mse, &mut sampler, &[], 0, &mut acct)
        .unwrap();
    let data = vm.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut grad = Vec::new();
    for name in names {
        let v = &data[name];
        let g = step
            .grads
            .get(v.as_tensor())
            .cloned()
            .unwrap_or_else(|| v.as_tensor().zeros_like().unwrap());
        grad.extend(
            g.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from),
        );
    }
    let terms = step
        .terms
        .iter()
        .map(|t| (t.loss_fine, t.loss_coarse))
        .collect();
    (step.loss, terms, grad, acct.total(), calls.get())
}

fn close(a: f64, b: f64, scale: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * scale.max(1e-12)
}

#[test]
fn fused_levels_match_unfused_for_per_sample_models() {
    let configs = [
        ModelConfig::Unet(UnetConfig {
            channels: Some(vec![8, 16]),
            ..UnetConfig::default()
        }),
        ModelConfig::Resnet(ResnetConfig {
            hidden: 8,
            ..ResnetConfig::default()
        }),
    ];
    for cfg in &configs {
        assert!(cfg.normalises_per_sample(), "{}", cfg.kind());
        let vm = VarMap::new();
        let unfused = one_step(cfg, &vm, 3, 16, false);
        let fused = one_step(cfg, &vm, 3, 16, true);
        // Three meshes: 5 model calls unfused, 3 fused; the same #WU.
        assert_eq!((unfused.4, fused.4), (5, 3), "{}", cfg.kind());
        assert_eq!(unfused.3, fused.3);
        assert!(
            close(fused.0, unfused.0, unfused.0.abs(), 1e-5),
            "{} loss {} vs {}",
            cfg.kind(),
            fused.0,
            unfused.0
        );
        for (a, b) in fused.1.iter().zip(&unfused.1) {
            assert!(close(a.0, b.0, b.0.abs(), 1e-5));
            assert_eq!(a.1.is_some(), b.1.is_some());
            if let (Some(x), Some(y)) = (a.1, b.1) {
                assert!(close(x, y, y.abs(), 1e-5));
            }
        }
        let scale = unfused.2.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0);
        assert_eq!(fused.2.len(), unfused.2.len());
        for (a, b) in fused.2.iter().zip(&unfused.2) {
            assert!(
                close(*a, *b, scale, 2e-5),
                "{} gradient {a} vs {b}",
                cfg.kind()
            );
        }
    }
}

#[test]
fn only_batch_norm_mgnet_is_not_per_sample() {
    for kind in ModelConfig::KINDS {
        let cfg = ModelConfig::default_for(kind).unwrap();
        assert_eq!(cfg.normalises_per_sample(), kind != "mgnet", "{kind}");
    }
    let without_bn = ModelConfig::Mgnet(MgnetConfig {
        batch_norm: false,
        ..MgnetConfig::default()
    });
    assert!(without_bn.normalises_per_sample());
}
