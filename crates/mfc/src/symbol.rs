//! The parabolic symbol of a mesh-free convolution (000 eqs. 19, 21; SPEC section 2):
//! `S_c(k) = (alpha_c + i d_c . k) exp(-t_c k^T Sigma_c k)`, built from candle ops so autograd
//! reaches every parameter.
//!
//! Axes: `x` runs along the image width W (columns), `y` along the height H (rows), so
//! `k = (k_x, k_y)`, `d_c = (d_x, d_y)` and `Sigma_c` is written in `(x, y)` coordinates.

use candle_core::{DType, Device, Tensor};
use std::f64::consts::PI;

/// Physical wavenumbers `k = 2 pi m / L` of an `H x W` mesh on a periodic domain of size
/// `L_x x L_y`, as tables over the spectrum (rows in FFT order `m_y = 0, 1, .., -1`).
///
/// On a Nyquist line (`m = -n/2` for even `n`) the mode is `cos(pi n x)`, which cannot tell `+k`
/// from `-k`: there only even functions of that component are kept, i.e. the derivative part and
/// the cross term `2 Sigma_xy k_x k_y` are zeroed (`kx`, `ky`, `kxy` tables), `k^2` is kept. This
/// makes the symbol Hermitian, `S(-k) = conj S(k)`, on every mesh, so the output is real.
#[derive(Debug, Clone)]
pub struct Wavenumbers {
    /// `k_x^2`, `[H, Wc]`.
    pub kx2: Tensor,
    /// `k_y^2`, `[H, Wc]`.
    pub ky2: Tensor,
    /// `k_x k_y`, zero on Nyquist lines, `[H, Wc]`.
    pub kxy: Tensor,
    /// `k_x`, zero on the Nyquist column, `[H, Wc]`.
    pub kx: Tensor,
    /// `k_y`, zero on the Nyquist row, `[H, Wc]`.
    pub ky: Tensor,
}

/// Integer mode of FFT index `i` on `n` points (`-n/2 <= m < n/2`) and whether it is Nyquist.
pub(crate) fn mode(i: usize, n: usize) -> (f64, bool) {
    if 2 * i < n {
        (i as f64, false)
    } else {
        (i as f64 - n as f64, 2 * i == n)
    }
}

impl Wavenumbers {
    /// Tables over the half spectrum (`Wc = W/2 + 1` columns, `m_x = 0 ..= W/2`), as used by
    /// `rfft2`; `extent = (L_x, L_y)` (the unit square is `(1, 1)`).
    pub fn half(
        h: usize,
        w: usize,
        extent: (f64, f64),
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Self> {
        Self::build(h, w, w / 2 + 1, extent, dtype, dev)
    }

    /// Tables over the full spectrum (`Wc = W` columns in FFT order), for dense references.
    pub fn full(
        h: usize,
        w: usize,
        extent: (f64, f64),
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Self> {
        Self::build(h, w, w, extent, dtype, dev)
    }

    fn build(
        h: usize,
        w: usize,
        wc: usize,
        (lx, ly): (f64, f64),
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Self> {
        if h == 0 || w == 0 || !(lx > 0.0 && ly > 0.0) {
            candle_core::bail!("mfc wavenumbers: bad mesh {h}x{w} or extent ({lx}, {ly})");
        }
        let n = h * wc;
        let (mut kx2, mut ky2, mut kxy, mut kx, mut ky) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for i in 0..h {
            let (my, ny) = mode(i, h);
            let k_y = 2.0 * PI * my / ly;
            for j in 0..wc {
                let (mx, nx) = mode(j, w);
                let k_x = 2.0 * PI * mx / lx;
                kx2.push(k_x * k_x);
                ky2.push(k_y * k_y);
                kxy.push(if nx || ny { 0.0 } else { k_x * k_y });
                kx.push(if nx { 0.0 } else { k_x });
                ky.push(if ny { 0.0 } else { k_y });
            }
        }
        let t = |v: Vec<f64>| {
            Tensor::from_vec(v, (h, wc), &Device::Cpu)?
                .to_dtype(dtype)?
                .to_device(dev)
        };
        Ok(Self {
            kx2: t(kx2)?,
            ky2: t(ky2)?,
            kxy: t(kxy)?,
            kx: t(kx)?,
            ky: t(ky)?,
        })
    }
}

/// The per-channel parameters of the symbol, each of shape `[C]` except `d: [C, 2]`.
///
/// Always-valid parameterisation (SPEC section 2): `t = exp(tau) > 0` and
/// `Sigma = Rot(phi) diag(exp(a), exp(b)) Rot(phi)^T` (symmetric positive definite, 000 eq. 28).
#[derive(Debug, Clone)]
pub struct SymbolParams {
    /// `alpha_c`: weight of the identity part.
    pub alpha: Tensor,
    /// `d_c = (d_x, d_y)`: the directional-derivative vector, `[C, 2]`.
    pub d: Tensor,
    /// `phi_c`: orientation of `Sigma_c`'s eigenvectors.
    pub phi: Tensor,
    /// `a_c`: log of `Sigma_c`'s eigenvalue along `(cos phi, sin phi)`.
    pub a: Tensor,
    /// `b_c`: log of `Sigma_c`'s eigenvalue along `(-sin phi, cos phi)`.
    pub b: Tensor,
    /// `tau_c = log t_c`: log of the diffusion time.
    pub tau: Tensor,
}

impl SymbolParams {
    /// Entries of `Sigma = Rot(phi) diag(e^a, e^b) Rot(phi)^T`, each `[C]`:
    /// `(c^2 e^a + s^2 e^b, c s (e^a - e^b), s^2 e^a + c^2 e^b)` with `c = cos phi, s = sin phi`.
    pub fn sigma(&self) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (c, s) = (self.phi.cos()?, self.phi.sin()?);
        let (ea, eb) = (self.a.exp()?, self.b.exp()?);
        let (c2, s2) = (c.sqr()?, s.sqr()?);
        let sxx = ((&c2 * &ea)? + (&s2 * &eb)?)?;
        let sxy = ((c * s)? * (&ea - &eb)?)?;
        let syy = ((s2 * ea)? + (c2 * eb)?)?;
        Ok((sxx, sxy, syy))
    }

    /// The per-channel coefficients of the fused CPU symbol ([`crate::symbol_product`]), `[C, 6]`:
    /// `(alpha, d_x, d_y, q_xx, q_xy, q_yy) = (alpha, d_x, d_y, t Sigma_xx, 2 t Sigma_xy, t Sigma_yy)`,
    /// so that `t k^T Sigma k = q_xx k_x^2 + q_xy k_x k_y + q_yy k_y^2` (000 eq. 21).
    pub fn coefficients(&self) -> candle_core::Result<Tensor> {
        let (sxx, sxy, syy) = self.sigma()?;
        let t = self.tau.exp()?;
        let (dx, dy) = (
            self.d.narrow(1, 0, 1)?.squeeze(1)?,
            self.d.narrow(1, 1, 1)?.squeeze(1)?,
        );
        let (qxx, qxy, qyy) = ((&t * sxx)?, ((&t * sxy)? * 2.0)?, (&t * syy)?);
        Tensor::stack(&[&self.alpha, &dx, &dy, &qxx, &qxy, &qyy], 1)
    }

    /// `S_c(k) = (alpha_c + i d_c . k) exp(-t_c k^T Sigma_c k)` on the tables `k`, returned as
    /// `(Re S, Im S)`, each `[C, H, Wc]` (000 eq. 21; SPEC section 2).
    pub fn symbol(&self, k: &Wavenumbers) -> candle_core::Result<(Tensor, Tensor)> {
        let col = |v: &Tensor| v.unsqueeze(1)?.unsqueeze(2);
        let (sxx, sxy, syy) = self.sigma()?;
        let t = col(&self.tau.exp()?)?;
        let quad =
            (col(&sxx)?.broadcast_mul(&k.kx2)? + (col(&sxy)? * 2.0)?.broadcast_mul(&k.kxy)?)?;
        let quad = (quad + col(&syy)?.broadcast_mul(&k.ky2)?)?;
        let g = quad.broadcast_mul(&t)?.neg()?.exp()?;
        let (dx, dy) = (
            col(&self.d.narrow(1, 0, 1)?.squeeze(1)?)?,
            col(&self.d.narrow(1, 1, 1)?.squeeze(1)?)?,
        );
        let deriv = (dx.broadcast_mul(&k.kx)? + dy.broadcast_mul(&k.ky)?)?;
        let re = g.broadcast_mul(&col(&self.alpha)?)?;
        let im = (deriv * &g)?;
        Ok((re, im))
    }
}
