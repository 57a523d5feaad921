//! Shared test helpers: seeded random numbers, dense f64 DFT references, layer construction.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use mfc::{Mfc, MfcConfig};
use std::f64::consts::PI;

/// splitmix64: a tiny seeded generator so the tests do not depend on candle's unseeded RNG.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform(f64::MIN_POSITIVE, 1.0);
        let v = self.uniform(0.0, 1.0);
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }
    pub fn normals(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.normal()).collect()
    }
}

/// Tensor of standard normals with the given shape and dtype.
pub fn randn(rng: &mut Rng, shape: &[usize], dtype: DType) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(rng.normals(n), shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

pub fn to_vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// `||a - b|| / ||b||` (absolute when `b = 0`).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Dense half-spectrum DFT of one `[h, w]` plane: `Z[m1, m2] = sum x e^{-2 pi i (m1 y/h + m2 x/w)}`.
pub fn dense_rfft2(x: &[f64], h: usize, w: usize) -> (Vec<f64>, Vec<f64>) {
    let wh = w / 2 + 1;
    let (mut re, mut im) = (vec![0.0; h * wh], vec![0.0; h * wh]);
    for m1 in 0..h {
        for m2 in 0..wh {
            let (mut sr, mut si) = (0.0, 0.0);
            for y in 0..h {
                for xx in 0..w {
                    let th = -2.0 * PI * ((m1 * y) as f64 / h as f64 + (m2 * xx) as f64 / w as f64);
                    sr += x[y * w + xx] * th.cos();
                    si += x[y * w + xx] * th.sin();
                }
            }
            re[m1 * wh + m2] = sr;
            im[m1 * wh + m2] = si;
        }
    }
    (re, im)
}

/// Dense inverse of the half spectrum: `y = (1/hw) sum_{m2} w_{m2} Re sum_{m1} Z e^{+2 pi i (..)}`.
pub fn dense_irfft2(re: &[f64], im: &[f64], h: usize, w: usize) -> Vec<f64> {
    let wh = w / 2 + 1;
    let mut y = vec![0.0; h * w];
    for yy in 0..h {
        for xx in 0..w {
            let mut s = 0.0;
            for m1 in 0..h {
                for m2 in 0..wh {
                    let wt = if m2 == 0 || 2 * m2 == w { 1.0 } else { 2.0 };
                    let th = 2.0 * PI * ((m1 * yy) as f64 / h as f64 + (m2 * xx) as f64 / w as f64);
                    s += wt * (re[m1 * wh + m2] * th.cos() - im[m1 * wh + m2] * th.sin());
                }
            }
            y[yy * w + xx] = s / (h * w) as f64;
        }
    }
    y
}

/// A fresh layer on a fresh `VarMap` (CPU).
pub fn layer(c_in: usize, c_out: usize, cfg: &MfcConfig, dtype: DType) -> (VarMap, Mfc) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu);
    let l = Mfc::new(c_in, c_out, cfg, vb).unwrap();
    (varmap, l)
}

/// Overwrite the variable `name` of `varmap` with `values`.
pub fn set_var(varmap: &VarMap, name: &str, values: Vec<f64>) {
    let data = varmap.data().lock().unwrap();
    let var = data
        .get(name)
        .unwrap_or_else(|| panic!("no variable {name}"));
    let t = Tensor::from_vec(values, var.shape(), &Device::Cpu)
        .unwrap()
        .to_dtype(var.dtype())
        .unwrap();
    var.set(&t).unwrap();
}

/// All variables of `varmap` sorted by name.
pub fn named_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = varmap.data().lock().unwrap();
    let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
