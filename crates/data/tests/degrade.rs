//! Degradations reproduce their formulas from the returned parts, with the documented statistics.

use candle_core::{Device, Tensor};
use data::degrade::{blur_periodic, gaussian_psf, rectangles, MEASUREMENT_NOISE};
use data::{DeadLeaves, Degradation, Loader};
use rand::{rngs::StdRng, SeedableRng};
use std::sync::Arc;

fn clean(n: usize, count: usize) -> Tensor {
    Loader::new(Arc::new(DeadLeaves::new(3).with_channels(3)), n, 0, 2)
        .next_batch(count, &Device::Cpu)
        .unwrap()
}

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn denoise_is_the_mixture_of_its_parts() {
    let y = clean(16, 5);
    let d = Degradation::Denoise
        .apply(&y, &mut StdRng::seed_from_u64(1))
        .unwrap();
    let (u, z, t) = (
        vec(&d.input),
        vec(d.noise.as_ref().unwrap()),
        d.t.as_ref().unwrap().to_vec1::<f32>().unwrap(),
    );
    let yv = vec(&y);
    assert_eq!(t.len(), 5);
    assert!(t.iter().all(|v| (0.0..1.0).contains(v)));
    let per = 3 * 16 * 16;
    for k in 0..u.len() {
        let ti = t[k / per];
        assert_eq!(u[k], ti * yv[k] + (1.0 - ti) * z[k]);
    }
    assert_eq!(vec(d.clean_input.as_ref().unwrap()), yv);
    let mean = z.iter().map(|&v| v as f64).sum::<f64>() / z.len() as f64;
    let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / z.len() as f64;
    assert!(
        mean.abs() < 0.05 && (var - 1.0).abs() < 0.06,
        "z mean {mean} var {var}"
    );
    // Seeded: the same rng seed gives the same degradation.
    let again = Degradation::Denoise
        .apply(&y, &mut StdRng::seed_from_u64(1))
        .unwrap();
    assert_eq!(vec(&again.input), u);
}

#[test]
fn blur_kernel_sums_to_one_and_fft_matches_direct_periodic_convolution() {
    let k = gaussian_psf(8, 6, 3.0).unwrap();
    assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!((k[1] / k[0] - (-1.0f64 / 9.0).exp()).abs() < 1e-12);
    let y: Vec<f32> = (0..2 * 8 * 6)
        .map(|i| ((i * 37) % 17) as f32 / 17.0)
        .collect();
    let fast = blur_periodic(&y, 8, 6, &k);
    for p in 0..2 {
        for i in 0..8 {
            for j in 0..6 {
                let direct: f64 = (0..8 * 6)
                    .map(|q| {
                        let (a, b) = (q / 6, q % 6);
                        k[((i + 8 - a) % 8) * 6 + (j + 6 - b) % 6] * y[p * 48 + q] as f64
                    })
                    .sum();
                assert!((fast[p * 48 + i * 6 + j] as f64 - direct).abs() < 1e-5);
            }
        }
    }
    assert!(gaussian_psf(4, 4, 0.0).is_err());
}

#[test]
fn deblur_inpaint_superres_add_measurement_noise_to_the_clean_part() {
    let y = clean(24, 3);
    for deg in [
        Degradation::Deblur { sigma: 3.0 },
        Degradation::Inpaint,
        Degradation::SuperRes,
    ] {
        let d = deg.apply(&y, &mut StdRng::seed_from_u64(2)).unwrap();
        let (u, c, z) = (
            vec(&d.input),
            vec(d.clean_input.as_ref().unwrap()),
            vec(d.noise.as_ref().unwrap()),
        );
        for k in 0..u.len() {
            assert!(
                (u[k] - (c[k] + MEASUREMENT_NOISE * z[k])).abs() < 1e-6,
                "{deg:?}"
            );
        }
        assert_eq!(d.target.dims(), y.dims());
        assert!(d.t.is_none());
    }
    // Blurring keeps the mean of each plane (kernel sums to 1) and a constant image constant.
    let d = Degradation::Deblur { sigma: 3.0 }
        .apply(&y, &mut StdRng::seed_from_u64(2))
        .unwrap();
    let (m0, m1): (Vec<f32>, Vec<f32>) = (
        y.mean((2, 3))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap(),
        d.clean_input
            .unwrap()
            .mean((2, 3))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap(),
    );
    m0.iter()
        .zip(&m1)
        .for_each(|(a, b)| assert!((a - b).abs() < 1e-5));
    let flat = Tensor::full(0.3f32, (1, 1, 8, 8), &Device::Cpu).unwrap();
    let sr = Degradation::SuperRes
        .apply(&flat, &mut StdRng::seed_from_u64(0))
        .unwrap();
    assert_eq!(sr.input.dims(), &[1, 1, 4, 4]);
    vec(sr.clean_input.as_ref().unwrap())
        .iter()
        .for_each(|v| assert!((v - 0.3).abs() < 1e-6));
    let odd = Tensor::zeros((1, 1, 7, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(Degradation::SuperRes
        .apply(&odd, &mut StdRng::seed_from_u64(0))
        .is_err());
}

#[test]
fn inpaint_rectangles_have_sides_in_range() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut counts = [0usize; 4];
    for s in [24usize, 36, 64, 96] {
        for _ in 0..200 {
            let rects = rectangles(s, s, &mut rng);
            counts[rects.len()] += 1;
            for (top, left, h, w) in rects {
                let (lo, hi) = (s.div_ceil(12), s / 6);
                assert!(
                    (lo..=hi).contains(&h) && (lo..=hi).contains(&w),
                    "{h}x{w} for s={s}"
                );
                assert!(top + h <= s && left + w <= s);
            }
        }
    }
    assert_eq!(counts[0], 0);
    assert!(counts[1..].iter().all(|&c| c > 150), "{counts:?}");
    // The mask zeroes the clean input and nothing else.
    let y = clean(36, 4);
    let d = Degradation::Inpaint
        .apply(&y, &mut StdRng::seed_from_u64(9))
        .unwrap();
    let mask = d.mask.as_ref().unwrap();
    assert_eq!(mask.dims(), &[4, 1, 36, 36]);
    let expect = y.broadcast_mul(mask).unwrap();
    assert_eq!(vec(d.clean_input.as_ref().unwrap()), vec(&expect));
    let holes: f32 = (1.0 - mask)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((4.0 * 9.0..=4.0 * 3.0 * 36.0).contains(&holes), "{holes}");
}

#[test]
fn degradation_names_parse() {
    assert_eq!(
        "deblur".parse::<Degradation>().unwrap(),
        Degradation::Deblur { sigma: 3.0 }
    );
    for name in ["denoise", "inpaint", "superres"] {
        assert!(name.parse::<Degradation>().is_ok());
    }
    assert!("sharpen".parse::<Degradation>().is_err());
}
