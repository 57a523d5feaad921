//! FNO-style spectral convolution (Li et al. 2020, "Fourier neural operator"; the "FNO-ESPCN"
//! layer of 000 Table 8): learned complex channel mixing on the lowest Fourier modes, zero on the
//! others, sharing the transforms of [`crate::Backend`].

use crate::backend::{Backend, Spectrum};
use crate::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

/// `y_o = irfft2( sum_i W_{i,o}(m) rfft2(u_i)(m) )` for integer modes `-modes <= m_y < modes`,
/// `0 <= m_x < modes` (those that exist on the mesh), zero elsewhere. The weights are indexed by
/// integer modes, i.e. physical wavenumbers `2 pi m` on the unit square, so the layer is also
/// mesh-free once `n >= 2 modes`.
///
/// Variables: `weight_re`, `weight_im`, each `[C_in, C_out, 2 modes, modes]`; rows `0..modes`
/// hold `m_y = 0..modes-1`, rows `modes..2 modes` hold `m_y = -modes..-1`.
#[derive(Debug, Clone)]
pub struct SpectralConv {
    w_re: Tensor,
    w_im: Tensor,
    modes: usize,
    backend: Backend,
}

impl SpectralConv {
    /// Create (or load) the weights, `U(-1/sqrt(C_in), 1/sqrt(C_in))` for real and imaginary
    /// parts (variance preserving on the retained modes, so it can stand in for a 3x3 conv).
    pub fn new(c_in: usize, c_out: usize, modes: usize, vb: VarBuilder) -> Result<Self> {
        if c_in == 0 || c_out == 0 || modes == 0 {
            return Err(Error::Config(format!(
                "spectral conv needs positive sizes, got {c_in} -> {c_out}, modes {modes}"
            )));
        }
        let b = 1.0 / (c_in as f64).sqrt();
        let shape = (c_in, c_out, 2 * modes, modes);
        let w_re = vb.get_with_hints(shape, "weight_re", Init::Uniform { lo: -b, up: b })?;
        let w_im = vb.get_with_hints(shape, "weight_im", Init::Uniform { lo: -b, up: b })?;
        Ok(Self {
            w_re,
            w_im,
            modes,
            backend: Backend::default(),
        })
    }

    /// The same layer running on another spectral backend.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }
}

/// `out[r] = sum_i z[i, r] w[i, o, r]` per retained mode `r`, complex, `[N, Ci, R, Mc] -> [N, Co, R, Mc]`.
fn mix(z: &Spectrum, w_re: &Tensor, w_im: &Tensor) -> candle_core::Result<Spectrum> {
    let (n, ci, r, mc) = z.re.dims4()?;
    let co = w_re.dim(1)?;
    // Modes become the batch axis: z -> [R Mc, N, Ci], w -> [R Mc, Ci, Co].
    let zb = |t: &Tensor| {
        t.permute((2, 3, 0, 1))?
            .contiguous()?
            .reshape((r * mc, n, ci))
    };
    let wb = |t: &Tensor| {
        t.permute((2, 3, 0, 1))?
            .contiguous()?
            .reshape((r * mc, ci, co))
    };
    let (zr, zi, wr, wi) = (zb(&z.re)?, zb(&z.im)?, wb(w_re)?, wb(w_im)?);
    let back = |t: Tensor| {
        t.reshape((r, mc, n, co))?
            .permute((2, 3, 0, 1))?
            .contiguous()
    };
    let re = (zr.matmul(&wr)? - zi.matmul(&wi)?)?;
    let im = (zr.matmul(&wi)? + zi.matmul(&wr)?)?;
    Ok(Spectrum {
        re: back(re)?,
        im: back(im)?,
    })
}

impl Module for SpectralConv {
    /// `[N, C_in, H, W] -> [N, C_out, H, W]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, ci, h, w) = x.dims4()?;
        if ci != self.w_re.dim(0)? {
            candle_core::bail!(
                "spectral conv: expected {} input channels, got {ci}",
                self.w_re.dim(0)?
            );
        }
        let wh = w / 2 + 1;
        // Rows 0..pos are m_y >= 0, the last `neg` rows are m_y < 0; columns 0..mc.
        let (pos, neg, mc) = (
            self.modes.min(h.div_ceil(2)),
            self.modes.min(h / 2),
            self.modes.min(wh),
        );
        let z = self.backend.rfft2(x)?;
        let pick = |t: &Tensor| -> candle_core::Result<Tensor> {
            let t = t.narrow(3, 0, mc)?;
            Tensor::cat(&[t.narrow(2, 0, pos)?, t.narrow(2, h - neg, neg)?], 2)
        };
        let wpick = |t: &Tensor| -> candle_core::Result<Tensor> {
            let t = t.narrow(3, 0, mc)?;
            Tensor::cat(
                &[
                    t.narrow(2, 0, pos)?,
                    t.narrow(2, 2 * self.modes - neg, neg)?,
                ],
                2,
            )
        };
        let out = mix(
            &Spectrum {
                re: pick(&z.re)?,
                im: pick(&z.im)?,
            },
            &wpick(&self.w_re)?,
            &wpick(&self.w_im)?,
        )?;
        // Back to the full half spectrum: zero rows between the two bands, zero columns after mc.
        let place = |t: &Tensor| -> candle_core::Result<Tensor> {
            let top = t.narrow(2, 0, pos)?.pad_with_zeros(2, 0, h - pos - neg)?;
            Tensor::cat(&[top, t.narrow(2, pos, neg)?], 2)?.pad_with_zeros(3, 0, wh - mc)
        };
        self.backend.irfft2(
            &Spectrum {
                re: place(&out.re)?,
                im: place(&out.im)?,
            },
            w,
        )
    }
}
