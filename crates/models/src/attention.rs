//! Single-head spatial self-attention, the block in the middle of the authors' UNet.

use crate::conv::{Conv, ConvKind, ConvSpec};
use crate::error::Result;
use crate::norm::GroupNorm;
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

/// `x + W_o V softmax(Q^T K / sqrt(C))^T` over the `H W` positions, with `[Q; K; V] = W_qkv GN(x)`
/// (1x1 projections; authors' `AttentionBlock` with one head, output projection zero-initialised).
pub struct Attention {
    norm: GroupNorm,
    qkv: Conv,
    proj: Conv,
}

impl Attention {
    /// Attention over `channels` feature maps.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: GroupNorm::unet(channels, vb.pp("norm"))?,
            qkv: Conv::new(
                ConvSpec::new(channels, 3 * channels, 1),
                ConvKind::Standard,
                vb.pp("qkv"),
            )?,
            proj: Conv::new(
                ConvSpec::new(channels, channels, 1).init_scale(0.0),
                ConvKind::Standard,
                vb.pp("proj"),
            )?,
        })
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let qkv = self
            .qkv
            .forward(&self.norm.forward(x)?)?
            .reshape((n, 3 * c, h * w))?;
        let scale = 1.0 / (c as f64).sqrt().sqrt();
        let q = (qkv.narrow(1, 0, c)? * scale)?;
        let k = (qkv.narrow(1, c, c)? * scale)?;
        let v = qkv.narrow(1, 2 * c, c)?.contiguous()?;
        let weights = candle_nn::ops::softmax(
            &q.transpose(1, 2)?.contiguous()?.matmul(&k.contiguous()?)?,
            2,
        )?;
        let out = v
            .matmul(&weights.transpose(1, 2)?.contiguous()?)?
            .reshape((n, c, h, w))?;
        x + self.proj.forward(&out)?
    }
}
