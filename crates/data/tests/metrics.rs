//! SSIM against a straightforward f64 evaluation of the formula, its differentiable twin, and the
//! paired t-test against a textbook example.

use candle_core::{DType, Device, Tensor, Var};
use data::metrics::{mse, per_image, psnr, ssim, ssim_loss, ssim_loss_with, Metric, SsimWindow};
use data::paired_t_test;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// SSIM from the definition: for every window position, weighted means, variances and covariance
/// with the 2-D Gaussian weights `w(a, b) ∝ exp(-((a-5)^2 + (b-5)^2) / 4.5)`, then the formula.
fn ssim_reference(x: &[f64], y: &[f64], h: usize, w: usize) -> f64 {
    let k = 11;
    let mut wts = vec![0f64; k * k];
    for a in 0..k {
        for b in 0..k {
            wts[a * k + b] = (-(((a as f64 - 5.0).powi(2) + (b as f64 - 5.0).powi(2)) / 4.5)).exp();
        }
    }
    let total: f64 = wts.iter().sum();
    wts.iter_mut().for_each(|v| *v /= total);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let mut sum = 0.0;
    let mut count = 0;
    for i in 0..=h - k {
        for j in 0..=w - k {
            let at = |v: &[f64], a: usize, b: usize| v[(i + a) * w + j + b];
            let (mut mx, mut my) = (0.0, 0.0);
            for a in 0..k {
                for b in 0..k {
                    mx += wts[a * k + b] * at(x, a, b);
                    my += wts[a * k + b] * at(y, a, b);
                }
            }
            let (mut vx, mut vy, mut cxy) = (0.0, 0.0, 0.0);
            for a in 0..k {
                for b in 0..k {
                    let (dx, dy) = (at(x, a, b) - mx, at(y, a, b) - my);
                    vx += wts[a * k + b] * dx * dx;
                    vy += wts[a * k + b] * dy * dy;
                    cxy += wts[a * k + b] * dx * dy;
                }
            }
            sum += ((2.0 * mx * my + c1) * (2.0 * cxy + c2))
                / ((mx * mx + my * my + c1) * (vx + vy + c2));
            count += 1;
        }
    }
    sum / count as f64
}

fn random_image(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random::<f32>()).collect()
}

#[test]
fn ssim_matches_the_formula_and_is_one_on_identical_images() {
    let mut rng = StdRng::seed_from_u64(0);
    let (h, w) = (16, 19);
    for _ in 0..3 {
        let x = random_image(&mut rng, 2 * h * w);
        let y: Vec<f32> = x
            .iter()
            .map(|v| (v * 0.7 + 0.3 * rng.random::<f32>()).clamp(0.0, 1.0))
            .collect();
        assert!((ssim(&x, &x, 2, h, w).unwrap() - 1.0).abs() < 1e-12);
        let ours = ssim(&x, &y, 2, h, w).unwrap();
        let f64s = |v: &[f32]| v.iter().map(|&p| p as f64).collect::<Vec<_>>();
        let reference = (0..2)
            .map(|c| {
                ssim_reference(
                    &f64s(&x[c * h * w..(c + 1) * h * w]),
                    &f64s(&y[c * h * w..(c + 1) * h * w]),
                    h,
                    w,
                )
            })
            .sum::<f64>()
            / 2.0;
        assert!((ours - reference).abs() < 1e-10, "{ours} vs {reference}");
        assert!(ours < 0.99);
    }
    assert!(ssim(&[0.0; 4], &[0.0; 5], 1, 2, 2).is_err());
}

#[test]
fn ssim_loss_equals_one_minus_ssim_and_has_correct_gradient() {
    let mut rng = StdRng::seed_from_u64(1);
    let (n, c, h, w) = (2, 3, 14, 14);
    let x = random_image(&mut rng, n * c * h * w);
    let y = random_image(&mut rng, n * c * h * w);
    let tx = Tensor::from_vec(x.clone(), (n, c, h, w), &Device::Cpu).unwrap();
    let ty = Tensor::from_vec(y.clone(), (n, c, h, w), &Device::Cpu).unwrap();
    let loss: f32 = ssim_loss(&tx, &ty).unwrap().to_scalar().unwrap();
    let mean_ssim = per_image(Metric::Ssim, &tx, &ty)
        .unwrap()
        .iter()
        .sum::<f64>()
        / n as f64;
    assert!(
        (loss as f64 - (1.0 - mean_ssim)).abs() < 1e-5,
        "{loss} vs {}",
        1.0 - mean_ssim
    );
    let same: f32 = ssim_loss(&tx, &tx).unwrap().to_scalar().unwrap();
    assert!(same.abs() < 1e-5);
    // Gradient against central finite differences in f64.
    let vx = Var::from_tensor(&tx.to_dtype(DType::F64).unwrap()).unwrap();
    let ty64 = ty.to_dtype(DType::F64).unwrap();
    let grads = ssim_loss(vx.as_tensor(), &ty64)
        .unwrap()
        .backward()
        .unwrap();
    let g: Vec<f64> = grads
        .get(vx.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let eval = |v: &[f64]| -> f64 {
        let t = Tensor::from_vec(v.to_vec(), (n, c, h, w), &Device::Cpu).unwrap();
        ssim_loss(&t, &ty64).unwrap().to_scalar().unwrap()
    };
    let base: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for k in [0, 77, 400, n * c * h * w - 1] {
        let eps = 1e-6;
        let (mut p, mut m) = (base.clone(), base.clone());
        p[k] += eps;
        m[k] -= eps;
        let fd = (eval(&p) - eval(&m)) / (2.0 * eps);
        assert!(
            (fd - g[k]).abs() < 1e-6 * (1.0 + fd.abs()),
            "pixel {k}: fd {fd} vs grad {}",
            g[k]
        );
    }
}

#[test]
fn mse_and_psnr() {
    let x = [0.0f32, 0.5, 1.0, 0.25];
    let y = [0.1f32, 0.4, 0.9, 0.35];
    assert!((mse(&x, &y) - 0.01).abs() < 1e-8);
    assert!((psnr(&x, &y) - 20.0).abs() < 1e-5);
    assert!("ssim".parse::<Metric>().is_ok() && "l1".parse::<Metric>().is_err());
}

#[test]
fn metric_names_agree_with_serde_and_unknown_ones_list_the_allowed() {
    for m in Metric::ALL {
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, format!("\"{}\"", m.name()));
        assert_eq!(serde_json::from_str::<Metric>(&json).unwrap(), m);
        assert_eq!(m.name().parse::<Metric>().unwrap(), m);
        assert_eq!(m.to_string(), m.name());
    }
    let e = "l1".parse::<Metric>().unwrap_err().to_string();
    assert!(e.contains("\"l1\"") && e.contains("mse, psnr, ssim"), "{e}");
    assert!(serde_json::from_str::<Metric>("\"l1\"").is_err());
    assert!(!Metric::Mse.higher_is_better());
    assert!(Metric::Psnr.higher_is_better() && Metric::Ssim.higher_is_better());
}

#[test]
fn paired_t_test_matches_students_sleep_data() {
    // Cushny & Peebles sleep data (Student 1908; R `t.test(extra ~ group, data = sleep,
    // paired = TRUE)`: t = -4.0621, df = 9, p-value = 0.002833, mean difference -1.58).
    let g1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
    let g2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];
    let r = paired_t_test(&g1, &g2).unwrap();
    assert!((r.t + 4.0621).abs() < 1e-4, "{r:?}");
    assert_eq!(r.df, 9.0);
    assert!((r.p_value - 0.002833).abs() < 1e-6, "{r:?}");
    assert!((r.mean_diff + 1.58).abs() < 1e-12);
    assert!((r.effect_size - r.t / 10f64.sqrt()).abs() < 1e-12);
    let same = paired_t_test(&g1, &g1).unwrap();
    assert_eq!((same.t, same.p_value), (0.0, 1.0));
    assert!(paired_t_test(&g1, &g2[..3]).is_err());
}

/// A smooth image on the unit square sampled at the cell centres of an `n x n` mesh.
fn smooth(n: usize, f: impl Fn(f64, f64) -> f64) -> Tensor {
    let h = 1.0 / n as f64;
    let v: Vec<f64> = (0..n * n)
        .map(|k| f(((k % n) as f64 + 0.5) * h, ((k / n) as f64 + 0.5) * h))
        .collect();
    Tensor::from_vec(v, (1, 1, n, n), &Device::Cpu).unwrap()
}

fn loss_at(x: &Tensor, y: &Tensor, window: SsimWindow) -> f64 {
    ssim_loss_with(x, y, window).unwrap().to_scalar().unwrap()
}

#[test]
fn standard_window_has_eleven_taps_and_scales_with_the_mesh() {
    assert_eq!(SsimWindow::STANDARD.taps(), 11);
    assert_eq!(
        SsimWindow::STANDARD.coarsened(2.0),
        SsimWindow { sigma: 0.75 }
    );
    assert_eq!(SsimWindow::STANDARD.coarsened(2.0).taps(), 7);
    assert_eq!(SsimWindow::STANDARD.coarsened(4.0).taps(), 3);
    let g = SsimWindow::STANDARD.weights(64, 64);
    assert_eq!(g, data::metrics::gaussian_window(11));
    assert_eq!(SsimWindow::STANDARD.weights(8, 9).len(), 7);
}

/// SPEC section 6: with a physical window the SSIM loss of `R x` against `R y` (2x2 averages)
/// approaches that of `x` against `y` as the mesh is refined; with a window fixed in pixels the
/// two sides of a telescoping term are different functionals and the gap does not close.
#[test]
fn physical_ssim_window_makes_coarse_and_fine_losses_converge() {
    let x = |a: f64, b: f64| 0.5 + 0.3 * (2.0 * PI * a).sin() * (2.0 * PI * b).cos();
    let y =
        |a: f64, b: f64| x(a, b) + 0.15 * (4.0 * PI * (a + b)).sin() + 0.1 * (6.0 * PI * a).cos();
    use std::f64::consts::PI;
    // The window is 1.5 px wide on the 32 x 32 mesh: sigma = 1.5 / 32 of the image side.
    let mut physical = Vec::new();
    let mut pixel = Vec::new();
    for n in [32usize, 64, 128] {
        let (xn, yn) = (smooth(n, x), smooth(n, y));
        let (rx, ry) = (xn.avg_pool2d(2).unwrap(), yn.avg_pool2d(2).unwrap());
        let fine = SsimWindow::STANDARD.coarsened(32.0 / n as f64);
        let coarse = fine.coarsened(2.0);
        physical.push((loss_at(&xn, &yn, fine) - loss_at(&rx, &ry, coarse)).abs());
        pixel.push(
            (loss_at(&xn, &yn, SsimWindow::STANDARD) - loss_at(&rx, &ry, SsimWindow::STANDARD))
                .abs(),
        );
    }
    eprintln!("|L_h - L_2h|: physical window {physical:?}, pixel window {pixel:?}");
    assert!(
        physical[1] < 0.6 * physical[0] && physical[2] < 0.6 * physical[1],
        "physical {physical:?}"
    );
    assert!(
        physical[2] < 0.2 * pixel[2],
        "physical {physical:?} vs pixel {pixel:?}"
    );
}
