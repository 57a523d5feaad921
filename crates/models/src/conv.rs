//! The convolution layer every model is built from, generic over its [`ConvKind`].

use crate::error::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// Which operator a model's spatial (k > 1) convolutions are (SPEC section 5: "MFC-X is model X
/// with every spatial convolution replaced by an MFC"). Pointwise (1x1) convolutions stay
/// standard in every kind.
///
/// Serde: `"standard"`, `"mfc"`, `{ spectral = { modes = 12 } }`. `FromStr`: `standard`, `mfc`,
/// `spectral` (12 modes) or `spectral:M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum ConvKind {
    /// `k x k` cross-correlation with zero padding `k/2` (via `fastconv::conv2d`).
    #[default]
    Standard,
    /// Mesh-free convolution `D_d exp(T L) (M u)` (000 section 3, SPEC section 2).
    Mfc,
    /// FNO-style spectral convolution on the lowest `modes` Fourier modes (000 Table 8).
    Spectral {
        /// Number of retained modes per direction.
        modes: usize,
    },
}

/// Default number of retained modes for `"spectral"` without a count.
pub const DEFAULT_SPECTRAL_MODES: usize = 12;

impl std::fmt::Display for ConvKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvKind::Standard => write!(f, "standard"),
            ConvKind::Mfc => write!(f, "mfc"),
            ConvKind::Spectral { modes } => write!(f, "spectral:{modes}"),
        }
    }
}

impl std::str::FromStr for ConvKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let unknown = || Error::UnknownName {
            kind: "convolution kind",
            name: s.to_string(),
            expected: "standard, mfc, spectral, spectral:M",
        };
        match s {
            "standard" => Ok(ConvKind::Standard),
            "mfc" => Ok(ConvKind::Mfc),
            "spectral" => Ok(ConvKind::Spectral {
                modes: DEFAULT_SPECTRAL_MODES,
            }),
            _ => {
                let modes = s.strip_prefix("spectral:").ok_or_else(unknown)?;
                match modes.parse::<usize>() {
                    Ok(m) if m > 0 => Ok(ConvKind::Spectral { modes: m }),
                    _ => Err(unknown()),
                }
            }
        }
    }
}

/// Hyper-parameters of one convolution layer (the kind is passed beside it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvSpec {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel size `k` (odd; `1` means pointwise).
    pub k: usize,
    /// Stride: 1, or 2 for a down-sampling convolution.
    pub stride: usize,
    /// Learnable bias.
    pub bias: bool,
    /// Initial weight scale relative to Kaiming-normal (0 gives a zero-initialised layer).
    pub init_scale: f64,
}

impl ConvSpec {
    /// A `k x k`, stride-1 convolution with bias and Kaiming-normal weights.
    pub fn new(c_in: usize, c_out: usize, k: usize) -> Self {
        Self {
            c_in,
            c_out,
            k,
            stride: 1,
            bias: true,
            init_scale: 1.0,
        }
    }
    /// The same layer with stride `s`.
    pub fn stride(self, s: usize) -> Self {
        Self { stride: s, ..self }
    }
    /// The same layer without bias.
    pub fn no_bias(self) -> Self {
        Self {
            bias: false,
            ..self
        }
    }
    /// The same layer with weights scaled by `scale` at initialisation.
    pub fn init_scale(self, scale: f64) -> Self {
        Self {
            init_scale: scale,
            ..self
        }
    }
}

enum Op {
    Standard {
        weight: Tensor,
        bias: Option<Tensor>,
        padding: usize,
    },
    Mfc(mfc::Mfc),
    Spectral(mfc::SpectralConv),
}

/// One convolution layer `[N, C_in, H, W] -> [N, C_out, H/s, W/s]`.
///
/// Standard: `y = w * x + b` (cross-correlation, zero padding `k/2`, stride `s`) computed by
/// `fastconv::conv2d_bias` (bias inside the op). MFC / spectral: the `mfc` layer at full resolution, followed for `s = 2`
/// by the 2x2 average `R` (SPEC section 1), the mesh-free analogue of a strided convolution.
/// Variables live under the layer's prefix as `weight`/`bias` (standard) or under `mfc.` /
/// `spectral.` (mesh-free kinds: their parameters are physical, so Galerkin transfer skips them).
pub struct Conv {
    op: Op,
    stride: usize,
}

impl Conv {
    /// Build the layer described by `spec` with operator `kind` from `vb`.
    pub fn new(spec: ConvSpec, kind: ConvKind, vb: VarBuilder) -> Result<Self> {
        if spec.k == 0 || spec.k.is_multiple_of(2) || spec.c_in == 0 || spec.c_out == 0 {
            return Err(Error::InvalidConfig(format!(
                "convolution needs an odd kernel size and non-zero channels, got {spec:?}"
            )));
        }
        if spec.stride != 1 && spec.stride != 2 {
            return Err(Error::InvalidConfig(format!(
                "stride {} (only 1 and 2 are supported)",
                spec.stride
            )));
        }
        let op = match (kind, spec.k) {
            (ConvKind::Standard, _) | (_, 1) => Self::standard(spec, vb)?,
            (ConvKind::Mfc, _) => {
                let cfg = mfc::MfcConfig {
                    bias: spec.bias,
                    ..Default::default()
                };
                Op::Mfc(mfc::Mfc::new(spec.c_in, spec.c_out, &cfg, vb.pp("mfc"))?)
            }
            (ConvKind::Spectral { modes }, _) => Op::Spectral(mfc::SpectralConv::new(
                spec.c_in,
                spec.c_out,
                modes,
                vb.pp("spectral"),
            )?),
        };
        Ok(Self {
            op,
            stride: spec.stride,
        })
    }

    fn standard(spec: ConvSpec, vb: VarBuilder) -> Result<Op> {
        let fan_in = (spec.c_in * spec.k * spec.k) as f64;
        // Kaiming normal (gain sqrt 2), the candle-nn / PyTorch default family.
        let stdev = spec.init_scale * (2.0 / fan_in).sqrt();
        let winit = if stdev == 0.0 {
            Init::Const(0.0)
        } else {
            Init::Randn { mean: 0.0, stdev }
        };
        let weight = vb.get_with_hints((spec.c_out, spec.c_in, spec.k, spec.k), "weight", winit)?;
        let bias = if spec.bias {
            let bound = 1.0 / fan_in.sqrt();
            Some(vb.get_with_hints(
                spec.c_out,
                "bias",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?)
        } else {
            None
        };
        Ok(Op::Standard {
            weight,
            bias,
            padding: spec.k / 2,
        })
    }
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.op {
            Op::Standard {
                weight,
                bias,
                padding,
            } => match bias {
                Some(b) => fastconv::conv2d_bias(x, weight, b, *padding, self.stride, 1),
                None => fastconv::conv2d(x, weight, *padding, self.stride, 1),
            },
            Op::Mfc(layer) => self.subsample(layer.forward(x)?),
            Op::Spectral(layer) => self.subsample(layer.forward(x)?),
        }
    }
}

impl Conv {
    /// `R y` (2x2 average) for a stride-2 mesh-free layer, `y` otherwise.
    fn subsample(&self, y: Tensor) -> candle_core::Result<Tensor> {
        if self.stride == 2 {
            grids::restrict(&y, grids::Restriction::Average)
        } else {
            Ok(y)
        }
    }
}
