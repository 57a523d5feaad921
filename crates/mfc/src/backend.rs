//! The spectral backend choice and the half-spectrum type both backends share.

use candle_core::Tensor;

/// A complex half spectrum `[.., H, W/2+1]` stored as two real tensors (real and imaginary part).
#[derive(Debug, Clone)]
pub struct Spectrum {
    /// Real part.
    pub re: Tensor,
    /// Imaginary part, same shape as `re`.
    pub im: Tensor,
}

impl Spectrum {
    /// Split a packed `[2, ..]` tensor (re stacked on im) into two views.
    pub(crate) fn from_packed(packed: &Tensor) -> candle_core::Result<Self> {
        Ok(Self {
            re: packed.get(0)?,
            im: packed.get(1)?,
        })
    }

    /// Pointwise complex product `self * (s_re + i s_im)` with broadcasting:
    /// `(a + ib)(c + id) = (ac - bd) + i(ad + bc)`.
    pub fn mul(&self, s_re: &Tensor, s_im: &Tensor) -> candle_core::Result<Self> {
        let re = (self.re.broadcast_mul(s_re)? - self.im.broadcast_mul(s_im)?)?;
        let im = (self.re.broadcast_mul(s_im)? + self.im.broadcast_mul(s_re)?)?;
        Ok(Self { re, im })
    }
}

/// Which implementation of the real 2-D DFT a spectral layer uses (SPEC section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// (a) realfft/rustfft custom ops with exact backward, `O(n^2 log n)` per channel. CPU only:
    /// on other devices the layers fall back to [`Backend::Matmul`].
    #[default]
    Fft,
    /// (b) The DFT as matmuls with cached cos/sin matrices, `O(n^3)` per channel, any device.
    Matmul,
}

impl std::str::FromStr for Backend {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "fft" => Ok(Self::Fft),
            "matmul" => Ok(Self::Matmul),
            other => Err(crate::Error::Config(format!(
                "unknown backend {other:?} (expected fft or matmul)"
            ))),
        }
    }
}

impl Backend {
    /// The backend that actually runs on the device of `x` (`Fft` only on the CPU).
    pub(crate) fn effective(self, x: &Tensor) -> Self {
        if x.device().is_cpu() {
            self
        } else {
            Self::Matmul
        }
    }

    /// Real 2-D DFT of the last two axes, `[.., H, W] -> [.., H, W/2+1]` (unnormalised).
    pub fn rfft2(self, x: &Tensor) -> candle_core::Result<Spectrum> {
        match self.effective(x) {
            Self::Fft => crate::fft::rfft2(x),
            Self::Matmul => crate::dft_matmul::rfft2(x),
        }
    }

    /// Inverse real 2-D DFT to width `width`, normalised by `1/(H W)`.
    pub fn irfft2(self, z: &Spectrum, width: usize) -> candle_core::Result<Tensor> {
        match self.effective(&z.re) {
            Self::Fft => crate::fft::irfft2(z, width),
            Self::Matmul => crate::dft_matmul::irfft2(z, width),
        }
    }
}
