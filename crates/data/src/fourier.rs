//! Random fields on the periodic unit square as finite Fourier sums, shared by
//! [`crate::GaussianRandomField`] and [`crate::MarkovField`].
//!
//! `f(x, y) = sum_{k in [-K, K]^2, k != 0} a_k cos(2 pi k.(x, y)) + b_k sin(2 pi k.(x, y))` with
//! independent `a_k, b_k ~ N(0, S(k))` seeded per image, so `Var f(x) = sum_k S(k) = sigma^2` at
//! every point. The image is `Phi(f / sigma)` (standard normal CDF), a smooth map of the field to
//! `(0, 1)` with uniform marginals, sampled at the pixel centres of mesh `h = 1/n`.

use crate::source::{check_size, mix_seed};
use crate::Result;
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::f64::consts::PI;

/// A seeded family of periodic Fourier fields with spectral variance `S(k)` per mode.
#[derive(Debug, Clone)]
pub(crate) struct FourierField {
    pub seed: u64,
    pub channels: usize,
    pub kmax: usize,
    /// `S(k)` for `k = (k1, k2)`, evaluated once per mode.
    pub variances: Vec<f64>,
}

impl FourierField {
    /// Builds the per-mode variances `S(k)` for `k in [-K, K]^2` (0 at `k = 0`).
    pub fn new(seed: u64, channels: usize, kmax: usize, spectrum: impl Fn(f64) -> f64) -> Self {
        let m = 2 * kmax + 1;
        let variances = (0..m * m)
            .map(|idx| {
                let (k1, k2) = (
                    (idx / m) as f64 - kmax as f64,
                    (idx % m) as f64 - kmax as f64,
                );
                let norm = (k1 * k1 + k2 * k2).sqrt();
                if norm == 0.0 {
                    0.0
                } else {
                    spectrum(norm)
                }
            })
            .collect();
        Self {
            seed,
            channels: channels.max(1),
            kmax,
            variances,
        }
    }

    /// Image `index` sampled at the pixel centres of an `n x n` mesh, `[C, n, n]`.
    pub fn image(&self, index: u64, n: usize) -> Result<Tensor> {
        check_size(n)?;
        let m = 2 * self.kmax + 1;
        let sigma = self
            .variances
            .iter()
            .sum::<f64>()
            .sqrt()
            .max(f64::MIN_POSITIVE);
        let mut rng = StdRng::seed_from_u64(mix_seed(self.seed, index));
        // cos / sin of 2 pi k x_j at the pixel centres, shared by both axes.
        let (mut cs, mut sn) = (vec![0f64; n * m], vec![0f64; n * m]);
        for j in 0..n {
            let x = (j as f64 + 0.5) / n as f64;
            for k in 0..m {
                let phase = 2.0 * PI * (k as f64 - self.kmax as f64) * x;
                cs[j * m + k] = phase.cos();
                sn[j * m + k] = phase.sin();
            }
        }
        let mut out = Vec::with_capacity(self.channels * n * n);
        for _ in 0..self.channels {
            // a, b indexed [k1 * m + k2]; k1 pairs with x (columns), k2 with y (rows).
            let draw = |rng: &mut StdRng| -> Vec<f64> {
                self.variances
                    .iter()
                    .map(|v| {
                        v.sqrt()
                            * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng)
                    })
                    .collect()
            };
            let (a, b) = (draw(&mut rng), draw(&mut rng));
            // U[j,k2] = sum_k1 a cos(A) + b sin(A); V[j,k2] = sum_k1 b cos(A) - a sin(A).
            let (mut u, mut v) = (vec![0f64; n * m], vec![0f64; n * m]);
            for j in 0..n {
                for k1 in 0..m {
                    let (c, s) = (cs[j * m + k1], sn[j * m + k1]);
                    let (ar, br) = (&a[k1 * m..(k1 + 1) * m], &b[k1 * m..(k1 + 1) * m]);
                    let (ur, vr) = (&mut u[j * m..(j + 1) * m], &mut v[j * m..(j + 1) * m]);
                    for k2 in 0..m {
                        ur[k2] += ar[k2] * c + br[k2] * s;
                        vr[k2] += br[k2] * c - ar[k2] * s;
                    }
                }
            }
            // f[i,j] = sum_k2 cos(B_i) U[j,k2] + sin(B_i) V[j,k2]  (cos(A+B), sin(A+B) expanded).
            for i in 0..n {
                let (ci, si) = (&cs[i * m..(i + 1) * m], &sn[i * m..(i + 1) * m]);
                for j in 0..n {
                    let (uj, vj) = (&u[j * m..(j + 1) * m], &v[j * m..(j + 1) * m]);
                    let f: f64 = (0..m).map(|k| ci[k] * uj[k] + si[k] * vj[k]).sum();
                    out.push(normal_cdf(f / sigma) as f32);
                }
            }
        }
        Ok(Tensor::from_vec(out, (self.channels, n, n), &Device::Cpu)?)
    }
}

/// Standard normal CDF `Phi(x) = (1 + erf(x / sqrt 2)) / 2`.
fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + statrs::function::erf::erf(x / std::f64::consts::SQRT_2))
}
