//! Shared test fixtures: smooth images, an in-test denoising sampler, a tiny conv model.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Module, VarBuilder, VarMap};
use data::Degraded;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::Distribution;

/// A smooth `[C, n, n]` image: `id + sum_k a_k sin(2 pi (f_k . x) + p_k)`, `f_x` in 1..=2,
/// plus `id * tag`: with `tag = 1e-3` its mean encodes the sample id (to check which sample a
/// tensor came from); training uses `tag = 0` so the distribution does not drift with `id`.
pub fn smooth_image(id: u64, c: usize, n: usize, tag: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(id);
    let waves: Vec<(f32, f32, f32, f32)> = (0..3)
        .map(|_| {
            (
                rng.random_range(1..=2) as f32,
                rng.random_range(-2..=2) as f32,
                rng.random::<f32>() * std::f32::consts::TAU,
                rng.random::<f32>() * 0.3,
            )
        })
        .collect();
    let mut v = Vec::with_capacity(c * n * n);
    for ch in 0..c {
        for i in 0..n {
            for j in 0..n {
                let (x, y) = ((j as f32 + 0.5) / n as f32, (i as f32 + 0.5) / n as f32);
                let s: f32 = waves
                    .iter()
                    .map(|&(fx, fy, p, a)| {
                        a * (std::f32::consts::TAU * (fx * x + fy * y) + p + ch as f32).sin()
                    })
                    .sum();
                v.push(0.5 + s + id as f32 * tag);
            }
        }
    }
    v
}

/// Denoising samples of smooth images with ids `next, next+1, ...`: `u = t y + (1-t) s z`
/// with `s = noise_scale`.
pub struct SmoothSampler {
    pub next: u64,
    pub c: usize,
    pub n: usize,
    pub noise_scale: f32,
    pub tag: f32,
    pub rng: StdRng,
    pub drawn: Vec<Vec<u64>>,
}

impl SmoothSampler {
    pub fn new(c: usize, n: usize, seed: u64) -> Self {
        SmoothSampler {
            next: 0,
            c,
            n,
            noise_scale: 0.2,
            tag: 0.0,
            rng: StdRng::seed_from_u64(seed),
            drawn: vec![],
        }
    }
}

pub fn degrade(clean: &Tensor, t: &[f32], z: &Tensor) -> candle_core::Result<Degraded> {
    let n = t.len();
    let tt = Tensor::from_vec(t.to_vec(), n, clean.device())?;
    let tb = tt.reshape((n, 1, 1, 1))?;
    let input = (clean.broadcast_mul(&tb)? + z.broadcast_mul(&tb.affine(-1.0, 1.0)?)?)?;
    Ok(Degraded {
        input,
        target: clean.clone(),
        t: Some(tt),
        noise: Some(z.clone()),
        clean_input: Some(clean.clone()),
        mask: None,
    })
}

impl mge::Sampler for SmoothSampler {
    fn draw(&mut self, count: usize) -> mge::Result<Degraded> {
        let ids: Vec<u64> = (self.next..self.next + count as u64).collect();
        self.next += count as u64;
        let mut v = Vec::new();
        for &id in &ids {
            v.extend(smooth_image(id, self.c, self.n, self.tag));
        }
        let clean = Tensor::from_vec(v, (count, self.c, self.n, self.n), &Device::Cpu)?;
        let t: Vec<f32> = (0..count).map(|_| self.rng.random::<f32>()).collect();
        let z: Vec<f32> = (0..count * self.c * self.n * self.n)
            .map(|_| {
                let z: f32 = rand_distr::StandardNormal.sample(&mut self.rng);
                z * self.noise_scale
            })
            .collect();
        let z = Tensor::from_vec(z, clean.shape(), &Device::Cpu)?;
        self.drawn.push(ids);
        Ok(degrade(&clean, &t, &z)?)
    }
}

/// `x + conv2(tanh(conv1(x)))`, 3x3 convolutions, `t` ignored.
pub struct Tiny {
    pub c1: Conv2d,
    pub c2: Conv2d,
}

impl Tiny {
    pub fn new(vm: &VarMap, c: usize, hidden: usize) -> Tiny {
        let vb = VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu);
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let net = Tiny {
            c1: candle_nn::conv2d(c, hidden, 3, cfg, vb.pp("c1")).unwrap(),
            c2: candle_nn::conv2d(hidden, c, 3, cfg, vb.pp("c2")).unwrap(),
        };
        seed_vars(vm, 1);
        net
    }
    pub fn forward(&self, x: &Tensor, _t: Option<&Tensor>) -> candle_core::Result<Tensor> {
        x + self.c2.forward(&self.c1.forward(x)?.tanh()?)?
    }
}

/// Overwrite every variable, in name order, with seeded values in `[-b, b]`, `b = 1/sqrt(scale)`
/// (candle's CPU initialisation cannot be seeded), so that tests are deterministic.
pub fn seed_vars(vm: &VarMap, scale: usize) {
    let data = vm.data().lock().unwrap();
    let mut named: Vec<_> = data.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    let bound = 1.0 / (scale as f64).sqrt();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for (_, var) in named {
        let v: Vec<f32> = (0..var.elem_count())
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * bound) as f32
            })
            .collect();
        var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
}

pub fn mse(p: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    (p - y)?.sqr()?.mean_all()
}

/// Flattened gradient of every var (zeros where absent).
pub fn flat(grads: &candle_core::backprop::GradStore, vm: &VarMap) -> Vec<f32> {
    let data = vm.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let vars: Vec<_> = names.iter().map(|k| data[*k].clone()).collect();
    let mut out = Vec::new();
    for v in &vars {
        let g = grads
            .get(v.as_tensor())
            .cloned()
            .unwrap_or_else(|| v.as_tensor().zeros_like().unwrap());
        out.extend(g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
    out
}
