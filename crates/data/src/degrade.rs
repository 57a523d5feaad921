//! The four degradations of 001's experiments (SPEC section 6), applied to a clean finest-mesh
//! batch `y` of shape `[N, C, H, W]`; all random choices come from the caller's seeded `rng`.

use crate::resize::{resample, Filter};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rustfft::{num_complex::Complex, FftPlanner};
use std::str::FromStr;

/// Standard deviation of the measurement noise added by deblurring, inpainting and
/// super-resolution ("plus noise", SPEC section 6; the papers do not give a level).
pub const MEASUREMENT_NOISE: f32 = 0.01;

/// A degradation `y -> input`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Degradation {
    /// Denoising (001 section 4.1): `u = t y + (1 - t) z`, `z ~ N(0, I)`, `t ~ U[0, 1]` per image.
    Denoise,
    /// Deblurring (001 Appendix D): `u = K * y + 0.01 z`, periodic convolution (FFT) with the
    /// normalised PSF `K(x, y) ∝ exp(-x^2/sigma^2 - y^2/sigma^2)` (pixels; 001's formula, whose
    /// standard deviation is `sigma / sqrt 2`), `sigma = 3` by default.
    Deblur {
        /// PSF width in pixels of the finest mesh.
        sigma: f64,
    },
    /// Inpainting (001 Appendix D): 1-3 rectangles with heights and widths uniform in
    /// `[H/12, H/6]` and `[W/12, W/6]` zeroed, `u = M y + 0.01 z`.
    Inpaint,
    /// Super-resolution x2: `u = D y + 0.01 z`, `D` antialiased bicubic downsampling by 2
    /// (Keys kernel stretched by 2), input `[N, C, H/2, W/2]`.
    SuperRes,
}

impl FromStr for Degradation {
    type Err = Error;
    /// Parses a [`crate::Task`] name: "denoise", "deblur" (sigma 3), "inpaint", "superres".
    fn from_str(s: &str) -> Result<Self> {
        Ok(s.parse::<crate::Task>()?.degradation(3.0))
    }
}

/// A degraded batch with the parts it was made from.
#[derive(Debug, Clone)]
pub struct Degraded {
    /// Network input `u`.
    pub input: Tensor,
    /// Target: the clean batch `y`.
    pub target: Tensor,
    /// Denoising noise level `t`, `[N]`.
    pub t: Option<Tensor>,
    /// The standard normal noise `z` (shape of `input`).
    pub noise: Option<Tensor>,
    /// The noise-free part before noise is mixed in: `y` (denoise), `K * y`, `M y`, `D y`; so a
    /// coarse input such as `t R y + (1 - t) 2^l R^l z` can be formed (SPEC section 3).
    pub clean_input: Option<Tensor>,
    /// Inpainting mask `M` (1 kept, 0 erased), `[N, 1, H, W]`.
    pub mask: Option<Tensor>,
}

impl Degraded {
    /// A plain `(input, target)` pair: no noise level, noise, clean input or mask.
    pub fn pair(input: Tensor, target: Tensor) -> Self {
        Degraded {
            input,
            target,
            t: None,
            noise: None,
            clean_input: None,
            mask: None,
        }
    }
}

/// Fills a vector with `len` standard normal samples.
fn normal(len: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..len).map(|_| StandardNormal.sample(rng)).collect()
}

/// `a + sigma b` elementwise.
fn add_scaled(a: &[f32], b: &[f32], sigma: f32) -> Vec<f32> {
    a.iter().zip(b).map(|(x, z)| x + sigma * z).collect()
}

impl Degradation {
    /// Degrades the clean batch `clean` `[N, C, H, W]` (see each variant's formula).
    pub fn apply(&self, clean: &Tensor, rng: &mut impl Rng) -> Result<Degraded> {
        let (n, c, h, w) = clean.dims4()?;
        let device = clean.device();
        let y: Vec<f32> = clean
            .to_device(&Device::Cpu)?
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let plane = h * w;
        let tensor =
            |v: Vec<f32>, shape: (usize, usize, usize, usize)| Tensor::from_vec(v, shape, device);
        let noisy = |clean_input: Vec<f32>, shape, rng: &mut _| -> Result<Degraded> {
            let z = normal(clean_input.len(), rng);
            Ok(Degraded {
                input: tensor(add_scaled(&clean_input, &z, MEASUREMENT_NOISE), shape)?,
                target: clean.clone(),
                t: None,
                noise: Some(tensor(z, shape)?),
                clean_input: Some(tensor(clean_input, shape)?),
                mask: None,
            })
        };
        match *self {
            Degradation::Denoise => {
                let t: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
                let z = normal(y.len(), rng);
                let per_image = c * plane;
                let u = y.iter().zip(&z).enumerate().map(|(k, (yv, zv))| {
                    let ti = t[k / per_image];
                    ti * yv + (1.0 - ti) * zv
                });
                Ok(Degraded {
                    input: tensor(u.collect(), (n, c, h, w))?,
                    target: clean.clone(),
                    t: Some(Tensor::from_vec(t, n, device)?),
                    noise: Some(tensor(z, (n, c, h, w))?),
                    clean_input: Some(clean.clone()),
                    mask: None,
                })
            }
            Degradation::Deblur { sigma } => {
                let kernel = gaussian_psf(h, w, sigma)?;
                noisy(blur_periodic(&y, h, w, &kernel), (n, c, h, w), rng)
            }
            Degradation::Inpaint => {
                let mut mask = vec![1f32; n * plane];
                for m in mask.chunks_exact_mut(plane) {
                    for (top, left, rh, rw) in rectangles(h, w, rng) {
                        for row in m[top * w..(top + rh) * w].chunks_exact_mut(w) {
                            row[left..left + rw].fill(0.0);
                        }
                    }
                }
                let masked: Vec<f32> = y
                    .iter()
                    .enumerate()
                    .map(|(k, v)| v * mask[(k / (c * plane)) * plane + k % plane])
                    .collect();
                let mut out = noisy(masked, (n, c, h, w), rng)?;
                out.mask = Some(tensor(mask, (n, 1, h, w))?);
                Ok(out)
            }
            Degradation::SuperRes => {
                if h % 2 != 0 || w % 2 != 0 || h < 2 || w < 2 {
                    return Err(Error::InvalidArgument(format!(
                        "super-resolution needs even sizes, got {h}x{w}"
                    )));
                }
                let low = resample(&y, n * c, h, w, h / 2, w / 2, Filter::Bicubic);
                noisy(low, (n, c, h / 2, w / 2), rng)
            }
        }
    }
}

/// Rectangles `(top, left, height, width)` for one image: 1-3 of them, sides uniform integers in
/// `[ceil(s/12), max(that, floor(s/6))]`, placed uniformly inside the image.
pub fn rectangles(h: usize, w: usize, rng: &mut impl Rng) -> Vec<(usize, usize, usize, usize)> {
    let side = |s: usize, rng: &mut dyn rand::RngCore| {
        let lo = s.div_ceil(12).clamp(1, s.max(1));
        let hi = (s / 6).max(lo).min(s.max(1));
        rng.random_range(lo..=hi)
    };
    let count = rng.random_range(1..=3);
    (0..count)
        .map(|_| {
            let (rh, rw) = (side(h, rng), side(w, rng));
            (
                rng.random_range(0..=h - rh),
                rng.random_range(0..=w - rw),
                rh,
                rw,
            )
        })
        .collect()
}

/// The periodic PSF on an `h x w` grid: `K[i, j] ∝ exp(-(d_i^2 + d_j^2) / sigma^2)` with `d` the
/// periodic distance to pixel `(0, 0)`, normalised so `sum K = 1`.
pub fn gaussian_psf(h: usize, w: usize, sigma: f64) -> Result<Vec<f64>> {
    if !(sigma > 0.0 && sigma.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "blur sigma must be positive, got {sigma}"
        )));
    }
    let dist = |i: usize, len: usize| i.min(len - i) as f64;
    let mut k: Vec<f64> = (0..h * w)
        .map(|p| {
            let (di, dj) = (dist(p / w, h), dist(p % w, w));
            (-(di * di + dj * dj) / (sigma * sigma)).exp()
        })
        .collect();
    let total: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= total);
    Ok(k)
}

/// 2-D FFT in place of an `h x w` row-major complex array (rows, then columns).
fn fft2(data: &mut [Complex<f64>], h: usize, w: usize, inverse: bool) {
    let mut planner = FftPlanner::new();
    let (row, col) = if inverse {
        (planner.plan_fft_inverse(w), planner.plan_fft_inverse(h))
    } else {
        (planner.plan_fft_forward(w), planner.plan_fft_forward(h))
    };
    row.process(data);
    let mut column = vec![Complex::default(); h];
    for j in 0..w {
        column
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = data[i * w + j]);
        col.process(&mut column);
        column
            .iter()
            .enumerate()
            .for_each(|(i, v)| data[i * w + j] = *v);
    }
}

/// Periodic convolution `K * y` of every `h x w` plane of `y` with `kernel` via FFT.
pub fn blur_periodic(y: &[f32], h: usize, w: usize, kernel: &[f64]) -> Vec<f32> {
    let mut khat: Vec<Complex<f64>> = kernel.iter().map(|&v| Complex::new(v, 0.0)).collect();
    fft2(&mut khat, h, w, false);
    let scale = 1.0 / (h * w) as f64;
    let mut out = Vec::with_capacity(y.len());
    for plane in y.chunks_exact(h * w) {
        let mut buf: Vec<Complex<f64>> =
            plane.iter().map(|&v| Complex::new(v as f64, 0.0)).collect();
        fft2(&mut buf, h, w, false);
        buf.iter_mut().zip(&khat).for_each(|(b, k)| *b *= k);
        fft2(&mut buf, h, w, true);
        out.extend(buf.iter().map(|v| (v.re * scale) as f32));
    }
    out
}
