//! The two spectral backends against a dense f64 DFT, and the adjoint identities of their
//! backward passes.

mod common;

use candle_core::{DType, Var};
use common::*;
use mfc::{Backend, Spectrum};

const BACKENDS: [Backend; 2] = [Backend::Fft, Backend::Matmul];
const SIZES: [(usize, usize); 6] = [(1, 1), (5, 7), (8, 6), (16, 16), (9, 12), (32, 24)];

/// Both backends' rfft2 and irfft2 in f32 agree with the dense f64 DFT to < 1e-5 relative.
#[test]
fn backends_match_dense_dft_in_f32() {
    let mut rng = Rng::new(1);
    let mut worst = 0.0f64;
    for (h, w) in SIZES {
        let planes = 3;
        let x = randn(&mut rng, &[planes, h, w], DType::F64);
        let xv = to_vec(&x);
        let wh = w / 2 + 1;
        let (zr_ref, zi_ref): (Vec<f64>, Vec<f64>) = (0..planes)
            .map(|p| dense_rfft2(&xv[p * h * w..(p + 1) * h * w], h, w))
            .fold((vec![], vec![]), |(mut a, mut b), (r, i)| {
                a.extend(r);
                b.extend(i);
                (a, b)
            });
        // A random (non-Hermitian) half spectrum for the inverse.
        let zr = randn(&mut rng, &[planes, h, wh], DType::F64);
        let zi = randn(&mut rng, &[planes, h, wh], DType::F64);
        let (zrv, ziv) = (to_vec(&zr), to_vec(&zi));
        let y_ref: Vec<f64> = (0..planes)
            .flat_map(|p| {
                dense_irfft2(
                    &zrv[p * h * wh..(p + 1) * h * wh],
                    &ziv[p * h * wh..(p + 1) * h * wh],
                    h,
                    w,
                )
            })
            .collect();
        for b in BACKENDS {
            let z = b.rfft2(&x.to_dtype(DType::F32).unwrap()).unwrap();
            let got: Vec<f64> = to_vec(&z.re).into_iter().chain(to_vec(&z.im)).collect();
            let want: Vec<f64> = zr_ref.iter().chain(&zi_ref).copied().collect();
            let e = rel_err(&got, &want);
            assert!(e < 1e-5, "{b:?} rfft2 {h}x{w}: rel err {e:e}");
            worst = worst.max(e);
            let s = Spectrum {
                re: zr.to_dtype(DType::F32).unwrap(),
                im: zi.to_dtype(DType::F32).unwrap(),
            };
            let y = b.irfft2(&s, w).unwrap();
            let e = rel_err(&to_vec(&y), &y_ref);
            assert!(e < 1e-5, "{b:?} irfft2 {h}x{w}: rel err {e:e}");
            worst = worst.max(e);
        }
    }
    eprintln!("worst f32 relative error vs dense f64 DFT: {worst:.2e}");
}

/// Backend (a) on more than 2^14 values, where its planes are split over worker threads (9
/// planes: uneven chunks on 2, 4 or 8 workers), agrees with the dense f64 DFT in f64, both ways.
#[test]
fn threaded_fft_matches_dense_dft() {
    let mut rng = Rng::new(4);
    let (planes, h, w) = (9, 44, 42);
    let wh = w / 2 + 1;
    let x = randn(&mut rng, &[planes, h, w], DType::F64);
    let (zr, zi) = (
        randn(&mut rng, &[planes, h, wh], DType::F64),
        randn(&mut rng, &[planes, h, wh], DType::F64),
    );
    let (xv, zrv, ziv) = (to_vec(&x), to_vec(&zr), to_vec(&zi));
    let (mut z_ref, mut y_ref) = ((vec![], vec![]), vec![]);
    for p in 0..planes {
        let (r, i) = dense_rfft2(&xv[p * h * w..(p + 1) * h * w], h, w);
        z_ref.0.extend(r);
        z_ref.1.extend(i);
        let plane = p * h * wh..(p + 1) * h * wh;
        y_ref.extend(dense_irfft2(&zrv[plane.clone()], &ziv[plane], h, w));
    }
    let z = Backend::Fft.rfft2(&x).unwrap();
    let got: Vec<f64> = to_vec(&z.re).into_iter().chain(to_vec(&z.im)).collect();
    let want: Vec<f64> = z_ref.0.into_iter().chain(z_ref.1).collect();
    let e = rel_err(&got, &want);
    assert!(e < 1e-12, "threaded rfft2: rel err {e:e}");
    let y = Backend::Fft
        .irfft2(&Spectrum { re: zr, im: zi }, w)
        .unwrap();
    let e = rel_err(&to_vec(&y), &y_ref);
    assert!(e < 1e-12, "threaded irfft2: rel err {e:e}");
}

/// Backend (a) and (b) agree with each other in f64 to round-off, and irfft2 inverts rfft2.
#[test]
fn backends_agree_and_invert() {
    let mut rng = Rng::new(2);
    for (h, w) in SIZES {
        let x = randn(&mut rng, &[2, 3, h, w], DType::F64);
        let za = Backend::Fft.rfft2(&x).unwrap();
        let zb = Backend::Matmul.rfft2(&x).unwrap();
        assert!(rel_err(&to_vec(&za.re), &to_vec(&zb.re)) < 1e-12);
        assert!(rel_err(&to_vec(&za.im), &to_vec(&zb.im)) < 1e-12);
        for b in BACKENDS {
            let back = b.irfft2(&za, w).unwrap();
            assert!(
                rel_err(&to_vec(&back), &to_vec(&x)) < 1e-12,
                "{b:?} roundtrip {h}x{w}"
            );
        }
    }
}

/// `<F x, Y> = <x, F^T Y>` for rfft2 and irfft2 of both backends, with `F^T` the backward pass.
#[test]
fn backward_passes_are_adjoints() {
    let mut rng = Rng::new(3);
    for (h, w) in SIZES {
        let wh = w / 2 + 1;
        for b in BACKENDS {
            // rfft2: x real -> (re, im).
            let x = Var::from_tensor(&randn(&mut rng, &[2, h, w], DType::F64)).unwrap();
            let (yr, yi) = (
                randn(&mut rng, &[2, h, wh], DType::F64),
                randn(&mut rng, &[2, h, wh], DType::F64),
            );
            let z = b.rfft2(x.as_tensor()).unwrap();
            let lhs = ((&z.re * &yr).unwrap().sum_all().unwrap()
                + (&z.im * &yi).unwrap().sum_all().unwrap())
            .unwrap();
            let grads = lhs.backward().unwrap();
            let gx = grads.get(x.as_tensor()).unwrap();
            let lhs = lhs.to_scalar::<f64>().unwrap();
            let rhs = dot(&to_vec(x.as_tensor()), &to_vec(gx));
            assert!(
                (lhs - rhs).abs() <= 1e-10 * lhs.abs().max(1.0),
                "{b:?} rfft2 {h}x{w}: {lhs} vs {rhs}"
            );

            // irfft2: (re, im) -> y real.
            let zr = Var::from_tensor(&randn(&mut rng, &[2, h, wh], DType::F64)).unwrap();
            let zi = Var::from_tensor(&randn(&mut rng, &[2, h, wh], DType::F64)).unwrap();
            let y = randn(&mut rng, &[2, h, w], DType::F64);
            let s = Spectrum {
                re: zr.as_tensor().clone(),
                im: zi.as_tensor().clone(),
            };
            let lhs = (b.irfft2(&s, w).unwrap() * &y).unwrap().sum_all().unwrap();
            let grads = lhs.backward().unwrap();
            let (gr, gi) = (
                grads.get(zr.as_tensor()).unwrap(),
                grads.get(zi.as_tensor()).unwrap(),
            );
            let lhs = lhs.to_scalar::<f64>().unwrap();
            let rhs = dot(&to_vec(zr.as_tensor()), &to_vec(gr))
                + dot(&to_vec(zi.as_tensor()), &to_vec(gi));
            assert!(
                (lhs - rhs).abs() <= 1e-10 * lhs.abs().max(1.0),
                "{b:?} irfft2 {h}x{w}: {lhs} vs {rhs}"
            );
        }
    }
}

/// The two backends' gradients agree, so (b) is a drop-in for (a) in training.
#[test]
fn backend_gradients_agree() {
    let mut rng = Rng::new(4);
    let x = randn(&mut rng, &[2, 1, 10, 9], DType::F64);
    let r = randn(&mut rng, &[2, 1, 10, 9], DType::F64);
    let grad = |b: Backend| {
        let v = Var::from_tensor(&x).unwrap();
        let z = b.rfft2(v.as_tensor()).unwrap();
        // A nonlinear functional of the spectrum, mapped back to space.
        let z = Spectrum {
            re: z.re.sqr().unwrap(),
            im: z.im.clone(),
        };
        let loss = (b.irfft2(&z, 9).unwrap() * &r).unwrap().sum_all().unwrap();
        to_vec(loss.backward().unwrap().get(v.as_tensor()).unwrap())
    };
    let e = rel_err(&grad(Backend::Fft), &grad(Backend::Matmul));
    assert!(e < 1e-12, "gradient mismatch {e:e}");
}
