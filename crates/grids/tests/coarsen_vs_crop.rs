//! Coarsening vs cropping (001 Appendix A.2, eqs. 28-37): the telescoping-sum gradient error
//! `E(h, L) = sum_{l=0}^{L-2} ||g^(l) - g^(l+1)||` of a 3x3 convolution loss, with level `l+1`
//! of every sample built from level `l` by [`grids::subsample::next_level`].
//!
//! - Coarsen: each term is `O(2^l h)` (Lemma 1), so `E = O(2^L h)` vanishes as `h -> 0`: the
//!   observed order in `h` over the meshes 64, 128, 256 is near 1.
//! - Crop: each term compares a window with its random quarter-area sub-window at the same mesh,
//!   `O(1)` whatever `h` (eq. 33), bounded by `2 (1 - m/N) M` per term with `M` the largest
//!   per-pixel gradient norm, so `E <= 2 (1 - 1/4) M (L - 1)` (eq. 34).
//!
//! The images are smooth random periodic fields (a few Fourier modes) sampled at the pixel
//! centres of the finest mesh; the loss is `mean((tanh(w * u) - y)^2)` (zero padding), Riemann
//! means over pixels and samples (SPEC section 0).

use candle_core::{DType, Device, Tensor, Var};
use grids::subsample::next_level;
use grids::{Restriction, Subsampling};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::f64::consts::PI;

/// Samples per batch (the error is an average over them).
const BATCH: usize = 12;
/// Finest meshes compared.
const MESHES: [usize; 3] = [32, 64, 128];

/// `[BATCH, 1, n, n]`: per sample `sum_j a_j cos(2 pi (p_j x + q_j y) + phi_j)`, |p|, |q| <= 1,
/// at the pixel centres of an `n x n` mesh (the same functions for every `n`).
fn smooth_batch(seed: u64, n: usize) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let h = 1.0 / n as f64;
    let mut v = Vec::with_capacity(BATCH * n * n);
    for _ in 0..BATCH {
        let modes: Vec<[f64; 4]> = (0..5)
            .map(|_| {
                [
                    rng.random_range(0.2..1.0),
                    rng.random_range(-1i32..=1) as f64,
                    rng.random_range(-1i32..=1) as f64,
                    rng.random_range(0.0..2.0 * PI),
                ]
            })
            .collect();
        for i in 0..n {
            for j in 0..n {
                let (x, y) = ((j as f64 + 0.5) * h, (i as f64 + 0.5) * h);
                v.push(
                    modes
                        .iter()
                        .map(|[a, p, q, ph]| a * (2.0 * PI * (p * x + q * y) + ph).cos())
                        .sum::<f64>()
                        / 2.0,
                );
            }
        }
    }
    Tensor::from_vec(v, (BATCH, 1, n, n), &Device::Cpu).unwrap()
}

/// The loss's pre-activation `w * u` (3x3, zero padding 1).
fn preact(u: &Tensor, w: &Var) -> Tensor {
    u.conv2d(w.as_tensor(), 1, 1, 1, 1).unwrap()
}

/// Gradient of `mean((tanh(w * u) - y)^2)` with respect to the 3x3 weights.
fn gradient(u: &Tensor, y: &Tensor, w: &Var) -> Vec<f64> {
    let loss = (preact(u, w).tanh().unwrap() - y)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    let g = loss.backward().unwrap();
    g.get(w.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Largest per-pixel gradient norm `||phi_j|| = |2 (tanh a_j - y_j) (1 - tanh^2 a_j)| ||patch_j||`
/// (`patch_j`: the 3x3 input neighbourhood of pixel `j`, zero padded).
fn max_pixel_gradient(u: &Tensor, y: &Tensor, w: &Var) -> f64 {
    let t = preact(u, w).tanh().unwrap();
    let dl = ((&t - y).unwrap() * 2.0).unwrap() * (1.0 - t.sqr().unwrap()).unwrap();
    let ones = Tensor::ones((1, 1, 3, 3), DType::F64, &Device::Cpu).unwrap();
    let patch = u
        .sqr()
        .unwrap()
        .conv2d(&ones, 1, 1, 1, 1)
        .unwrap()
        .sqrt()
        .unwrap();
    let phi = (dl.unwrap().abs().unwrap() * patch).unwrap();
    phi.flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Per-sample telescoping error `sum_l ||g_i^(l) - g_i^(l+1)||` (the per-sample discrepancy of
/// 001 eq. 10) over `levels` levels built with `s`, averaged over the samples `i`, and the
/// largest per-pixel gradient norm met on any level.
fn telescoping(
    u: &Tensor,
    y: &Tensor,
    w: &Var,
    levels: usize,
    s: Subsampling,
    seed: u64,
) -> (f64, f64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut total, mut m) = (0.0, 0.0f64);
    for i in 0..BATCH {
        let (mut u, mut y) = (u.narrow(0, i, 1).unwrap(), y.narrow(0, i, 1).unwrap());
        let mut g = gradient(&u, &y, w);
        m = m.max(max_pixel_gradient(&u, &y, w));
        for l in 0..levels - 1 {
            let next = next_level(&[u, y], l, levels, s, Restriction::Average, &mut rng).unwrap();
            (u, y) = (next[0].clone(), next[1].clone());
            let gc = gradient(&u, &y, w);
            m = m.max(max_pixel_gradient(&u, &y, w));
            total += dist(&g, &gc);
            g = gc;
        }
    }
    (total / BATCH as f64, m)
}

/// Error and `M` for the fine meshes of [`MESHES`] (same continuous fields and weights).
fn by_mesh(seed: u64, w: &Var, levels: usize, s: Subsampling) -> Vec<(f64, f64)> {
    MESHES
        .iter()
        .map(|&n| {
            telescoping(
                &smooth_batch(seed, n),
                &smooth_batch(seed + 1, n),
                w,
                levels,
                s,
                seed + n as u64,
            )
        })
        .collect()
}

fn sci(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.3e}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn weights(seed: u64) -> Var {
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<f64> = (0..9).map(|_| rng.random_range(-0.5..0.5)).collect();
    Var::from_tensor(&Tensor::from_vec(v, (1, 1, 3, 3), &Device::Cpu).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    /// Coarsening: `E = O(2^L h)`; the observed order in `h` between the two finest meshes
    /// (64 -> 128) is near 1 or better. From 32 some fields are not yet in the asymptotic range
    /// (orders down to 0.78 over 32 -> 128 in a sweep of 200 seeds, 0.90 or more over 64 -> 128).
    #[test]
    fn coarsening_error_vanishes_like_h(seed in 0u64..1_000_000) {
        let w = weights(seed ^ 7);
        let e: Vec<f64> = by_mesh(seed, &w, 3, Subsampling::Coarsen).iter().map(|r| r.0).collect();
        let order = (e[1] / e[2]).log2();
        eprintln!("coarsen L=3: E(32, 64, 128) = {}, order (64 -> 128) {order:.2}", sci(&e));
        prop_assert!(order > 0.8, "coarsening order {order} (E = {e:?})");
        prop_assert!(e[1] < e[0] && e[2] < e[1], "coarsening error must decrease with h: {e:?}");
    }

    /// Cropping: `E = O(1)` in `h` (no decrease from 32 to 128), far above coarsening's at the
    /// finest mesh, within eq. 34's bound `2 (1 - 1/4) M (L - 1)`, and growing with `L`.
    #[test]
    fn cropping_error_stays_order_one_within_the_bound(seed in 0u64..1_000_000) {
        let w = weights(seed ^ 7);
        let mut sums = vec![];
        for levels in [2usize, 4] {
            let crop = by_mesh(seed, &w, levels, Subsampling::Crop);
            let coarse = by_mesh(seed, &w, levels, Subsampling::Coarsen);
            let e: Vec<f64> = crop.iter().map(|r| r.0).collect();
            let c: Vec<f64> = coarse.iter().map(|r| r.0).collect();
            eprintln!("L={levels}: crop E(32, 64, 128) = {}, coarsen {}", sci(&e), sci(&c));
            for (n, (err, m)) in MESHES.iter().zip(&crop) {
                let bound = 2.0 * (1.0 - 0.25) * m * (levels - 1) as f64;
                prop_assert!(*err <= bound, "n={n}, L={levels}: crop error {err} above the bound {bound}");
            }
            // O(1): the crop error at h = 1/128 is not below 0.35 of that at 1/32 (coarsening's
            // drops by 4 or more), and is at least twice coarsening's there.
            prop_assert!(e[2] > 0.35 * e[0], "L={levels}: crop error vanishes with h: {e:?}");
            prop_assert!(e[2] > 2.0 * c[2], "L={levels}: crop {} not above coarsen {} at n=128", e[2], c[2]);
            sums.push(e.iter().sum::<f64>());
        }
        prop_assert!(sums[1] > 1.2 * sums[0], "crop error must grow with L: L=2 {}, L=4 {}", sums[0], sums[1]);
    }
}
