//! The mesh-free convolution layer `MFC(u) = D_d exp(T L) (M u)` (000 section 3.1, eqs. 18-19;
//! SPEC section 2).

use crate::backend::Backend;
use crate::symbol::{SymbolParams, Wavenumbers};
use crate::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

/// Configuration of an [`Mfc`] layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MfcConfig {
    /// Learn a bias in the 1x1 embedding `M u + b` (default true).
    pub bias: bool,
    /// Spectral backend (default [`Backend::Fft`], which falls back to matmuls off the CPU).
    pub backend: Backend,
    /// Range `[s_lo, s_hi]` of the initial kernel width in pixels of the init mesh: `t = (s h0)^2 / 2`
    /// with `s` log-uniform in the range (default `(1, 3)`, SPEC section 2).
    pub init_width: (f64, f64),
    /// The mesh `n0` whose pixel `h0 = 1/n0` sets the initial width (default 64): the layer itself
    /// is mesh-free, so the initialisation has to name a reference mesh.
    pub init_mesh: usize,
}

impl Default for MfcConfig {
    fn default() -> Self {
        Self {
            bias: true,
            backend: Backend::Fft,
            init_width: (1.0, 3.0),
            init_mesh: 64,
        }
    }
}

/// A mesh-free convolution `[N, C_in, H, W] -> [N, C_out, H, W]` for any `H, W`, with the same
/// parameters on every mesh (000 section 3.1; SPEC section 2):
/// `y_c = irfft2( S_c(k) rfft2(M u + b)_c )`, `S_c(k) = (alpha_c + i d_c . k) exp(-t_c k^T Sigma_c k)`.
///
/// Variables (under the `VarBuilder` prefix): `weight [C_out, C_in, 1, 1]`, `bias [C_out]`,
/// `alpha [C_out]`, `d [C_out, 2]`, `phi [C_out]`, `a [C_out]`, `b [C_out]`, `tau [C_out]`.
#[derive(Debug, Clone)]
pub struct Mfc {
    weight: Tensor,
    bias: Option<Tensor>,
    params: SymbolParams,
    backend: Backend,
    c_in: usize,
}

impl Mfc {
    /// Create (or load) the layer's variables with the SPEC initialisation: `M` Kaiming-uniform,
    /// `bias ~ U(+-1/sqrt(C_in))`, `alpha ~ U(-1, 1)`, each component of `d ~ h0 U(-1, 1)` (a derivative
    /// lobe of about one init-mesh pixel), `phi ~ U(0, pi)`, `a, b ~ U(-1/2, 1/2)`,
    /// `tau = log((s h0)^2 / 2)` with `s` log-uniform in `init_width`.
    pub fn new(c_in: usize, c_out: usize, cfg: &MfcConfig, vb: VarBuilder) -> Result<Self> {
        let (lo, hi) = cfg.init_width;
        if c_in == 0 || c_out == 0 {
            return Err(Error::Config(format!(
                "channels must be positive, got {c_in} -> {c_out}"
            )));
        }
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) || cfg.init_mesh == 0 {
            return Err(Error::Config(format!(
                "bad init_width {:?} or init_mesh {}",
                cfg.init_width, cfg.init_mesh
            )));
        }
        let h0 = 1.0 / cfg.init_mesh as f64;
        let tau = |s: f64| ((s * h0).powi(2) / 2.0).ln();
        let u = |lo: f64, up: f64| Init::Uniform { lo, up };
        let weight = vb.get_with_hints(
            (c_out, c_in, 1, 1),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_UNIFORM,
        )?;
        let bound = 1.0 / (c_in as f64).sqrt();
        let bias = if cfg.bias {
            Some(vb.get_with_hints(c_out, "bias", u(-bound, bound))?)
        } else {
            None
        };
        let params = SymbolParams {
            alpha: vb.get_with_hints(c_out, "alpha", u(-1.0, 1.0))?,
            d: vb.get_with_hints((c_out, 2), "d", u(-h0, h0))?,
            phi: vb.get_with_hints(c_out, "phi", u(0.0, std::f64::consts::PI))?,
            a: vb.get_with_hints(c_out, "a", u(-0.5, 0.5))?,
            b: vb.get_with_hints(c_out, "b", u(-0.5, 0.5))?,
            tau: vb.get_with_hints(c_out, "tau", u(tau(lo), tau(hi)))?,
        };
        Ok(Self {
            weight,
            bias,
            params,
            backend: cfg.backend,
            c_in,
        })
    }

    /// The same layer running on another spectral backend.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The symbol's parameters (`alpha, d, phi, a, b, tau`).
    pub fn params(&self) -> &SymbolParams {
        &self.params
    }

    /// The layer applied to an image of mesh size `h` (the periodic domain is `W h x H h`;
    /// [`Module::forward`] uses the unit square, i.e. `h = 1/n` for `n x n` images). Use this to
    /// keep the kernel's physical size when an image is cropped rather than coarsened.
    pub fn forward_with_mesh(&self, x: &Tensor, h: f64) -> candle_core::Result<Tensor> {
        let (_, _, hh, ww) = x.dims4()?;
        self.apply(x, (ww as f64 * h, hh as f64 * h))
    }

    fn apply(&self, x: &Tensor, extent: (f64, f64)) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if c != self.c_in {
            candle_core::bail!("mfc: expected {} input channels, got {c}", self.c_in);
        }
        let c_out = self.weight.dim(0)?;
        let m = self.weight.reshape((c_out, c))?;
        if self.backend.effective(x) == Backend::Fft {
            // Fused CPU path (same maps): one op each for `M u + b`, rfft2, and symbol + irfft2.
            let b = match &self.bias {
                Some(b) => b.clone(),
                None => Tensor::zeros(c_out, x.dtype(), x.device())?,
            };
            let v = crate::pointwise::pointwise(x, &m, &b)?;
            let z = crate::fft::rfft2_packed(&v)?;
            let coef = self.params.coefficients()?;
            return crate::symbol_product::symbol_irfft2(&z, &coef, w, extent);
        }
        let mut v = m
            .broadcast_matmul(&x.reshape((n, c, h * w))?)?
            .reshape((n, c_out, h, w))?;
        if let Some(b) = &self.bias {
            v = v.broadcast_add(&b.reshape((1, c_out, 1, 1))?)?;
        }
        let k = Wavenumbers::half(h, w, extent, x.dtype(), x.device())?;
        let (s_re, s_im) = self.params.symbol(&k)?;
        let spec = self.backend.rfft2(&v)?.mul(&s_re, &s_im)?;
        self.backend.irfft2(&spec, w)
    }
}

impl Module for Mfc {
    /// `[N, C_in, H, W] -> [N, C_out, H, W]` on the periodic unit square (wavenumbers `k = 2 pi m`).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(x, (1.0, 1.0))
    }
}
