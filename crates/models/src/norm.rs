//! Normalisation layers: per-sample group/layer norm (image-to-image nets, SPEC section 3
//! coupling) and batch norm with batch statistics (MgNet, 004 eq. 23).

use crate::error::{Error, Result};
use crate::fused_norm::{group_norm_act, NormAct};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

const EPS: f64 = 1e-5;

/// Group normalisation (Wu & He 2018): per sample and per group of `C/G` channels,
/// `y = (x - mean) / sqrt(var + eps)`, then `gamma_c y + beta_c` when affine.
/// `groups = 1` without affine is `F.layer_norm(x, x.shape[1:])` as in the authors' ResNet.
pub struct GroupNorm {
    groups: usize,
    affine: Option<(Tensor, Tensor)>,
}

impl GroupNorm {
    /// Group norm over `channels` in `groups` groups, with learnable `gamma`/`beta` when `affine`.
    pub fn new(channels: usize, groups: usize, affine: bool, vb: VarBuilder) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::InvalidConfig(format!(
                "{channels} channels cannot form {groups} groups"
            )));
        }
        let affine = if affine {
            Some((
                vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
                vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
            ))
        } else {
            None
        };
        Ok(Self { groups, affine })
    }

    /// Parameter-free layer norm over `(C, H, W)` of each sample.
    pub fn layer_norm() -> Self {
        Self {
            groups: 1,
            affine: None,
        }
    }

    /// The authors' UNet normalisation (GroupNorm32 with 16 groups, affine), using
    /// `gcd(channels, 16)` groups so small test widths stay valid.
    pub fn unet(channels: usize, vb: VarBuilder) -> Result<Self> {
        Self::new(channels, gcd(channels, 16), true, vb)
    }

    /// `act(GN(x + shift))`: the per-sample, per-channel `shift` (`[N, C]`, e.g. the noise
    /// embedding) added before the statistics, then the normalisation, the affine map and `act`,
    /// in one fused op on the CPU ([`crate::fused_norm::group_norm_act`]).
    pub fn forward_act(
        &self,
        x: &Tensor,
        shift: Option<&Tensor>,
        act: NormAct,
    ) -> candle_core::Result<Tensor> {
        let affine = self.affine.as_ref().map(|(g, b)| (g, b));
        group_norm_act(x, shift, affine, self.groups, EPS, act)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_act(x, None, NormAct::Identity)
    }
}

/// Batch normalisation with the statistics of the current batch (004 eq. 23):
/// `y = gamma_c (x - mu_B) / sqrt(sigma_B^2 + eps) + beta_c`, means over `(N, H, W)`.
/// No running averages are kept: evaluation also normalises by its own batch, so evaluate
/// with reasonably large batches.
pub struct BatchNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl BatchNorm {
    /// Batch norm over `channels` with `gamma = 1`, `beta = 0` initially.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            gamma: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
            beta: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
        })
    }
}

impl Module for BatchNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let c = x.dim(1)?;
        let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc
            .sqr()?
            .mean_keepdim(0)?
            .mean_keepdim(2)?
            .mean_keepdim(3)?;
        xc.broadcast_div(&(var + EPS)?.sqrt()?)?
            .broadcast_mul(&self.gamma.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.beta.reshape((1, c, 1, 1))?)
    }
}
