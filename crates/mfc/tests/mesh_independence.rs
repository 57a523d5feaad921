//! Mesh independence (000 Lemmas 2-3, Example 1; SPEC section 2): the MFC loss and parameter
//! gradients converge as the mesh is refined, with and without noise, while a 3x3 convolution's
//! gradients do not when the target shares the input's noise.
//!
//! The image is a smooth periodic field (a few seeded Fourier modes) sampled at the pixel centres
//! of the finest mesh (256), plus optional white noise there, restricted by 2x2 averaging to 128,
//! 64, 32. Losses are Riemann means (SPEC section 0) and linear in the output as in 000 eq. 14:
//! `<f(u), y>` with a smooth independent target `y`, and `<f(u), u>` (target shares the noise).

mod common;

use candle_core::{DType, Device, Module, Tensor, Var};
use common::{layer, named_vars, set_var, to_vec, Rng};
use mfc::MfcConfig;
use std::f64::consts::PI;

const FINE: usize = 256;
/// Std of the white noise added on the finest mesh (the smooth field has amplitude ~1).
const SIGMA: f64 = 1.0;
const MESHES: [usize; 4] = [32, 64, 128, 256];

/// `sum_j a_j cos(2 pi (p_j x + q_j y) + phi_j)` at the pixel centres of an `n x n` mesh.
fn smooth_field(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let modes: Vec<(f64, f64, f64, f64)> = (0..6)
        .map(|_| {
            let p = (rng.next_u64() % 9) as f64 - 4.0;
            let q = (rng.next_u64() % 9) as f64 - 4.0;
            (rng.uniform(0.2, 1.0), p, q, rng.uniform(0.0, 2.0 * PI))
        })
        .collect();
    let h = 1.0 / n as f64;
    (0..n * n)
        .map(|k| {
            let (x, y) = (((k % n) as f64 + 0.5) * h, ((k / n) as f64 + 0.5) * h);
            modes
                .iter()
                .map(|(a, p, q, ph)| a * (2.0 * PI * (p * x + q * y) + ph).cos())
                .sum()
        })
        .collect()
}

/// The field on the finest mesh (plus white noise of std `sigma`) and its restrictions, coarse first.
fn pyramid(seed: u64, sigma: f64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed ^ 0xABCD);
    let fine: Vec<f64> = smooth_field(seed, FINE)
        .into_iter()
        .map(|v| v + sigma * rng.normal())
        .collect();
    let mut t = Tensor::from_vec(fine, (1, 1, FINE, FINE), &Device::Cpu).unwrap();
    let mut levels = vec![t.clone()];
    while t.dim(2).unwrap() > MESHES[0] {
        t = t.avg_pool2d(2).unwrap();
        levels.push(t.clone());
    }
    levels.reverse();
    levels
}

/// Which loss: `<f(u), y>` (independent smooth target) or `<f(u), u>` (shared noise).
#[derive(Clone, Copy, Debug)]
enum Target {
    Smooth,
    SharesNoise,
}

/// Loss and gradient (all parameters, flattened) of `f` on every mesh.
fn losses_and_grads(
    f: &dyn Fn(&Tensor) -> Tensor,
    vars: &[Var],
    u: &[Tensor],
    y: &[Tensor],
    target: Target,
) -> Vec<(f64, Vec<f64>)> {
    u.iter()
        .zip(y)
        .map(|(u, y)| {
            let out = f(u);
            let t = match target {
                Target::Smooth => y,
                Target::SharesNoise => u,
            };
            let loss = out.broadcast_mul(t).unwrap().mean_all().unwrap();
            let g = loss.backward().unwrap();
            let grad = vars
                .iter()
                .flat_map(|v| to_vec(g.get(v.as_tensor()).unwrap()))
                .collect();
            (loss.to_scalar::<f64>().unwrap(), grad)
        })
        .collect()
}

/// Successive differences between meshes (32-64, 64-128, 128-256) of the loss and of the
/// gradient, relative to the finest mesh's values.
fn differences(r: &[(f64, Vec<f64>)]) -> (Vec<f64>, Vec<f64>) {
    let (lf, gf) = &r[r.len() - 1];
    let gnorm = gf.iter().map(|v| v * v).sum::<f64>().sqrt();
    let dl = r
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).abs() / lf.abs())
        .collect();
    let dg = r
        .windows(2)
        .map(|w| {
            w[1].1
                .iter()
                .zip(&w[0].1)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt()
                / gnorm
        })
        .collect();
    (dl, dg)
}

/// Convergence rate `d(128, 256) / d(32, 64)` (< 1: differences shrink).
fn rate(d: &[f64]) -> f64 {
    d[d.len() - 1] / d[0]
}

struct Case {
    label: String,
    dl: Vec<f64>,
    dg: Vec<f64>,
}

fn run(
    label: &str,
    f: &dyn Fn(&Tensor) -> Tensor,
    vars: &[Var],
    sigma: f64,
    target: Target,
) -> Case {
    let (u, y) = (pyramid(11, sigma), pyramid(12, 0.0));
    let (dl, dg) = differences(&losses_and_grads(f, vars, &u, &y, target));
    let label = format!("{label}, sigma={sigma}, {target:?}");
    eprintln!("{label:<40} loss diffs {:.2e} {:.2e} {:.2e} | grad diffs {:.2e} {:.2e} {:.2e} | rate {:.3}", dl[0], dl[1], dl[2], dg[0], dg[1], dg[2], rate(&dg));
    Case { label, dl, dg }
}

/// Wrap one pixel around each side (periodic boundary, as the MFC's).
fn periodic_pad(x: &Tensor) -> Tensor {
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
    wrap(&wrap(x, 2), 3)
}

#[test]
fn mfc_converges_where_3x3_conv_does_not() {
    // An MFC 1 -> 2 with fixed parameters, kernels 1-2 pixels wide on the 64 mesh.
    let (varmap, mfc) = layer(1, 2, &MfcConfig::default(), DType::F64);
    set_var(&varmap, "weight", vec![1.0, -0.7]);
    set_var(&varmap, "bias", vec![0.1, -0.2]);
    set_var(&varmap, "alpha", vec![0.8, -0.5]);
    set_var(&varmap, "d", vec![0.01, -0.005, -0.008, 0.012]);
    set_var(&varmap, "phi", vec![0.4, 2.0]);
    set_var(&varmap, "a", vec![0.3, -0.2]);
    set_var(&varmap, "b", vec![-0.3, 0.4]);
    set_var(
        &varmap,
        "tau",
        vec![
            ((1.5f64 / 64.0).powi(2) / 2.0).ln(),
            ((1.0f64 / 64.0).powi(2) / 2.0).ln(),
        ],
    );
    let mfc_vars: Vec<Var> = named_vars(&varmap).into_iter().map(|(_, v)| v).collect();
    let mfc_f = |x: &Tensor| mfc.forward(x).unwrap();
    // The same layer with its kernel frozen in pixels of the 64 mesh: a "broken", mesh-dependent
    // symbol (wavenumbers in pixel units) that must fail like a stencil.
    let pixel_f = |x: &Tensor| mfc.forward_with_mesh(x, 1.0 / 64.0).unwrap();
    // A periodic 3x3 convolution 1 -> 2 with fixed weights (the same stencil on every mesh).
    let mut rng = Rng::new(5);
    let w =
        Var::from_tensor(&Tensor::from_vec(rng.normals(18), (2, 1, 3, 3), &Device::Cpu).unwrap())
            .unwrap();
    let conv_f = |x: &Tensor| periodic_pad(x).conv2d(w.as_tensor(), 0, 1, 1, 1).unwrap();
    let conv_vars = [w.clone()];

    let mfc_noisy_shared = run("MFC", &mfc_f, &mfc_vars, SIGMA, Target::SharesNoise);
    let conv_noisy_shared = run("3x3 conv", &conv_f, &conv_vars, SIGMA, Target::SharesNoise);
    let pixel_noisy_shared = run(
        "MFC in pixel units",
        &pixel_f,
        &mfc_vars,
        SIGMA,
        Target::SharesNoise,
    );
    let mfc_noisy_smooth = run("MFC", &mfc_f, &mfc_vars, SIGMA, Target::Smooth);
    let conv_noisy_smooth = run("3x3 conv", &conv_f, &conv_vars, SIGMA, Target::Smooth);
    let mfc_clean_smooth = run("MFC", &mfc_f, &mfc_vars, 0.0, Target::Smooth);
    let mfc_clean_shared = run("MFC", &mfc_f, &mfc_vars, 0.0, Target::SharesNoise);
    let conv_clean_smooth = run("3x3 conv", &conv_f, &conv_vars, 0.0, Target::Smooth);

    // MFC: loss and gradient differences shrink like h^2 (rate 1/16 over two refinements) in
    // every setting, noisy shared target included; the threshold 0.2 leaves a 3x margin.
    for c in [
        &mfc_noisy_shared,
        &mfc_noisy_smooth,
        &mfc_clean_smooth,
        &mfc_clean_shared,
    ] {
        assert!(
            rate(&c.dg) < 0.2,
            "{}: gradient differences must shrink, rate {}",
            c.label,
            rate(&c.dg)
        );
        assert!(
            rate(&c.dl) < 0.2,
            "{}: loss differences must shrink, rate {}",
            c.label,
            rate(&c.dl)
        );
        assert!(
            c.dg.windows(2).all(|w| w[1] < w[0]),
            "{}: not monotone {:?}",
            c.label,
            c.dg
        );
    }
    // 3x3 conv with a target sharing the noise: the differences grow (the noise power per pixel
    // changes by 4 per level and enters the stencil's gradient).
    assert!(
        rate(&conv_noisy_shared.dg) > 1.0,
        "3x3 conv must not converge, rate {}",
        rate(&conv_noisy_shared.dg)
    );
    // A broken, mesh-dependent symbol (pixel-unit wavenumbers) fails the MFC's margin.
    assert!(
        rate(&pixel_noisy_shared.dg) > 0.25,
        "pixel-unit symbol rate {}",
        rate(&pixel_noisy_shared.dg)
    );
    // A smooth independent target hides the difference: the stencil's gradients converge too.
    for c in [&conv_noisy_smooth, &conv_clean_smooth] {
        assert!(rate(&c.dg) < 0.5, "{}: rate {}", c.label, rate(&c.dg));
    }
}
