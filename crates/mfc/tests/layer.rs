//! The MFC layer: finite-difference gradients of every parameter and the input, a dense complex
//! f64 reference of the whole layer, Hermitian symmetry and the Nyquist convention.

mod common;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::VarMap;
use common::{layer, named_vars, randn, rel_err, set_var, to_vec, Rng};
use mfc::{Backend, Mfc, MfcConfig, Wavenumbers};
use proptest::prelude::*;
use std::f64::consts::PI;

/// Random parameters in ranges where every factor of the symbol matters on meshes of ~8 pixels.
fn randomise(varmap: &VarMap, rng: &mut Rng, c_in: usize, c_out: usize) {
    set_var(varmap, "weight", rng.normals(c_out * c_in));
    set_var(varmap, "bias", rng.normals(c_out));
    let mut u =
        |lo: f64, hi: f64, n: usize| (0..n).map(|_| rng.uniform(lo, hi)).collect::<Vec<_>>();
    set_var(varmap, "alpha", u(-1.0, 1.0, c_out));
    set_var(varmap, "d", u(-0.2, 0.2, 2 * c_out));
    set_var(varmap, "phi", u(0.0, PI, c_out));
    set_var(varmap, "a", u(-0.5, 0.5, c_out));
    set_var(varmap, "b", u(-0.5, 0.5, c_out));
    set_var(varmap, "tau", u(1e-3f64.ln(), 1e-2f64.ln(), c_out));
}

fn loss(layer: &Mfc, x: &Tensor, r: &Tensor) -> Tensor {
    (layer.forward(x).unwrap() * r).unwrap().sum_all().unwrap()
}

/// Check `grad` against central differences of `f` over every entry of `var`.
fn check_fd(name: &str, var: &Var, grad: &Tensor, f: &dyn Fn() -> f64) {
    let base = to_vec(var.as_tensor());
    let g = to_vec(grad);
    let scale = g.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let eps = 1e-5;
    for i in 0..base.len() {
        let mut p = base.clone();
        p[i] = base[i] + eps;
        var.set(&Tensor::from_vec(p.clone(), var.shape(), &Device::Cpu).unwrap())
            .unwrap();
        let lp = f();
        p[i] = base[i] - eps;
        var.set(&Tensor::from_vec(p, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
        let lm = f();
        let fd = (lp - lm) / (2.0 * eps);
        assert!(
            (fd - g[i]).abs() <= 1e-6 * scale,
            "{name}[{i}]: finite difference {fd} vs autograd {}",
            g[i]
        );
    }
    var.set(&Tensor::from_vec(base, var.shape(), &Device::Cpu).unwrap())
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// f64 central differences agree with autograd for the input and every parameter
    /// (M, bias, alpha, d, phi, a, b, tau), on both backends, even and odd meshes.
    #[test]
    fn gradients_match_finite_differences(
        h in 2usize..9, w in 2usize..9, c_in in 1usize..3, c_out in 1usize..3,
        seed in any::<u64>(), matmul in any::<bool>(),
    ) {
        let backend = if matmul { Backend::Matmul } else { Backend::Fft };
        let cfg = MfcConfig { backend, ..MfcConfig::default() };
        let (varmap, layer) = layer(c_in, c_out, &cfg, DType::F64);
        let mut rng = Rng::new(seed);
        randomise(&varmap, &mut rng, c_in, c_out);
        let x = Var::from_tensor(&randn(&mut rng, &[2, c_in, h, w], DType::F64)).unwrap();
        let r = randn(&mut rng, &[2, c_out, h, w], DType::F64);
        let grads = loss(&layer, x.as_tensor(), &r).backward().unwrap();
        let f = || loss(&layer, x.as_tensor(), &r).to_scalar::<f64>().unwrap();
        check_fd("input", &x, grads.get(x.as_tensor()).unwrap(), &f);
        let vars = named_vars(&varmap);
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        prop_assert_eq!(names, vec!["a", "alpha", "b", "bias", "d", "phi", "tau", "weight"]);
        for (name, var) in &vars {
            check_fd(name, var, grads.get(var.as_tensor()).unwrap(), &f);
        }
    }
}

/// Dense complex f64 reference of one output plane: `y = IDFT(S_full * DFT(v))` over the full
/// spectrum; returns (real part, max |imaginary part|).
fn dense_apply(v: &[f64], s_re: &[f64], s_im: &[f64], h: usize, w: usize) -> (Vec<f64>, f64) {
    let idx = |i: usize, n: usize| i as f64 / n as f64;
    let mut spec = vec![(0.0, 0.0); h * w];
    for m1 in 0..h {
        for m2 in 0..w {
            let (mut a, mut b) = (0.0, 0.0);
            for y in 0..h {
                for x in 0..w {
                    let th = -2.0 * PI * (idx(m1 * y, h) + idx(m2 * x, w));
                    a += v[y * w + x] * th.cos();
                    b += v[y * w + x] * th.sin();
                }
            }
            let (sr, si) = (s_re[m1 * w + m2], s_im[m1 * w + m2]);
            spec[m1 * w + m2] = (a * sr - b * si, a * si + b * sr);
        }
    }
    let (mut out, mut max_im) = (vec![0.0; h * w], 0.0f64);
    for y in 0..h {
        for x in 0..w {
            let (mut a, mut b) = (0.0, 0.0);
            for m1 in 0..h {
                for m2 in 0..w {
                    let th = 2.0 * PI * (idx(m1 * y, h) + idx(m2 * x, w));
                    let (zr, zi) = spec[m1 * w + m2];
                    a += zr * th.cos() - zi * th.sin();
                    b += zr * th.sin() + zi * th.cos();
                }
            }
            out[y * w + x] = a / (h * w) as f64;
            max_im = max_im.max((b / (h * w) as f64).abs());
        }
    }
    (out, max_im)
}

/// The layer on both backends (f32) equals the dense full-spectrum reference (f64) with the
/// symbol evaluated on all modes; the reference's imaginary part vanishes (Hermitian symbol).
#[test]
fn layer_matches_dense_reference_and_is_real() {
    let mut rng = Rng::new(7);
    for (h, w) in [(6, 6), (7, 5), (8, 5), (5, 8), (1, 4)] {
        let (c_in, c_out) = (2, 3);
        let (varmap, layer64) = layer(c_in, c_out, &MfcConfig::default(), DType::F64);
        randomise(&varmap, &mut rng, c_in, c_out);
        let x = randn(&mut rng, &[1, c_in, h, w], DType::F64);
        // The embedding M x + b, computed independently.
        let (wv, bv, xv) = (
            to_vec(
                &varmap
                    .get(
                        (c_out, c_in, 1, 1),
                        "weight",
                        candle_nn::Init::Const(0.),
                        DType::F64,
                        &Device::Cpu,
                    )
                    .unwrap(),
            ),
            to_vec(
                &varmap
                    .get(
                        c_out,
                        "bias",
                        candle_nn::Init::Const(0.),
                        DType::F64,
                        &Device::Cpu,
                    )
                    .unwrap(),
            ),
            to_vec(&x),
        );
        let k = Wavenumbers::full(h, w, (1.0, 1.0), DType::F64, &Device::Cpu).unwrap();
        let (sr, si) = layer64.params().symbol(&k).unwrap();
        let (sr, si) = (to_vec(&sr), to_vec(&si));
        let mut want = vec![];
        for o in 0..c_out {
            let v: Vec<f64> = (0..h * w)
                .map(|p| {
                    bv[o]
                        + (0..c_in)
                            .map(|i| wv[o * c_in + i] * xv[i * h * w + p])
                            .sum::<f64>()
                })
                .collect();
            let (y, max_im) = dense_apply(
                &v,
                &sr[o * h * w..(o + 1) * h * w],
                &si[o * h * w..(o + 1) * h * w],
                h,
                w,
            );
            assert!(max_im < 1e-12, "{h}x{w}: imaginary output {max_im:e}");
            want.extend(y);
        }
        for b in [Backend::Fft, Backend::Matmul] {
            let got64 = to_vec(&layer64.clone().with_backend(b).forward(&x).unwrap());
            assert!(rel_err(&got64, &want) < 1e-12, "{b:?} f64 {h}x{w}");
            let (vm32, l32) = layer(
                c_in,
                c_out,
                &MfcConfig {
                    backend: b,
                    ..MfcConfig::default()
                },
                DType::F32,
            );
            for (name, var) in named_vars(&varmap) {
                set_var(&vm32, &name, to_vec(var.as_tensor()));
            }
            let got = to_vec(&l32.forward(&x.to_dtype(DType::F32).unwrap()).unwrap());
            let e = rel_err(&got, &want);
            assert!(e < 1e-5, "{b:?} f32 {h}x{w}: rel err {e:e}");
        }
    }
}

/// The full-spectrum symbol is Hermitian, `S(-m) = conj S(m)`, on even and odd meshes, including
/// the Nyquist lines (where the odd terms are dropped).
#[test]
fn symbol_is_hermitian() {
    let mut rng = Rng::new(8);
    for (h, w) in [(8, 8), (7, 9), (6, 5), (2, 2)] {
        let (varmap, l) = layer(1, 4, &MfcConfig::default(), DType::F64);
        randomise(&varmap, &mut rng, 1, 4);
        let k = Wavenumbers::full(h, w, (1.0, 1.0), DType::F64, &Device::Cpu).unwrap();
        let (sr, si) = l.params().symbol(&k).unwrap();
        let (sr, si) = (to_vec(&sr), to_vec(&si));
        for c in 0..4 {
            for i in 0..h {
                for j in 0..w {
                    let (p, q) = (
                        c * h * w + i * w + j,
                        c * h * w + ((h - i) % h) * w + (w - j) % w,
                    );
                    assert!(
                        (sr[p] - sr[q]).abs() < 1e-12 && (si[p] + si[q]).abs() < 1e-12,
                        "{h}x{w} c{c} ({i},{j})"
                    );
                }
            }
        }
    }
}

/// Nyquist handling: on an even mesh the alternating mode `(-1)^j` is annihilated by the pure
/// derivative part and scaled by `alpha exp(-t Sigma_xx k_N^2)` by the rest; on an odd mesh the
/// highest mode is not special and the derivative acts on it.
#[test]
fn nyquist_mode_handling() {
    let (varmap, l) = layer(
        1,
        1,
        &MfcConfig {
            bias: false,
            ..MfcConfig::default()
        },
        DType::F64,
    );
    set_var(&varmap, "weight", vec![1.0]);
    set_var(&varmap, "phi", vec![0.3]);
    set_var(&varmap, "a", vec![0.2]);
    set_var(&varmap, "b", vec![-0.4]);
    set_var(&varmap, "tau", vec![(2e-3f64).ln()]);
    let n = 8;
    let alt: Vec<f64> = (0..n * n)
        .map(|p| if (p % n) % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let x = Tensor::from_vec(alt.clone(), (1, 1, n, n), &Device::Cpu).unwrap();
    for b in [Backend::Fft, Backend::Matmul] {
        let l = l.clone().with_backend(b);
        set_var(&varmap, "alpha", vec![0.0]);
        set_var(&varmap, "d", vec![0.3, -0.2]);
        let y = to_vec(&l.forward(&x).unwrap());
        assert!(
            y.iter().all(|v| v.abs() < 1e-12),
            "{b:?}: derivative of the Nyquist mode must vanish"
        );
        set_var(&varmap, "alpha", vec![1.5]);
        let (c, s) = (0.3f64.cos(), 0.3f64.sin());
        let sxx = c * c * 0.2f64.exp() + s * s * (-0.4f64).exp();
        let kn = PI * n as f64;
        let gain = 1.5 * (-2e-3 * sxx * kn * kn).exp();
        let y = to_vec(&l.forward(&x).unwrap());
        let want: Vec<f64> = alt.iter().map(|v| gain * v).collect();
        assert!(rel_err(&y, &want) < 1e-12, "{b:?}: Nyquist gain");
    }
    // Odd mesh: the pure derivative does act on the highest mode.
    let n = 7;
    let x = Tensor::from_vec(
        (0..n * n)
            .map(|p| (2.0 * PI * 3.0 * (p % n) as f64 / n as f64).cos())
            .collect::<Vec<_>>(),
        (1, 1, n, n),
        &Device::Cpu,
    )
    .unwrap();
    set_var(&varmap, "alpha", vec![0.0]);
    let y = to_vec(&l.forward(&x).unwrap());
    assert!(y.iter().map(|v| v.abs()).fold(0.0, f64::max) > 1e-3);
}

/// Shapes: any H, W (even, odd, non-square); mesh-aware entry point; errors instead of panics.
#[test]
fn shapes_and_errors() {
    let (_vm, l) = layer(3, 5, &MfcConfig::default(), DType::F32);
    for (h, w) in [(1, 1), (3, 17), (16, 9), (32, 32)] {
        let x = Tensor::zeros((2, 3, h, w), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(l.forward(&x).unwrap().dims(), &[2, 5, h, w]);
        assert_eq!(
            l.forward_with_mesh(&x, 1.0 / 64.0).unwrap().dims(),
            &[2, 5, h, w]
        );
    }
    assert!(l
        .forward(&Tensor::zeros((2, 4, 8, 8), DType::F32, &Device::Cpu).unwrap())
        .is_err());
    let vm = VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    assert!(Mfc::new(0, 3, &MfcConfig::default(), vb.clone()).is_err());
    assert!(Mfc::new(
        1,
        3,
        &MfcConfig {
            init_width: (3.0, 1.0),
            ..MfcConfig::default()
        },
        vb
    )
    .is_err());
    assert!("fft".parse::<Backend>().is_ok() && "gpu".parse::<Backend>().is_err());
}

/// `forward_with_mesh(x, 1/n)` equals `forward` on `n x n`, and on a crop keeps the pixel size.
#[test]
fn mesh_size_entry_point() {
    let mut rng = Rng::new(9);
    let (varmap, l) = layer(1, 2, &MfcConfig::default(), DType::F64);
    randomise(&varmap, &mut rng, 1, 2);
    let x = randn(&mut rng, &[1, 1, 12, 12], DType::F64);
    let a = to_vec(&l.forward(&x).unwrap());
    let b = to_vec(&l.forward_with_mesh(&x, 1.0 / 12.0).unwrap());
    assert!(rel_err(&b, &a) < 1e-14);
    let c = to_vec(&l.forward_with_mesh(&x, 1.0 / 24.0).unwrap());
    assert!(
        rel_err(&c, &a) > 1e-3,
        "a different mesh size must change the discrete kernel"
    );
}
