//! The fused CPU ops of backend (a) (`pointwise`, `symbol_product`, `symbol_irfft2`, the packed
//! transforms) against the unfused candle-op references, f64 finite differences for every input,
//! adjoint identities, and the fused layer against the unfused (matmul) one without a bias.

mod common;

use candle_core::{DType, Device, Module, Tensor, Var};
use common::{dot, layer, randn, rel_err, set_var, to_vec, Rng};
use mfc::fft::{irfft2, irfft2_packed, rfft2_packed};
use mfc::pointwise::pointwise;
use mfc::symbol_product::{symbol_irfft2, symbol_product};
use mfc::{Backend, MfcConfig, Spectrum, SymbolParams, Wavenumbers};
use proptest::prelude::*;
use std::f64::consts::PI;

/// Random symbol parameters for `c` channels (every factor matters on meshes of ~8 pixels).
fn params(rng: &mut Rng, c: usize, dtype: DType) -> SymbolParams {
    let mut u = |lo: f64, hi: f64, n: usize| {
        let v: Vec<f64> = (0..n).map(|_| rng.uniform(lo, hi)).collect();
        Tensor::from_vec(v, n, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    };
    SymbolParams {
        alpha: u(-1.0, 1.0, c),
        d: u(-0.2, 0.2, 2 * c).reshape((c, 2)).unwrap(),
        phi: u(0.0, PI, c),
        a: u(-0.5, 0.5, c),
        b: u(-0.5, 0.5, c),
        tau: u(1e-3f64.ln(), 1e-2f64.ln(), c),
    }
}

/// Unfused reference: the symbol from candle ops ([`SymbolParams::symbol`]) times the spectrum.
fn reference_product(z: &Tensor, p: &SymbolParams, w: usize, extent: (f64, f64)) -> Spectrum {
    let h = z.dim(3).unwrap();
    let k = Wavenumbers::half(h, w, extent, z.dtype(), &Device::Cpu).unwrap();
    let (sr, si) = p.symbol(&k).unwrap();
    let s = Spectrum {
        re: z.get(0).unwrap(),
        im: z.get(1).unwrap(),
    };
    s.mul(&sr, &si).unwrap()
}

/// Central differences (fourth order) of `f` over every entry of `var`, against `grad` (f64).
fn check_fd(name: &str, var: &Var, grad: &Tensor, f: &dyn Fn() -> f64) {
    let base = to_vec(var.as_tensor());
    let g = to_vec(grad);
    let scale = g.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let eps = 1e-5;
    for i in 0..base.len() {
        let at = |v: f64| {
            let mut p = base.clone();
            p[i] = v;
            var.set(&Tensor::from_vec(p, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            f()
        };
        // Fourth-order stencil: the symbol's k^2 ~ 1e3 makes second-order differences too coarse.
        let fd = (8.0 * (at(base[i] + eps) - at(base[i] - eps))
            - (at(base[i] + 2.0 * eps) - at(base[i] - 2.0 * eps)))
            / (12.0 * eps);
        assert!(
            (fd - g[i]).abs() <= 1e-6 * scale,
            "{name}[{i}]: finite difference {fd} vs autograd {}",
            g[i]
        );
    }
    var.set(&Tensor::from_vec(base, var.shape(), &Device::Cpu).unwrap())
        .unwrap();
}

const MESHES: [(usize, usize); 5] = [(1, 1), (5, 7), (8, 6), (9, 12), (16, 16)];

/// The fused symbol product (and with irfft2) equals the unfused candle-op chain, f64 to 1e-12
/// and f32 to 1e-5, on even, odd and non-square meshes and a non-unit domain.
#[test]
fn symbol_ops_match_unfused_reference() {
    let mut rng = Rng::new(7);
    let (n, c) = (3, 4);
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        for (h, w) in MESHES {
            for extent in [(1.0, 1.0), (0.5, 2.0)] {
                let p = params(&mut rng, c, dtype);
                let coef = p.coefficients().unwrap();
                let z = randn(&mut rng, &[2, n, c, h, w / 2 + 1], dtype);
                let want = reference_product(&z, &p, w, extent);
                let got = symbol_product(&z, &coef, w, extent).unwrap();
                let want_v: Vec<f64> = to_vec(&want.re)
                    .into_iter()
                    .chain(to_vec(&want.im))
                    .collect();
                let e = rel_err(&to_vec(&got), &want_v);
                assert!(
                    e < tol,
                    "{dtype:?} product {h}x{w} {extent:?}: rel err {e:e}"
                );
                let y = symbol_irfft2(&z, &coef, w, extent).unwrap();
                assert_eq!(y.dims(), &[n, c, h, w]);
                let e = rel_err(&to_vec(&y), &to_vec(&irfft2(&want, w).unwrap()));
                assert!(e < tol, "{dtype:?} product+irfft2 {h}x{w}: rel err {e:e}");
            }
        }
    }
}

/// On more than 2^14 values, where the work is split over worker threads by channel (5 channels
/// and 3 images: uneven chunks on 2 or 4 workers), the symbol ops equal the unfused reference
/// (forward) and the one-image calls, which stay on one thread (every gradient of
/// `symbol_irfft2`: the symbol product's backward and the threaded `rfft2` adjoint), in f64.
#[test]
fn threaded_symbol_ops_match_reference_and_one_image_calls() {
    let mut rng = Rng::new(11);
    let (n, c, h, w, extent) = (3, 5, 48, 47, (1.0, 0.5));
    let p = params(&mut rng, c, DType::F64);
    let coef = Var::from_tensor(&p.coefficients().unwrap()).unwrap();
    let z = randn(&mut rng, &[2, n, c, h, w / 2 + 1], DType::F64);
    let want = reference_product(&z, &p, w, extent);
    let want_v: Vec<f64> = to_vec(&want.re)
        .into_iter()
        .chain(to_vec(&want.im))
        .collect();
    let got = symbol_product(&z, coef.as_tensor(), w, extent).unwrap();
    let e = rel_err(&to_vec(&got), &want_v);
    assert!(e < 1e-12, "threaded product: rel err {e:e}");
    let y = symbol_irfft2(&z, coef.as_tensor(), w, extent).unwrap();
    let e = rel_err(&to_vec(&y), &to_vec(&irfft2(&want, w).unwrap()));
    assert!(e < 1e-12, "threaded product+irfft2: rel err {e:e}");

    let r = randn(&mut rng, &[n, c, h, w], DType::F64);
    // `(dz, dcoef)` of `sum(symbol_irfft2(z) * r)`.
    let grads = |z: &Tensor, r: &Tensor| {
        let zv = Var::from_tensor(z).unwrap();
        let y = symbol_irfft2(zv.as_tensor(), coef.as_tensor(), w, extent).unwrap();
        let g = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
        let dcoef = g.get(coef.as_tensor()).unwrap().clone();
        (g.get(zv.as_tensor()).unwrap().clone(), dcoef)
    };
    let (dz, dcoef) = grads(&z, &r);
    let per_image: Vec<_> = (0..n)
        .map(|i| grads(&z.narrow(1, i, 1).unwrap(), &r.narrow(0, i, 1).unwrap()))
        .collect();
    let dz_want = Tensor::cat(&per_image.iter().map(|g| &g.0).collect::<Vec<_>>(), 1).unwrap();
    let dcoef_want = per_image
        .iter()
        .map(|g| g.1.clone())
        .reduce(|a, b| (a + b).unwrap())
        .unwrap();
    let e = rel_err(&to_vec(&dz), &to_vec(&dz_want));
    assert!(e < 1e-12, "threaded dz: rel err {e:e}");
    let e = rel_err(&to_vec(&dcoef), &to_vec(&dcoef_want));
    assert!(e < 1e-10, "threaded dcoef: rel err {e:e}");
}

/// The packed transforms equal the Spectrum ones, and their backward passes are adjoints:
/// `<A x, y> = <x, A^T y>` with `A^T y` from autograd (f64).
#[test]
fn packed_transforms_match_and_are_adjoint() {
    let mut rng = Rng::new(11);
    for (h, w) in MESHES {
        let x = Var::from_tensor(&randn(&mut rng, &[2, 3, h, w], DType::F64)).unwrap();
        let zp = rfft2_packed(x.as_tensor()).unwrap();
        let zs = Backend::Fft.rfft2(x.as_tensor()).unwrap();
        let zs_v: Vec<f64> = to_vec(&zs.re).into_iter().chain(to_vec(&zs.im)).collect();
        assert!(rel_err(&to_vec(&zp), &zs_v) < 1e-14);
        let y = randn(&mut rng, zp.dims(), DType::F64);
        let g = (&zp * &y).unwrap().sum_all().unwrap().backward().unwrap();
        let lhs = dot(&to_vec(&zp), &to_vec(&y));
        let rhs = dot(
            &to_vec(x.as_tensor()),
            &to_vec(g.get(x.as_tensor()).unwrap()),
        );
        assert!(
            (lhs - rhs).abs() <= 1e-10 * lhs.abs().max(1.0),
            "rfft2 {h}x{w}: {lhs} vs {rhs}"
        );

        let z = Var::from_tensor(&randn(&mut rng, &[2, 2, 3, h, w / 2 + 1], DType::F64)).unwrap();
        let out = irfft2_packed(z.as_tensor(), w).unwrap();
        let s = Spectrum {
            re: z.as_tensor().get(0).unwrap(),
            im: z.as_tensor().get(1).unwrap(),
        };
        assert!(rel_err(&to_vec(&out), &to_vec(&irfft2(&s, w).unwrap())) < 1e-14);
        let r = randn(&mut rng, out.dims(), DType::F64);
        let g = (&out * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let lhs = dot(&to_vec(&out), &to_vec(&r));
        let rhs = dot(
            &to_vec(z.as_tensor()),
            &to_vec(g.get(z.as_tensor()).unwrap()),
        );
        assert!(
            (lhs - rhs).abs() <= 1e-10 * lhs.abs().max(1.0),
            "irfft2 {h}x{w}: {lhs} vs {rhs}"
        );
    }
}

/// The pointwise op equals `M u + b` from candle ops (f32 and f64).
#[test]
fn pointwise_matches_matmul_reference() {
    let mut rng = Rng::new(3);
    for (dtype, tol) in [(DType::F64, 1e-13), (DType::F32, 1e-6)] {
        // The last case has more than 2^14 output values, so its 5 images are split over the
        // worker threads (uneven chunks on 2, 3 or 4 workers).
        let cases = [
            (1, 1, 1, 1, 1),
            (2, 3, 5, 4, 7),
            (3, 8, 2, 9, 6),
            (5, 3, 4, 32, 30),
        ];
        for (n, ci, co, h, w) in cases {
            let x = randn(&mut rng, &[n, ci, h, w], dtype);
            let m = randn(&mut rng, &[co, ci], dtype);
            let b = randn(&mut rng, &[co], dtype);
            let want = m
                .broadcast_matmul(&x.reshape((n, ci, h * w)).unwrap())
                .unwrap()
                .reshape((n, co, h, w))
                .unwrap()
                .broadcast_add(&b.reshape((1, co, 1, 1)).unwrap())
                .unwrap();
            let got = pointwise(&x, &m, &b).unwrap();
            let e = rel_err(&to_vec(&got), &to_vec(&want));
            assert!(
                e < tol,
                "{dtype:?} pointwise {n}x{ci}->{co} {h}x{w}: rel err {e:e}"
            );
        }
    }
    let x = randn(&mut rng, &[1, 2, 3, 3], DType::F64);
    let m = randn(&mut rng, &[2, 3], DType::F64);
    let b = randn(&mut rng, &[2], DType::F64);
    assert!(pointwise(&x, &m, &b).is_err());
}

/// The fused layer (FFT backend) equals the unfused matmul-backend layer without a bias and with
/// `C_in != C_out`, forward and every gradient (f64).
#[test]
fn fused_layer_matches_unfused_without_bias() {
    let mut rng = Rng::new(5);
    let cfg = MfcConfig {
        bias: false,
        ..MfcConfig::default()
    };
    let (varmap, fused) = layer(3, 2, &cfg, DType::F64);
    set_var(&varmap, "tau", vec![1e-3f64.ln(), 5e-3f64.ln()]);
    set_var(
        &varmap,
        "d",
        rng.normals(4).iter().map(|v| 0.1 * v).collect(),
    );
    let unfused = fused.clone().with_backend(Backend::Matmul);
    let x = Var::from_tensor(&randn(&mut rng, &[2, 3, 6, 7], DType::F64)).unwrap();
    let r = randn(&mut rng, &[2, 2, 6, 7], DType::F64);
    let run = |l: &mfc::Mfc| {
        let y = l.forward(x.as_tensor()).unwrap();
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        (y, g)
    };
    let ((y1, g1), (y2, g2)) = (run(&fused), run(&unfused));
    assert!(rel_err(&to_vec(&y1), &to_vec(&y2)) < 1e-12);
    let vars = varmap.all_vars();
    for t in vars.iter().map(|v| v.as_tensor()).chain([x.as_tensor()]) {
        let (a, b) = (g1.get(t).unwrap(), g2.get(t).unwrap());
        assert!(
            rel_err(&to_vec(a), &to_vec(b)) < 1e-10,
            "gradient {:?}",
            t.dims()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// f64 central differences agree with the fused ops' backward passes for every entry of the
    /// spectrum and the coefficients (`symbol_product`, `symbol_irfft2`) and of `u, M, b`
    /// (`pointwise`), on even and odd meshes.
    #[test]
    fn fused_gradients_match_finite_differences(
        h in 1usize..7, w in 1usize..7, c in 1usize..3, seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let extent = (1.0, 1.5);
        let coef = Var::from_tensor(&params(&mut rng, c, DType::F64).coefficients().unwrap()).unwrap();
        let z = Var::from_tensor(&randn(&mut rng, &[2, 2, c, h, w / 2 + 1], DType::F64)).unwrap();
        let rp = randn(&mut rng, z.dims(), DType::F64);
        let ry = randn(&mut rng, &[2, c, h, w], DType::F64);
        let lp = || (symbol_product(z.as_tensor(), coef.as_tensor(), w, extent).unwrap() * &rp)
            .unwrap().sum_all().unwrap();
        let ly = || (symbol_irfft2(z.as_tensor(), coef.as_tensor(), w, extent).unwrap() * &ry)
            .unwrap().sum_all().unwrap();
        for (name, l) in [("product", &lp as &dyn Fn() -> Tensor), ("product+irfft2", &ly)] {
            let g = l().backward().unwrap();
            let f = || l().to_scalar::<f64>().unwrap();
            check_fd(&format!("{name} z"), &z, g.get(z.as_tensor()).unwrap(), &f);
            check_fd(&format!("{name} coef"), &coef, g.get(coef.as_tensor()).unwrap(), &f);
        }

        let (ci, co) = (c + 1, c);
        let x = Var::from_tensor(&randn(&mut rng, &[2, ci, h, w], DType::F64)).unwrap();
        let m = Var::from_tensor(&randn(&mut rng, &[co, ci], DType::F64)).unwrap();
        let b = Var::from_tensor(&randn(&mut rng, &[co], DType::F64)).unwrap();
        let r = randn(&mut rng, &[2, co, h, w], DType::F64);
        let l = || (pointwise(x.as_tensor(), m.as_tensor(), b.as_tensor()).unwrap() * &r)
            .unwrap().sum_all().unwrap();
        let g = l().backward().unwrap();
        let f = || l().to_scalar::<f64>().unwrap();
        for (name, v) in [("pointwise u", &x), ("pointwise M", &m), ("pointwise b", &b)] {
            check_fd(name, v, g.get(v.as_tensor()).unwrap(), &f);
        }
    }

    /// The symbol product is linear in the spectrum and its backward is the adjoint:
    /// `<S z, y> = <z, S^T y>` (f64).
    #[test]
    fn symbol_product_is_adjoint(h in 1usize..9, w in 1usize..9, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let coef = params(&mut rng, 2, DType::F64).coefficients().unwrap();
        let z = Var::from_tensor(&randn(&mut rng, &[2, 3, 2, h, w / 2 + 1], DType::F64)).unwrap();
        let y = randn(&mut rng, z.dims(), DType::F64);
        let sz = symbol_product(z.as_tensor(), &coef, w, (1.0, 1.0)).unwrap();
        let g = (&sz * &y).unwrap().sum_all().unwrap().backward().unwrap();
        let lhs = dot(&to_vec(&sz), &to_vec(&y));
        let rhs = dot(&to_vec(z.as_tensor()), &to_vec(g.get(z.as_tensor()).unwrap()));
        prop_assert!((lhs - rhs).abs() <= 1e-10 * lhs.abs().max(1.0), "{} vs {}", lhs, rhs);
    }
}
