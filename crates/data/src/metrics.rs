//! Image quality metrics (SPEC section 6): MSE, PSNR and SSIM (Wang et al. 2004, Gaussian window
//! 11, sigma 1.5, K1 0.01, K2 0.03, data range 1), per image, and a differentiable SSIM loss.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::str::FromStr;

const K1: f64 = 0.01;
const K2: f64 = 0.03;
const WINDOW: usize = 11;
const WINDOW_SIGMA: f64 = 1.5;

/// Mean squared error `mean((x - y)^2)`.
pub fn mse(x: &[f32], y: &[f32]) -> f64 {
    let n = x.len().min(y.len()).max(1);
    x.iter()
        .zip(y)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum::<f64>()
        / n as f64
}

/// Peak signal-to-noise ratio for data range 1: `10 log10(1 / MSE)` dB.
pub fn psnr(x: &[f32], y: &[f32]) -> f64 {
    -10.0 * mse(x, y).log10()
}

/// Normalised 1-D Gaussian window of odd length `size`, std 1.5: `g_i ∝ exp(-(i - c)^2 / 4.5)`.
pub fn gaussian_window(size: usize) -> Vec<f64> {
    gaussian_taps(size, WINDOW_SIGMA)
}

/// `g_i ∝ exp(-(i - c)^2 / (2 sigma^2))`, `i = 0 .. size`, `c = size / 2`, summing to 1.
fn gaussian_taps(size: usize, sigma: f64) -> Vec<f64> {
    let c = (size / 2) as f64;
    let g: Vec<f64> = (0..size)
        .map(|i| (-((i as f64 - c).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = g.iter().sum();
    g.into_iter().map(|v| v / s).collect()
}

/// Window side for an `h x w` image: 11, or the largest odd size that fits a smaller image.
fn window_size(h: usize, w: usize) -> usize {
    fit_odd(WINDOW, h, w)
}

/// `size`, or the largest odd size that fits an `h x w` image.
fn fit_odd(size: usize, h: usize, w: usize) -> usize {
    let s = size.min(h).min(w);
    s.saturating_sub(1 - s % 2)
}

/// The Gaussian window of the SSIM loss, `sigma` pixels wide, `2 round(10 sigma / 3) + 1` taps
/// (at least 3): the standard window (Wang et al. 2004: sigma 1.5, 11 taps) is
/// [`SsimWindow::STANDARD`].
///
/// As a training loss the window is physical (SPEC section 6): on a mesh `f` times coarser
/// than the one where the window is `sigma` pixels wide, it is `sigma / f` pixels wide
/// ([`SsimWindow::coarsened`]), so the fine and coarse losses of one telescoping term
/// (001 eq. 6) are the same functional of the continuous images and their difference vanishes
/// as the mesh is refined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SsimWindow {
    /// Standard deviation in pixels.
    pub sigma: f64,
}

impl SsimWindow {
    /// Sigma 1.5 px, 11 taps.
    pub const STANDARD: SsimWindow = SsimWindow {
        sigma: WINDOW_SIGMA,
    };

    /// The same physical window on a mesh `factor` times coarser: `sigma / factor` pixels.
    pub fn coarsened(self, factor: f64) -> Self {
        Self {
            sigma: self.sigma / factor,
        }
    }

    /// Taps `2 round(10 sigma / 3) + 1` (at least 3; 11 for the standard window).
    pub fn taps(self) -> usize {
        2 * ((10.0 * self.sigma / 3.0).round() as usize).max(1) + 1
    }

    /// The normalised 1-D window for an `h x w` image (shrunk to fit a smaller image).
    pub fn weights(self, h: usize, w: usize) -> Vec<f64> {
        gaussian_taps(fit_odd(self.taps(), h, w), self.sigma)
    }
}

/// 'Valid' separable filtering of an `h x w` plane with the window `g`.
fn filter_valid(p: &[f64], h: usize, w: usize, g: &[f64]) -> Vec<f64> {
    let k = g.len();
    let (oh, ow) = (h + 1 - k, w + 1 - k);
    let mut rows = vec![0f64; h * ow];
    for i in 0..h {
        for j in 0..ow {
            rows[i * ow + j] = g
                .iter()
                .enumerate()
                .map(|(t, gt)| gt * p[i * w + j + t])
                .sum();
        }
    }
    let mut out = vec![0f64; oh * ow];
    for i in 0..oh {
        for j in 0..ow {
            out[i * ow + j] = g
                .iter()
                .enumerate()
                .map(|(t, gt)| gt * rows[(i + t) * ow + j])
                .sum();
        }
    }
    out
}

/// Mean SSIM of two `[channels, h, w]` images in `[0, 1]`: the mean over channels and over the
/// 'valid' window positions of
/// `((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`,
/// `C1 = (0.01)^2`, `C2 = (0.03)^2`, local moments under the Gaussian window (Wang et al. 2004,
/// eq. 13; 11x11, sigma 1.5, shrunk to the largest odd size for images smaller than 11).
pub fn ssim(x: &[f32], y: &[f32], channels: usize, h: usize, w: usize) -> Result<f64> {
    let len = channels * h * w;
    if x.len() != len || y.len() != len || len == 0 {
        return Err(Error::InvalidArgument(format!(
            "ssim: images of {} and {} values for shape [{channels}, {h}, {w}]",
            x.len(),
            y.len()
        )));
    }
    let g = gaussian_window(window_size(h, w));
    let (c1, c2) = (K1 * K1, K2 * K2);
    let mut total = 0.0;
    for (px, py) in x.chunks_exact(h * w).zip(y.chunks_exact(h * w)) {
        let a: Vec<f64> = px.iter().map(|&v| v as f64).collect();
        let b: Vec<f64> = py.iter().map(|&v| v as f64).collect();
        let prod =
            |u: &[f64], v: &[f64]| -> Vec<f64> { u.iter().zip(v).map(|(p, q)| p * q).collect() };
        let f = |p: &[f64]| filter_valid(p, h, w, &g);
        let (mx, my) = (f(&a), f(&b));
        let (xx, yy, xy) = (f(&prod(&a, &a)), f(&prod(&b, &b)), f(&prod(&a, &b)));
        let map: Vec<f64> = (0..mx.len())
            .map(|k| {
                let (sx, sy, sxy) = (
                    xx[k] - mx[k] * mx[k],
                    yy[k] - my[k] * my[k],
                    xy[k] - mx[k] * my[k],
                );
                ((2.0 * mx[k] * my[k] + c1) * (2.0 * sxy + c2))
                    / ((mx[k] * mx[k] + my[k] * my[k] + c1) * (sx + sy + c2))
            })
            .collect();
        total += map.iter().sum::<f64>() / map.len() as f64;
    }
    Ok(total / channels as f64)
}

/// Which per-image metric to compute. Spelled `mse`, `psnr`, `ssim` in configuration files and
/// on command lines; [`FromStr`] and serde accept the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// [`mse`].
    Mse,
    /// [`psnr`].
    Psnr,
    /// [`ssim`].
    Ssim,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 3] = [Metric::Mse, Metric::Psnr, Metric::Ssim];

    /// The name accepted by [`FromStr`] and serde.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Mse => "mse",
            Metric::Psnr => "psnr",
            Metric::Ssim => "ssim",
        }
    }

    /// True when larger is better (PSNR, SSIM); false for MSE.
    pub fn higher_is_better(self) -> bool {
        match self {
            Metric::Mse => false,
            Metric::Psnr | Metric::Ssim => true,
        }
    }
}

impl FromStr for Metric {
    type Err = Error;
    /// Parses the names of [`Metric::name`]; an unknown name is an error listing them.
    fn from_str(s: &str) -> Result<Self> {
        crate::task::find_name("metric", s, Metric::ALL, Metric::name)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The metric of each image pair of two `[N, C, H, W]` batches (e.g. for paired t-tests).
pub fn per_image(metric: Metric, x: &Tensor, y: &Tensor) -> Result<Vec<f64>> {
    let (n, c, h, w) = x.dims4()?;
    if y.dims() != x.dims() {
        return Err(Error::InvalidArgument(format!(
            "metric on shapes {:?} and {:?}",
            x.dims(),
            y.dims()
        )));
    }
    let flat = |t: &Tensor| -> Result<Vec<f32>> {
        Ok(t.to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?)
    };
    let (a, b) = (flat(x)?, flat(y)?);
    let size = c * h * w;
    (0..n)
        .map(|i| {
            let (p, q) = (&a[i * size..(i + 1) * size], &b[i * size..(i + 1) * size]);
            match metric {
                Metric::Mse => Ok(mse(p, q)),
                Metric::Psnr => Ok(psnr(p, q)),
                Metric::Ssim => ssim(p, q, c, h, w),
            }
        })
        .collect()
}

/// Differentiable SSIM loss `1 - mean SSIM(x, y)` over a batch `[N, C, H, W]` (the negative SSIM
/// of 001 Table 8 shifted by 1, so it is 0 at `x = y`) with the standard window of [`ssim`].
pub fn ssim_loss(x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    ssim_loss_with(x, y, SsimWindow::STANDARD)
}

/// [`ssim_loss`] with the Gaussian `window`, built from candle ops: the local moments are two
/// 'valid' depthwise 1-D convolutions (the window is separable).
pub fn ssim_loss_with(x: &Tensor, y: &Tensor, window: SsimWindow) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let g: Vec<f32> = window.weights(h, w).into_iter().map(|v| v as f32).collect();
    let k = g.len();
    let column = Tensor::from_vec(g.clone(), (1, 1, k, 1), x.device())?.to_dtype(x.dtype())?;
    let row = Tensor::from_vec(g, (1, 1, 1, k), x.device())?.to_dtype(x.dtype())?;
    let f = |t: &Tensor| {
        t.reshape((n * c, 1, h, w))?
            .conv2d(&column, 0, 1, 1, 1)?
            .conv2d(&row, 0, 1, 1, 1)
    };
    let (mx, my) = (f(x)?, f(y)?);
    let (mx2, my2, mxy) = (mx.sqr()?, my.sqr()?, (&mx * &my)?);
    let sx = (f(&x.sqr()?)? - &mx2)?;
    let sy = (f(&y.sqr()?)? - &my2)?;
    let sxy = (f(&(x * y)?)? - &mxy)?;
    let (c1, c2) = (K1 * K1, K2 * K2);
    let num = ((mxy * 2.0)? + c1)?.mul(&((sxy * 2.0)? + c2)?)?;
    let den = ((mx2 + my2)? + c1)?.mul(&((sx + sy)? + c2)?)?;
    num.div(&den)?.mean_all()?.neg()? + 1.0
}
