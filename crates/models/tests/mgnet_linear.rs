//! MgNet with fixed A, B, identity sigma and no batch norm is a linear multigrid-like iteration
//! that can be checked by hand (004: `u <- u + B * (f - A * u)`, `u' = Pi *_2 u`,
//! `f' = R *_2 (f - A u) + A' u'`).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::{build, Activation, ConvKind, MgnetConfig, ModelConfig};

fn linear_mgnet(smoothings: Vec<usize>) -> (Box<dyn models::Model>, VarMap) {
    let cfg = ModelConfig::Mgnet(MgnetConfig {
        in_channels: 1,
        classes: 1,
        channels: vec![1; smoothings.len()],
        smoothings,
        activation: Activation::Identity,
        batch_norm: false,
        conv: ConvKind::Standard,
    });
    let varmap = VarMap::new();
    let net = build(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    set(&varmap, "head.weight", &[1.0], &[1, 1]);
    set(&varmap, "head.bias", &[0.0], &[1]);
    (net, varmap)
}

fn set(varmap: &VarMap, name: &str, values: &[f32], shape: &[usize]) {
    let data = varmap.data().lock().unwrap();
    let var = data
        .get(name)
        .unwrap_or_else(|| panic!("no variable {name}"));
    var.set(&Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap())
        .unwrap();
}

/// A 3x3 stencil with only its centre `c`.
fn centre(c: f32) -> [f32; 9] {
    [0., 0., 0., 0., c, 0., 0., 0., 0.]
}

fn logit(net: &dyn models::Model, x: &[f32], n: usize) -> f32 {
    let x = Tensor::from_vec(x.to_vec(), (1, 1, n, n), &Device::Cpu).unwrap();
    net.forward(&x, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0]
}

#[test]
fn one_level_pointwise_operators_give_richardson() {
    // A = a, B = b: u_k = (1 - (1 - ab)^k) / a * x, and the head averages it.
    let (a, b, k) = (0.5f32, 0.8f32, 3);
    let (net, vm) = linear_mgnet(vec![k]);
    set(&vm, "theta.weight", &centre(1.0), &[1, 1, 3, 3]);
    set(&vm, "levels.0.a.weight", &centre(a), &[1, 1, 3, 3]);
    set(&vm, "levels.0.b.weight", &centre(b), &[1, 1, 3, 3]);
    let x: Vec<f32> = (0..16).map(|i| i as f32 / 4.0).collect();
    let mean = x.iter().sum::<f32>() / 16.0;
    // 1 - (1 - 0.4)^3 = 0.784, / 0.5 = 1.568.
    let expected = 1.568 * mean;
    assert!((logit(net.as_ref(), &x, 4) - expected).abs() < 1e-5);
}

#[test]
fn two_levels_with_injection_by_hand() {
    // Level 1, one step from u = 0: u = b x. Residual (1 - ab) x. Injection Pi = R = centre tap
    // with stride 2 picks x[2i, 2j]: u' = b x_I, f' = (1 - ab) x_I + a b x_I = x_I.
    // Level 2, one step: u'' = b x_I + b (x_I - a b x_I) = b (2 - ab) x_I = 1.28 x_I.
    let (a, b) = (0.5f32, 0.8f32);
    let (net, vm) = linear_mgnet(vec![1, 1]);
    set(&vm, "theta.weight", &centre(1.0), &[1, 1, 3, 3]);
    for l in 0..2 {
        set(
            &vm,
            &format!("levels.{l}.a.weight"),
            &centre(a),
            &[1, 1, 3, 3],
        );
        set(
            &vm,
            &format!("levels.{l}.b.weight"),
            &centre(b),
            &[1, 1, 3, 3],
        );
    }
    set(&vm, "transitions.0.pi.weight", &centre(1.0), &[1, 1, 3, 3]);
    set(&vm, "transitions.0.r.weight", &centre(1.0), &[1, 1, 3, 3]);
    let x = [
        1., 9., 2., 9., 9., 9., 9., 9., 3., 9., 4., 9., 9., 9., 9., 9.,
    ];
    // x_I = [1, 2, 3, 4], mean 2.5.
    assert!((logit(net.as_ref(), &x, 4) - 1.28 * 2.5).abs() < 1e-5);
}

/// Zero-padded 3x3 cross-correlation on an n x n grid, in f64 (independent reference).
fn conv3(s: &[f32; 9], u: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            for (k, &w) in s.iter().enumerate() {
                let (ii, jj) = (
                    i as isize + k as isize / 3 - 1,
                    j as isize + k as isize % 3 - 1,
                );
                if (0..n as isize).contains(&ii) && (0..n as isize).contains(&jj) {
                    out[i * n + j] += f64::from(w) * u[ii as usize * n + jj as usize];
                }
            }
        }
    }
    out
}

#[test]
fn one_level_stencils_match_a_dense_f64_iteration() {
    let n = 6;
    let theta = [0.0, 0.1, 0.0, 0.1, 1.0, 0.1, 0.0, 0.1, 0.0];
    let a = [0.0, -0.25, 0.0, -0.25, 1.5, -0.25, 0.0, -0.25, 0.0];
    let b = [0.05, 0.1, 0.05, 0.1, 0.4, 0.1, 0.05, 0.1, 0.05];
    let (net, vm) = linear_mgnet(vec![3]);
    set(&vm, "theta.weight", &theta, &[1, 1, 3, 3]);
    set(&vm, "levels.0.a.weight", &a, &[1, 1, 3, 3]);
    set(&vm, "levels.0.b.weight", &b, &[1, 1, 3, 3]);
    let x: Vec<f32> = (0..n * n)
        .map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.3)
        .collect();
    let f = conv3(
        &theta,
        &x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        n,
    );
    let mut u = vec![0.0; n * n];
    for _ in 0..3 {
        let au = conv3(&a, &u, n);
        let r: Vec<f64> = f.iter().zip(&au).map(|(f, au)| f - au).collect();
        u = u.iter().zip(conv3(&b, &r, n)).map(|(u, d)| u + d).collect();
    }
    let expected = u.iter().sum::<f64>() / (n * n) as f64;
    assert!((f64::from(logit(net.as_ref(), &x, n)) - expected).abs() < 1e-5);
}
