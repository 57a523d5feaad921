//! Galerkin network transfer (002 section 5.2): the restricted network on `R u` approximates
//! `R f(u)` better than the unrestricted network on `R u`; prolongation inverts restriction.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use grids::{Prolongation, Restriction};
use models::transfer::{prolong_in_place, prolong_network, prolong_network_with, restrict_network};
use models::{build, ConvKind, EspcnConfig, ModelConfig, ResnetConfig, UnetConfig};

/// The network's variables with seeded values: gains `1 + 0.3 z`, biases `0.3 z`, weights
/// Kaiming-normal `z sqrt(2 / fan_in)` (z standard normal), in name order.
fn seeded(cfg: &ModelConfig, seed: u64) -> VarMap {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut normal = move || rng.sample::<f32, _>(rand_distr::StandardNormal);
    let varmap = VarMap::new();
    build(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let mut vars: Vec<_> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in vars {
        let dims = var.dims().to_vec();
        let (offset, scale) = match dims.len() {
            1 if name.ends_with("weight") => (1.0, 0.3),
            1 => (0.0, 0.3),
            _ => (
                0.0,
                (2.0 / dims[1..].iter().product::<usize>() as f32).sqrt(),
            ),
        };
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| offset + scale * normal())
            .collect();
        var.set(&Tensor::from_vec(values, dims, &Device::Cpu).unwrap())
            .unwrap();
    }
    varmap
}

/// Smooth 3-channel images on the n x n cell-centred grid of the unit square.
fn smooth(n: usize, batch: usize) -> Tensor {
    let mut v = Vec::with_capacity(batch * 3 * n * n);
    for b in 0..batch {
        for c in 0..3 {
            for i in 0..n {
                for j in 0..n {
                    let (y, x) = ((i as f64 + 0.5) / n as f64, (j as f64 + 0.5) / n as f64);
                    let ph = 0.3 * (b * 3 + c) as f64;
                    let s = (2.0 * std::f64::consts::PI * (x + ph)).sin()
                        * (2.0 * std::f64::consts::PI * (y - ph)).cos()
                        + 0.5 * x * y;
                    v.push(s as f32);
                }
            }
        }
    }
    Tensor::from_vec(v, (batch, 3, n, n), &Device::Cpu).unwrap()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let num = (a - b)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let den = b
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    (num / den).sqrt()
}

/// Relative errors (restricted, unrestricted) of approximating `R f(u)` from `R u`.
fn errors(cfg: &ModelConfig, seed: u64) -> (f32, f32) {
    let (r, p) = (Restriction::Average, Prolongation::Bilinear);
    let fine_vars = seeded(cfg, seed);
    let coarse_vars = restrict_network(&fine_vars, r, p).unwrap();
    let dev = Device::Cpu;
    let fine = build(cfg, VarBuilder::from_varmap(&fine_vars, DType::F32, &dev)).unwrap();
    let coarse = build(cfg, VarBuilder::from_varmap(&coarse_vars, DType::F32, &dev)).unwrap();
    let u = smooth(64, 2);
    let t = Tensor::new(&[0.4f32, 0.7], &dev).unwrap();
    let target = grids::restrict(&fine.forward(&u, Some(&t)).unwrap(), r).unwrap();
    let ru = grids::restrict(&u, r).unwrap();
    let restricted = coarse.forward(&ru, Some(&t)).unwrap();
    let plain = fine.forward(&ru, Some(&t)).unwrap();
    (rel_err(&restricted, &target), rel_err(&plain, &target))
}

#[test]
fn restricted_network_tracks_the_fine_network_on_coarse_data() {
    let resnet = ModelConfig::Resnet(ResnetConfig {
        hidden: 8,
        ..Default::default()
    });
    let unet = ModelConfig::Unet(UnetConfig {
        channels: Some(vec![8, 16, 16]),
        ..Default::default()
    });
    for cfg in [resnet, unet] {
        for seed in 0..3 {
            let (restricted, plain) = errors(&cfg, seed);
            eprintln!(
                "{} seed {seed}: restricted {restricted:.4} unrestricted {plain:.4}",
                cfg.kind()
            );
            assert!(
                restricted < plain,
                "{}: restricted {restricted} vs unrestricted {plain}",
                cfg.kind()
            );
        }
    }
}

fn max_diff(a: &VarMap, b: &VarMap) -> f32 {
    let (a, b) = (a.data().lock().unwrap(), b.data().lock().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter()
        .map(|(k, v)| {
            let d = (v.as_tensor() - b[k].as_tensor()).unwrap().abs().unwrap();
            d.flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .fold(0.0, f32::max)
}

#[test]
fn prolongation_inverts_restriction_and_copies_the_rest() {
    let (r, p) = (Restriction::Average, Prolongation::Bilinear);
    let cfg = ModelConfig::Resnet(ResnetConfig {
        hidden: 4,
        ..Default::default()
    });
    let fine = seeded(&cfg, 7);
    let coarse = restrict_network(&fine, r, p).unwrap();
    assert!(
        max_diff(&fine, &coarse) > 1e-2,
        "restriction changed nothing"
    );
    let back = prolong_network_with(&coarse, r, p, 0.0).unwrap();
    assert!(
        max_diff(&fine, &back) < 1e-4,
        "P(R(w)) differs from w by {}",
        max_diff(&fine, &back)
    );
    // Everything but the 3x3 stencils is copied exactly, into new variables.
    let (f, c) = (fine.data().lock().unwrap(), coarse.data().lock().unwrap());
    for (name, var) in f.iter() {
        let same = (var.as_tensor() - c[name].as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap();
        let same = same.to_scalar::<f32>().unwrap() == 0.0;
        assert_eq!(same, var.dims().len() != 4 || var.dims()[2] == 1, "{name}");
    }
    // New variables: zeroing the copy leaves the original alone.
    let bias = f.keys().find(|k| k.ends_with("bias")).unwrap().clone();
    let original = f[&bias].as_tensor().to_vec1::<f32>().unwrap();
    c[&bias]
        .set(&c[&bias].as_tensor().zeros_like().unwrap())
        .unwrap();
    assert_eq!(f[&bias].as_tensor().to_vec1::<f32>().unwrap(), original);
}

#[test]
fn mesh_free_layers_pass_unchanged_and_other_kernels_transfer() {
    let (r, p) = (Restriction::Average, Prolongation::Bilinear);
    let mfc = ModelConfig::Resnet(ResnetConfig {
        hidden: 4,
        conv: ConvKind::Mfc,
        ..Default::default()
    });
    let fine = seeded(&mfc, 3);
    assert_eq!(
        max_diff(&fine, &restrict_network(&fine, r, p).unwrap()),
        0.0
    );
    // ESPCN's 5x5 first layer goes through grids' general closed form and back.
    let espcn = ModelConfig::Espcn(EspcnConfig {
        hidden: vec![4, 4],
        ..Default::default()
    });
    let fine = seeded(&espcn, 3);
    let back = prolong_network_with(&restrict_network(&fine, r, p).unwrap(), r, p, 0.0).unwrap();
    assert!(max_diff(&fine, &back) < 1e-3, "{}", max_diff(&fine, &back));
}

/// A one-stencil network `{"w": [1, 1, 3, 3]}` holding `s`.
fn stencil_net(s: &[f64; 9]) -> VarMap {
    let varmap = VarMap::new();
    let t = Tensor::from_vec(s.map(|v| v as f32).to_vec(), (1, 1, 3, 3), &Device::Cpu).unwrap();
    varmap
        .data()
        .lock()
        .unwrap()
        .insert("w".into(), candle_core::Var::from_tensor(&t).unwrap());
    varmap
}

fn stencil_of(varmap: &VarMap) -> [f64; 9] {
    let v = varmap.data().lock().unwrap()["w"]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    std::array::from_fn(|i| v[i] as f64)
}

/// Symbol of a 3x3 stencil at the fine Nyquist frequency `(π, π)`: `Σ s_ij (-1)^(i+j)`.
fn nyquist_gain(s: &[f64; 9]) -> f64 {
    (0..9)
        .map(|i| s[i] * if (i / 3 + i % 3) % 2 == 0 { 1.0 } else { -1.0 })
        .sum()
}

/// The failure mode of exact Galerkin prolongation (002 eq. 4.14): the coarse identity stencil
/// has the unique fine solution `v ⊗ v`, `v = M^{-1} e_0 = [-1/2, 2, -1/2]` (by hand from
/// `M = [[1/2,1/8,0],[1/2,3/4,1/2],[0,1/8,1/2]]`), a sharpening filter with Nyquist gain 9.
/// The damped hot-start prolongation keeps the gain near 1.
#[test]
fn exact_prolongation_turns_the_identity_into_a_ninefold_sharpener() {
    let (r, p) = (Restriction::Average, Prolongation::Bilinear);
    let delta = stencil_net(&[0., 0., 0., 0., 1., 0., 0., 0., 0.]);
    let exact = stencil_of(&prolong_network_with(&delta, r, p, 0.0).unwrap());
    let v = [-0.5, 2.0, -0.5];
    for i in 0..9 {
        assert!((exact[i] - v[i / 3] * v[i % 3]).abs() < 1e-5, "{exact:?}");
    }
    assert!((nyquist_gain(&exact) - 9.0).abs() < 1e-4);
    let damped = stencil_of(&prolong_network(&delta, r, p).unwrap());
    eprintln!(
        "Nyquist gain: exact {:.3}, damped {:.3}",
        nyquist_gain(&exact),
        nyquist_gain(&damped)
    );
    assert!(nyquist_gain(&damped).abs() < 3.0, "{damped:?}");
    assert!(prolong_network_with(&delta, r, p, -1.0).is_err());
}

/// Periodic 3x3 cross-correlation of an `n x n` image (f64 reference).
fn conv(u: &[f64], n: usize, s: &[f64; 9]) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            for (k, w) in s.iter().enumerate() {
                let (a, b) = ((i + n + k / 3 - 1) % n, (j + n + k % 3 - 1) % n);
                out[i * n + j] += w * u[a * n + b];
            }
        }
    }
    out
}

/// Clean images (sums of low Fourier modes sampled cell-centred on the unit square) and
/// their noisy copies (white noise of std `sigma` per pixel, as in the denoising task).
fn denoise_pairs(n: usize, count: usize, sigma: f64, seed: u64) -> Vec<(Vec<f64>, Vec<f64>)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let modes: Vec<(f64, f64, f64, f64)> = (0..4)
                .map(|_| {
                    let (kx, ky) = (rng.random_range(0..4) as f64, rng.random_range(0..4) as f64);
                    (kx, ky, rng.random::<f64>() * 6.3, rng.random::<f64>() - 0.5)
                })
                .collect();
            let clean: Vec<f64> = (0..n * n)
                .map(|idx| {
                    let (y, x) = ((idx / n) as f64 + 0.5, (idx % n) as f64 + 0.5);
                    let (x, y) = (x / n as f64, y / n as f64);
                    let tau = 2.0 * std::f64::consts::PI;
                    modes
                        .iter()
                        .map(|&(kx, ky, ph, a)| a * (tau * (kx * x + ky * y) + ph).sin())
                        .sum()
                })
                .collect();
            let noisy = clean
                .iter()
                .map(|c| {
                    let (a, b): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                    c + sigma * (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
                })
                .collect();
            (clean, noisy)
        })
        .collect()
}

/// Least-squares 3x3 denoising stencil (normal equations, Gaussian elimination in f64).
fn fit_stencil(pairs: &[(Vec<f64>, Vec<f64>)], n: usize) -> [f64; 9] {
    let unit = |k: usize| std::array::from_fn::<f64, 9, _>(|i| (i == k) as u8 as f64);
    let mut a = [[0.0; 10]; 9];
    for (clean, noisy) in pairs {
        let shifted: Vec<Vec<f64>> = (0..9).map(|k| conv(noisy, n, &unit(k))).collect();
        for i in 0..9 {
            for j in 0..9 {
                a[i][j] += shifted[i]
                    .iter()
                    .zip(&shifted[j])
                    .map(|(x, y)| x * y)
                    .sum::<f64>();
            }
            a[i][9] += shifted[i]
                .iter()
                .zip(clean)
                .map(|(x, y)| x * y)
                .sum::<f64>();
        }
    }
    for c in 0..9 {
        let piv = (c..9)
            .max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs()))
            .unwrap();
        a.swap(c, piv);
        let pivot_row = a[c];
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot_row[c];
                for (x, p) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                    *x -= f * p;
                }
            }
        }
    }
    std::array::from_fn(|i| a[i][9] / a[i][i])
}

fn mse(pairs: &[(Vec<f64>, Vec<f64>)], n: usize, s: &[f64; 9]) -> f64 {
    let total: f64 = pairs
        .iter()
        .map(|(clean, noisy)| {
            conv(noisy, n, s)
                .iter()
                .zip(clean)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
        })
        .sum();
    total / (pairs.len() * n * n) as f64
}

/// A one-layer denoiser trained (least squares) on 16x16 noisy images, then hot-started on
/// 32x32 images of the same kind: the damped Galerkin prolongation's fine loss is within
/// 1.5x the identity transfer's, while the exact solve (002 eq. 4.14) is far worse.
#[test]
fn damped_galerkin_hot_start_of_a_coarse_trained_denoiser_is_close_to_identity() {
    let (r, p) = (Restriction::Average, Prolongation::Bilinear);
    let coarse = fit_stencil(&denoise_pairs(16, 24, 0.3, 1), 16);
    let fine_data = denoise_pairs(32, 24, 0.3, 2);
    let net = stencil_net(&coarse);
    let identity = mse(&fine_data, 32, &coarse);
    let exact = mse(
        &fine_data,
        32,
        &stencil_of(&prolong_network_with(&net, r, p, 0.0).unwrap()),
    );
    let damped = mse(
        &fine_data,
        32,
        &stencil_of(&prolong_network(&net, r, p).unwrap()),
    );
    let noisy = mse(&fine_data, 32, &[0., 0., 0., 0., 1., 0., 0., 0., 0.]);
    eprintln!("fine MSE: noisy input {noisy:.4}, identity {identity:.4}, exact Galerkin {exact:.4}, damped {damped:.4}");
    assert!(
        identity < noisy,
        "the coarse-trained stencil does not denoise"
    );
    assert!(
        exact > 2.0 * identity,
        "exact Galerkin no longer amplifies noise"
    );
    assert!(
        damped < 1.5 * identity,
        "damped {damped} vs identity {identity}"
    );
}

/// The in-place hot start writes exactly what [`prolong_network`] returns into the same
/// variables (so a model and an optimizer holding them see the fine-mesh weights).
#[test]
fn prolong_in_place_equals_prolong_network() {
    let (r, p) = (Restriction::Average, Prolongation::Bilinear);
    let net = stencil_net(&[0.1, -0.2, 0.3, 0.0, 1.0, 0.5, -0.4, 0.2, 0.05]);
    let held = net.data().lock().unwrap()["w"].clone();
    let expected = stencil_of(&prolong_network(&net, r, p).unwrap());
    prolong_in_place(&net, r, p).unwrap();
    assert_eq!(stencil_of(&net), expected);
    let via_held = held
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(via_held[4] as f64, expected[4]);
}
