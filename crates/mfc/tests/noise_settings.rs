//! The two noise settings of issue 7 (001 Example 1 vs 000 Example 1 and Lemmas 2-3), as
//! properties over random fields, noise levels and MFC parameters. `mesh_independence.rs` checks
//! one fixed instance qualitatively; this file adds the quantitative laws:
//!
//! - shared (the target is the noisy input, `loss = mean(f(u) u)`): a 3x3 stencil's centre-weight
//!   gradient is the noise power at the pixel scale, which 2x2 averaging divides by 4 per level,
//!   so `||g^h - g^{2h}||` at the finest pair is `3/4 sigma^2` (+ smooth and sampling parts) and
//!   grows by about 4 per refinement; an MFC's differences shrink (its symbol damps the
//!   pixel-scale modes);
//! - independent (a smooth target `y` independent of the noise, `loss = mean(f(u) y)`): the
//!   noise enters only through `mean(z y)`-type sums of size `sigma h`, so both layers' gradient
//!   differences shrink.
//!
//! White noise of std `sigma` is added on the finest mesh (256) and restricted with the data
//! (2x2 averaging) to 128, 64, 32. Both layers are periodic, 1 -> 1 channel.

mod common;

use candle_core::{DType, Device, Module, Tensor, Var};
use common::{layer, named_vars, set_var, to_vec, Rng};
use mfc::MfcConfig;
use proptest::prelude::*;
use std::f64::consts::PI;

const FINE: usize = 256;
const COARSE: usize = 32;

/// `sum_j a_j cos(2 pi (p_j x + q_j y) + phi_j)`, `|p|, |q| <= 3`, at the pixel centres of the
/// `FINE` mesh.
fn smooth_field(rng: &mut Rng) -> Vec<f64> {
    let modes: Vec<[f64; 4]> = (0..6)
        .map(|_| {
            let (p, q) = (
                (rng.next_u64() % 7) as f64 - 3.0,
                (rng.next_u64() % 7) as f64 - 3.0,
            );
            [rng.uniform(0.2, 1.0), p, q, rng.uniform(0.0, 2.0 * PI)]
        })
        .collect();
    let h = 1.0 / FINE as f64;
    (0..FINE * FINE)
        .map(|k| {
            let (x, y) = (((k % FINE) as f64 + 0.5) * h, ((k / FINE) as f64 + 0.5) * h);
            modes
                .iter()
                .map(|[a, p, q, ph]| a * (2.0 * PI * (p * x + q * y) + ph).cos())
                .sum()
        })
        .collect()
}

/// `values` on the finest mesh and its 2x2-average restrictions down to `COARSE`, coarse first.
fn pyramid(values: Vec<f64>) -> Vec<Tensor> {
    let mut t = Tensor::from_vec(values, (1, 1, FINE, FINE), &Device::Cpu).unwrap();
    let mut levels = vec![t.clone()];
    while t.dim(2).unwrap() > COARSE {
        t = t.avg_pool2d(2).unwrap();
        levels.push(t.clone());
    }
    levels.reverse();
    levels
}

/// One sample: the input `u = s + sigma z` and a smooth target `y` independent of `z`, all meshes.
struct Sample {
    u: Vec<Tensor>,
    y: Vec<Tensor>,
}

fn sample(seed: u64, sigma: f64) -> Sample {
    noisy_sample(seed, sigma, 0)
}

/// [`sample`] with noise realisation number `draw` (the same smooth fields for every `draw`).
fn noisy_sample(seed: u64, sigma: f64, draw: u64) -> Sample {
    let mut rng = Rng::new(seed);
    let mut noise = Rng::new(seed ^ (draw + 1).wrapping_mul(0x9E37_79B9));
    let s = smooth_field(&mut rng);
    // Smooth and independent of the noise; it contains `s` so that `mean(u y)` is never zero by
    // orthogonality of disjoint Fourier modes.
    let y = smooth_field(&mut rng)
        .iter()
        .zip(&s)
        .map(|(a, b)| a + 0.5 * b)
        .collect();
    let u = s.into_iter().map(|v| v + sigma * noise.normal()).collect();
    Sample {
        u: pyramid(u),
        y: pyramid(y),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Setting {
    Independent,
    Shared,
}

/// Gradients (flattened over `vars`) of `mean(f(u) t)`, `t = y` or `u`, on every mesh, coarse first.
fn gradients(
    f: &dyn Fn(&Tensor) -> Tensor,
    vars: &[Var],
    s: &Sample,
    setting: Setting,
) -> Vec<Vec<f64>> {
    s.u.iter()
        .zip(&s.y)
        .map(|(u, y)| {
            let t = if setting == Setting::Shared { u } else { y };
            let g = f(u)
                .broadcast_mul(t)
                .unwrap()
                .mean_all()
                .unwrap()
                .backward()
                .unwrap();
            vars.iter()
                .flat_map(|v| to_vec(g.get(v.as_tensor()).unwrap()))
                .collect()
        })
        .collect()
}

/// `g^{2h} - g^h` for the successive pairs (32-64, 64-128, 128-256).
fn differences(g: &[Vec<f64>]) -> Vec<Vec<f64>> {
    g.windows(2)
        .map(|w| w[1].iter().zip(&w[0]).map(|(a, b)| a - b).collect())
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// A periodic 3x3 convolution (one pixel wrapped around each side).
fn periodic_conv(x: &Tensor, w: &Tensor) -> Tensor {
    let wrap = |x: &Tensor, d: usize| {
        let n = x.dim(d).unwrap();
        Tensor::cat(
            &[
                x.narrow(d, n - 1, 1).unwrap(),
                x.clone(),
                x.narrow(d, 0, 1).unwrap(),
            ],
            d,
        )
        .unwrap()
    };
    wrap(&wrap(x, 2), 3).conv2d(w, 0, 1, 1, 1).unwrap()
}

/// An MFC 1 -> 1 with random parameters in the SPEC initial ranges (kernel 1-3 pixels of the 64
/// mesh wide).
fn random_mfc(rng: &mut Rng) -> (mfc::Mfc, Vec<Var>) {
    let (varmap, l) = layer(1, 1, &MfcConfig::default(), DType::F64);
    let h0 = 1.0 / 64.0;
    set_var(&varmap, "weight", vec![rng.uniform(0.5, 1.0)]);
    set_var(&varmap, "bias", vec![rng.uniform(-0.5, 0.5)]);
    set_var(&varmap, "alpha", vec![rng.uniform(-1.0, 1.0)]);
    set_var(
        &varmap,
        "d",
        vec![rng.uniform(-h0, h0), rng.uniform(-h0, h0)],
    );
    set_var(&varmap, "phi", vec![rng.uniform(0.0, PI)]);
    set_var(&varmap, "a", vec![rng.uniform(-0.5, 0.5)]);
    set_var(&varmap, "b", vec![rng.uniform(-0.5, 0.5)]);
    set_var(
        &varmap,
        "tau",
        vec![((rng.uniform(1.0, 3.0) * h0).powi(2) / 2.0).ln()],
    );
    let vars = named_vars(&varmap).into_iter().map(|(_, v)| v).collect();
    (l, vars)
}

fn sci(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2e}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn fmt(d: &[Vec<f64>]) -> String {
    sci(&d.iter().map(|v| norm(v)).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Shared noise: the 3x3 stencil's differences grow to `3/4 sigma^2` at the finest pair,
    /// the MFC's shrink.
    #[test]
    fn shared_noise_breaks_the_stencil_not_the_mfc(seed in 0u64..1_000_000, sigma in 0.1f64..1.0) {
        let (noisy, clean) = (sample(seed, sigma), sample(seed, 0.0));
        let w = Var::from_tensor(&Tensor::zeros((1, 1, 3, 3), DType::F64, &Device::Cpu).unwrap()).unwrap();
        let conv = |x: &Tensor| periodic_conv(x, w.as_tensor());
        let d_noisy = differences(&gradients(&conv, std::slice::from_ref(&w), &noisy, Setting::Shared));
        let d_clean = differences(&gradients(&conv, std::slice::from_ref(&w), &clean, Setting::Shared));
        // The noise's part of the finest difference: 3/4 sigma^2 on the centre weight (within
        // the sampling error of the noise power, ~sigma^2 / n, and the smooth-noise cross terms).
        let noise_part: Vec<f64> = d_noisy[2].iter().zip(&d_clean[2]).map(|(a, b)| a - b).collect();
        let ratio = norm(&noise_part) / (0.75 * sigma * sigma);
        eprintln!("sigma {sigma:.2}: conv diffs {} | noise part / (3/4 sigma^2) = {ratio:.3}", fmt(&d_noisy));
        prop_assert!((ratio - 1.0).abs() < 0.1, "noise part of the finest difference {ratio} x 3/4 sigma^2");
        prop_assert!((noise_part[4].abs() - norm(&noise_part)).abs() < 0.2 * norm(&noise_part), "not on the centre weight: {noise_part:?}");
        let noise_growth = norm(&noise_part) / norm(&d_noisy[0].iter().zip(&d_clean[0]).map(|(a, b)| a - b).collect::<Vec<_>>());
        // About 16; at small sigma the smooth-noise cross terms (of order sigma, against the
        // noise power's sigma^2) add to the coarse pair's part: over 30 seeds the least growth
        // was 7.05 at sigma 0.1 and 11.2 at sigma 0.2.
        let least = if sigma < 0.2 { 5.0 } else { 8.0 };
        prop_assert!(noise_growth > least, "noise part must grow ~16x from 32-64 to 128-256, got {noise_growth}");

        let mut rng = Rng::new(seed ^ 0xF00D);
        let (m, vars) = random_mfc(&mut rng);
        let mfc_f = |x: &Tensor| m.forward(x).unwrap();
        let d = differences(&gradients(&mfc_f, &vars, &noisy, Setting::Shared));
        let rate = norm(&d[2]) / norm(&d[0]);
        eprintln!("sigma {sigma:.2}: MFC diffs {} | rate {rate:.3}", fmt(&d));
        prop_assert!(rate < 0.25, "MFC differences must shrink with a shared noisy target, rate {rate}");
    }

    /// Independent smooth target: noise or not, both layers' differences shrink. The noise
    /// enters as a zero-mean term of size `O(sigma h)` per pair, so the differences are measured
    /// as root mean squares over four noise realisations.
    #[test]
    fn independent_target_both_converge(seed in 0u64..1_000_000, sigma in 0.0f64..1.0) {
        let samples: Vec<Sample> = (0..4).map(|r| noisy_sample(seed, sigma, r)).collect();
        let rms = |f: &dyn Fn(&Tensor) -> Tensor, vars: &[Var]| -> Vec<f64> {
            let d: Vec<Vec<Vec<f64>>> = samples.iter().map(|s| differences(&gradients(f, vars, s, Setting::Independent))).collect();
            (0..3).map(|p| (d.iter().map(|d| norm(&d[p]).powi(2)).sum::<f64>() / d.len() as f64).sqrt()).collect()
        };
        let w = Var::from_tensor(&Tensor::zeros((1, 1, 3, 3), DType::F64, &Device::Cpu).unwrap()).unwrap();
        let conv = |x: &Tensor| periodic_conv(x, w.as_tensor());
        let d = rms(&conv, std::slice::from_ref(&w));
        let rate = d[2] / d[0];
        eprintln!("sigma {sigma:.2}: conv rms diffs {} | rate {rate:.3}", sci(&d));
        prop_assert!(rate < 0.5, "3x3 conv, independent target: rate {rate}");

        let mut rng = Rng::new(seed ^ 0xF00D);
        let (m, vars) = random_mfc(&mut rng);
        let mfc_f = |x: &Tensor| m.forward(x).unwrap();
        let d = rms(&mfc_f, &vars);
        let rate = d[2] / d[0];
        eprintln!("sigma {sigma:.2}: MFC rms diffs {} | rate {rate:.3}", sci(&d));
        prop_assert!(rate < 0.5, "MFC, independent target: rate {rate}");
    }
}
