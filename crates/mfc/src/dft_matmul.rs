//! Backend (b): the real 2-D DFT as matmuls with cached cos/sin matrices, built from candle ops
//! only, so it runs (and differentiates) on every device candle supports.
//!
//! Same conventions as [`crate::fft`]. With `C_n[a, b] = cos(2 pi a b / n)`, `S_n = sin(..)`:
//! - along W: `A = x (C_W - i S_W)[:, 0..=W/2]`;
//! - along H: `Z = (C_H - i S_H) A`;
//! - inverse along H: `B = (C_H + i S_H) Z / H`;
//! - inverse along W: `y = (Re B) P_c - (Im B) P_s` with `P_c[m, x] = w_m cos(2 pi m x / W) / W`,
//!   `P_s[m, x] = w_m sin(..) / W` and the half-spectrum weights `w_m` (so the imaginary parts of
//!   columns 0 and W/2 are ignored, as in the complex-to-real FFT).
//!
//! The matrices are cached per (size, dtype, device). Cost `O(n^3)` per channel (vs
//! `O(n^2 log n)` for the FFT), but matmuls are what accelerators do best.

use crate::backend::Spectrum;
use candle_core::{DType, Device, DeviceLocation, Tensor};
use std::collections::HashMap;
use std::f64::consts::PI;
use std::sync::{Arc, Mutex, OnceLock};

/// Real 2-D DFT of the last two axes by matmuls, `[.., H, W] -> Spectrum [.., H, W/2+1]`.
pub fn rfft2(x: &Tensor) -> candle_core::Result<Spectrum> {
    let (lead, h, w) = split_dims(x.dims())?;
    let (mh, mw) = (
        matrices(h, x.dtype(), x.device())?,
        matrices(w, x.dtype(), x.device())?,
    );
    let x = x.contiguous()?.reshape(((), h, w))?;
    let ar = x.broadcast_matmul(&mw.fwd_cos)?;
    let ai = x.broadcast_matmul(&mw.fwd_sin)?.neg()?;
    let re = (mh.cos.broadcast_matmul(&ar)? + mh.sin.broadcast_matmul(&ai)?)?;
    let im = (mh.cos.broadcast_matmul(&ai)? - mh.sin.broadcast_matmul(&ar)?)?;
    let shape = out_shape(&lead, h, w / 2 + 1);
    Ok(Spectrum {
        re: re.reshape(shape.clone())?,
        im: im.reshape(shape)?,
    })
}

/// Inverse real 2-D DFT by matmuls to width `width`, normalised by `1/(H W)`.
pub fn irfft2(z: &Spectrum, width: usize) -> candle_core::Result<Tensor> {
    let (lead, h, wh) = split_dims(z.re.dims())?;
    if width == 0 || width / 2 + 1 != wh || z.im.dims() != z.re.dims() {
        candle_core::bail!(
            "mfc irfft2 (matmul): width {width} vs spectrum {:?} / {:?}",
            z.re.dims(),
            z.im.dims()
        );
    }
    let (mh, mw) = (
        matrices(h, z.re.dtype(), z.re.device())?,
        matrices(width, z.re.dtype(), z.re.device())?,
    );
    let zr = z.re.contiguous()?.reshape(((), h, wh))?;
    let zi = z.im.contiguous()?.reshape(((), h, wh))?;
    let br = (mh.cos.broadcast_matmul(&zr)? - mh.sin.broadcast_matmul(&zi)?)?;
    let bi = (mh.cos.broadcast_matmul(&zi)? + mh.sin.broadcast_matmul(&zr)?)?;
    let y = ((br.broadcast_matmul(&mw.inv_cos)? - bi.broadcast_matmul(&mw.inv_sin)?)? / h as f64)?;
    y.reshape(out_shape(&lead, h, width))
}

/// The 1-D DFT matrices of one size `n` (`nh = n/2+1`).
struct Dft1 {
    /// `[n, n]`: `cos(2 pi a b / n)`.
    cos: Tensor,
    /// `[n, n]`: `sin(2 pi a b / n)`.
    sin: Tensor,
    /// `[n, nh]`: `cos(2 pi x m / n)`.
    fwd_cos: Tensor,
    /// `[n, nh]`: `sin(2 pi x m / n)`.
    fwd_sin: Tensor,
    /// `[nh, n]`: `w_m cos(2 pi m x / n) / n`.
    inv_cos: Tensor,
    /// `[nh, n]`: `w_m sin(2 pi m x / n) / n`.
    inv_sin: Tensor,
}

impl Dft1 {
    fn new(n: usize, dtype: DType, dev: &Device) -> candle_core::Result<Self> {
        let nh = n / 2 + 1;
        // Reduce a*b mod n before the angle so large sizes stay accurate.
        let angle = |a: usize, b: usize| 2.0 * PI * ((a * b) % n) as f64 / n as f64;
        let weight = |m: usize| if m == 0 || 2 * m == n { 1.0 } else { 2.0 };
        let mat = |rows: usize, cols: usize, f: &dyn Fn(usize, usize) -> f64| {
            let v: Vec<f64> = (0..rows)
                .flat_map(|a| (0..cols).map(move |b| (a, b)))
                .map(|(a, b)| f(a, b))
                .collect();
            Tensor::from_vec(v, (rows, cols), &Device::Cpu)?
                .to_dtype(dtype)?
                .to_device(dev)
        };
        Ok(Self {
            cos: mat(n, n, &|a, b| angle(a, b).cos())?,
            sin: mat(n, n, &|a, b| angle(a, b).sin())?,
            fwd_cos: mat(n, nh, &|x, m| angle(x, m).cos())?,
            fwd_sin: mat(n, nh, &|x, m| angle(x, m).sin())?,
            inv_cos: mat(nh, n, &|m, x| weight(m) * angle(m, x).cos() / n as f64)?,
            inv_sin: mat(nh, n, &|m, x| weight(m) * angle(m, x).sin() / n as f64)?,
        })
    }
}

type Cache = Mutex<HashMap<(usize, DType, DeviceLocation), Arc<Dft1>>>;

/// Cached matrices of size `n` for `dtype` on `dev`.
fn matrices(n: usize, dtype: DType, dev: &Device) -> candle_core::Result<Arc<Dft1>> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (n, dtype, dev.location());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(m) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        if m.cos.device().same_device(dev) {
            return Ok(m.clone());
        }
    }
    let m = Arc::new(Dft1::new(n, dtype, dev)?);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, m.clone());
    Ok(m)
}

fn split_dims(dims: &[usize]) -> candle_core::Result<(Vec<usize>, usize, usize)> {
    match dims {
        [lead @ .., h, w] if *h > 0 && *w > 0 => Ok((lead.to_vec(), *h, *w)),
        _ => candle_core::bail!("mfc dft: need non-empty [.., H, W], got {dims:?}"),
    }
}

fn out_shape(lead: &[usize], h: usize, w: usize) -> Vec<usize> {
    let mut s = lead.to_vec();
    s.extend([h, w]);
    s
}
