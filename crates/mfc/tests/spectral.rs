//! The FNO-style spectral convolution against a dense f64 reference, across backends, with
//! finite-difference gradients.

mod common;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use common::{dense_irfft2, dense_rfft2, named_vars, randn, rel_err, to_vec, Rng};
use mfc::{Backend, SpectralConv};

fn spectral(c_in: usize, c_out: usize, modes: usize) -> (VarMap, SpectralConv) {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
    let l = SpectralConv::new(c_in, c_out, modes, vb).unwrap();
    (vm, l)
}

/// Dense reference: rfft2 each input plane, keep `-modes <= m_y < modes, 0 <= m_x < modes`, mix
/// with the complex weights, inverse.
fn reference(
    x: &[f64],
    wr: &[f64],
    wi: &[f64],
    (ci, co, modes): (usize, usize, usize),
    h: usize,
    w: usize,
) -> Vec<f64> {
    let wh = w / 2 + 1;
    let specs: Vec<(Vec<f64>, Vec<f64>)> = (0..ci)
        .map(|i| dense_rfft2(&x[i * h * w..(i + 1) * h * w], h, w))
        .collect();
    let mut out = vec![];
    for o in 0..co {
        let (mut zr, mut zi) = (vec![0.0; h * wh], vec![0.0; h * wh]);
        for row in 0..h {
            let my = if 2 * row < h {
                row as i64
            } else {
                row as i64 - h as i64
            };
            if my >= modes as i64 || my < -(modes as i64) {
                continue;
            }
            let wrow = if my >= 0 {
                my as usize
            } else {
                (2 * modes as i64 + my) as usize
            };
            for col in 0..wh.min(modes) {
                for (i, (sr, si)) in specs.iter().enumerate() {
                    let widx = ((i * co + o) * 2 * modes + wrow) * modes + col;
                    let (a, b, c, d) = (sr[row * wh + col], si[row * wh + col], wr[widx], wi[widx]);
                    zr[row * wh + col] += a * c - b * d;
                    zi[row * wh + col] += a * d + b * c;
                }
            }
        }
        out.extend(dense_irfft2(&zr, &zi, h, w));
    }
    out
}

#[test]
fn spectral_conv_matches_dense_reference() {
    let mut rng = Rng::new(21);
    let (ci, co, modes) = (2, 3, 3);
    for (h, w) in [(8, 8), (7, 9), (4, 5), (12, 6)] {
        let (vm, layer) = spectral(ci, co, modes);
        let x = randn(&mut rng, &[1, ci, h, w], DType::F64);
        let get = |n: &str| to_vec(vm.data().lock().unwrap().get(n).unwrap().as_tensor());
        let want = reference(
            &to_vec(&x),
            &get("weight_re"),
            &get("weight_im"),
            (ci, co, modes),
            h,
            w,
        );
        for b in [Backend::Fft, Backend::Matmul] {
            let got = to_vec(&layer.clone().with_backend(b).forward(&x).unwrap());
            assert!(
                rel_err(&got, &want) < 1e-12,
                "{b:?} {h}x{w}: {:e}",
                rel_err(&got, &want)
            );
        }
    }
}

#[test]
fn spectral_conv_gradients_match_finite_differences() {
    let mut rng = Rng::new(22);
    let (vm, layer) = spectral(2, 2, 2);
    let x = Var::from_tensor(&randn(&mut rng, &[2, 2, 6, 5], DType::F64)).unwrap();
    let r = randn(&mut rng, &[2, 2, 6, 5], DType::F64);
    let loss = || {
        (layer.forward(x.as_tensor()).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let grads = loss().backward().unwrap();
    let mut vars = named_vars(&vm);
    vars.push(("input".into(), x.clone()));
    for (name, var) in &vars {
        let g = to_vec(grads.get(var.as_tensor()).unwrap());
        let base = to_vec(var.as_tensor());
        for i in 0..base.len() {
            let eval = |delta: f64| {
                let mut p = base.clone();
                p[i] += delta;
                var.set(&Tensor::from_vec(p, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss().to_scalar::<f64>().unwrap()
            };
            let fd = (eval(1e-5) - eval(-1e-5)) / 2e-5;
            assert!(
                (fd - g[i]).abs() < 1e-7 * (1.0 + g[i].abs()),
                "{name}[{i}]: {fd} vs {}",
                g[i]
            );
        }
        var.set(&Tensor::from_vec(base, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
}

#[test]
fn spectral_conv_shapes_and_errors() {
    let (_vm, layer) = spectral(3, 4, 8);
    for (h, w) in [(1, 1), (3, 4), (16, 16), (40, 33)] {
        let x = Tensor::zeros((2, 3, h, w), DType::F64, &Device::Cpu).unwrap();
        assert_eq!(layer.forward(&x).unwrap().dims(), &[2, 4, h, w]);
    }
    assert!(layer
        .forward(&Tensor::zeros((1, 2, 8, 8), DType::F64, &Device::Cpu).unwrap())
        .is_err());
    let vm = VarMap::new();
    assert!(SpectralConv::new(
        3,
        4,
        0,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)
    )
    .is_err());
}
