//! The authors' UNet (001 Table 7; DDPM/"improved diffusion" `UNetModel` with one residual block
//! per level), any number of levels, conditioned on the noise level `t`.

use crate::attention::Attention;
use crate::config::UnetConfig;
use crate::conv::{Conv, ConvKind, ConvSpec};
use crate::embedding::{noise_level, UnetEmbedding};
use crate::error::{Error, Result};
use crate::fused_norm::NormAct;
use crate::model::{validate, Model};
use crate::norm::GroupNorm;
use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

/// Residual block `x -> S x + C_2 SiLU(GN(C_1 SiLU(GN x) + W e)))` (authors' `ResBlock`,
/// no dropout: dropout would break the MGE coupling, SPEC section 3). `S` is a 1x1 convolution
/// when the width changes, `C_2` starts at zero for standard convolutions.
struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv,
    emb: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv,
    skip: Option<Conv>,
}

impl ResBlock {
    fn new(
        c_in: usize,
        c_out: usize,
        emb_dim: Option<usize>,
        kind: ConvKind,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm1: GroupNorm::unet(c_in, vb.pp("norm1"))?,
            conv1: Conv::new(ConvSpec::new(c_in, c_out, 3), kind, vb.pp("conv1"))?,
            emb: emb_dim
                .map(|d| linear(d, c_out, vb.pp("emb")))
                .transpose()?,
            norm2: GroupNorm::unet(c_out, vb.pp("norm2"))?,
            conv2: Conv::new(
                ConvSpec::new(c_out, c_out, 3).init_scale(0.0),
                kind,
                vb.pp("conv2"),
            )?,
            skip: if c_in == c_out {
                None
            } else {
                Some(Conv::new(
                    ConvSpec::new(c_in, c_out, 1),
                    kind,
                    vb.pp("skip"),
                )?)
            },
        })
    }

    fn forward(&self, x: &Tensor, emb: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let h = self
            .conv1
            .forward(&self.norm1.forward_act(x, None, NormAct::Silu)?)?;
        let shift = match (&self.emb, emb) {
            (Some(lin), Some(e)) => Some(lin.forward(&e.silu()?)?),
            _ => None,
        };
        let h =
            self.conv2
                .forward(&self.norm2.forward_act(&h, shift.as_ref(), NormAct::Silu)?)?;
        match &self.skip {
            Some(s) => s.forward(x)? + h,
            None => x + h,
        }
    }
}

enum EncoderStage {
    /// Input convolution `C_in -> c_0`.
    Input(Conv),
    Res(Box<ResBlock>),
    /// 3x3 stride-2 convolution (authors' `Downsample` with `conv_resample`).
    Down(Conv),
}

struct DecoderStage {
    res: ResBlock,
    /// Nearest-neighbour x2 up-sampling followed by a 3x3 convolution.
    up: Option<Conv>,
}

/// UNet with widths `c_0 .. c_{L-1}` (32/64/128 for Table 7, five levels for Table 4):
/// encoder `res_blocks` residual blocks per level and stride-2 convolutions between levels,
/// middle `ResBlock, Attention, ResBlock`, decoder `res_blocks + 1` residual blocks per level on
/// the concatenated skip connections, output `Conv(SiLU(GN h))`. Down-sampling factor `2^(L-1)`.
pub struct Unet {
    in_channels: usize,
    factor: usize,
    embedding: Option<UnetEmbedding>,
    encoder: Vec<EncoderStage>,
    middle: (ResBlock, Attention, ResBlock),
    decoder: Vec<DecoderStage>,
    out_norm: GroupNorm,
    out_conv: Conv,
}

impl Unet {
    /// Build from `cfg` with the level widths `channels`.
    pub fn new(cfg: &UnetConfig, channels: &[usize], vb: VarBuilder) -> Result<Self> {
        let kind = cfg.conv;
        let c0 = match channels.first() {
            Some(&c) if channels.iter().all(|&c| c > 0) => c,
            _ => {
                return Err(Error::InvalidConfig(format!(
                    "UNet channels {channels:?} must be non-empty and positive"
                )))
            }
        };
        if cfg.res_blocks == 0 {
            return Err(Error::InvalidConfig("UNet needs res_blocks >= 1".into()));
        }
        let embedding = if cfg.noise_conditioning {
            Some(UnetEmbedding::new(c0, vb.pp("time_embed"))?)
        } else {
            None
        };
        let emb_dim = embedding.as_ref().map(|e| e.out_dim());

        let venc = vb.pp("encoder");
        let mut encoder = vec![EncoderStage::Input(Conv::new(
            ConvSpec::new(cfg.in_channels, c0, 3),
            kind,
            venc.pp("0"),
        )?)];
        let mut skips = vec![c0];
        let mut ch = c0;
        for (level, &width) in channels.iter().enumerate() {
            for _ in 0..cfg.res_blocks {
                let vs = venc.pp(encoder.len().to_string());
                encoder.push(EncoderStage::Res(Box::new(ResBlock::new(
                    ch, width, emb_dim, kind, vs,
                )?)));
                ch = width;
                skips.push(ch);
            }
            if level + 1 < channels.len() {
                let vs = venc.pp(encoder.len().to_string());
                encoder.push(EncoderStage::Down(Conv::new(
                    ConvSpec::new(ch, ch, 3).stride(2),
                    kind,
                    vs,
                )?));
                skips.push(ch);
            }
        }
        let vmid = vb.pp("middle");
        let middle = (
            ResBlock::new(ch, ch, emb_dim, kind, vmid.pp("res1"))?,
            Attention::new(ch, vmid.pp("attention"))?,
            ResBlock::new(ch, ch, emb_dim, kind, vmid.pp("res2"))?,
        );
        let vdec = vb.pp("decoder");
        let mut decoder = Vec::new();
        for (level, &width) in channels.iter().enumerate().rev() {
            for i in 0..=cfg.res_blocks {
                let vs = vdec.pp(decoder.len().to_string());
                let skip = skips
                    .pop()
                    .ok_or_else(|| Error::InvalidConfig("UNet skip bookkeeping".into()))?;
                let res = ResBlock::new(ch + skip, width, emb_dim, kind, vs.pp("res"))?;
                ch = width;
                let up = if level > 0 && i == cfg.res_blocks {
                    Some(Conv::new(ConvSpec::new(ch, ch, 3), kind, vs.pp("up"))?)
                } else {
                    None
                };
                decoder.push(DecoderStage { res, up });
            }
        }
        Ok(Self {
            in_channels: cfg.in_channels,
            factor: 1 << (channels.len() - 1),
            embedding,
            encoder,
            middle,
            decoder,
            out_norm: GroupNorm::unet(c0, vb.pp("out_norm"))?,
            out_conv: Conv::new(
                ConvSpec::new(c0, cfg.out_channels, 3).init_scale(0.0),
                kind,
                vb.pp("out_conv"),
            )?,
        })
    }
}

impl Model for Unet {
    fn forward(&self, x: &Tensor, t: Option<&Tensor>) -> candle_core::Result<Tensor> {
        validate(self, x)?;
        let emb = match &self.embedding {
            Some(e) => Some(e.forward(&noise_level(t, x.dim(0)?).map_err(Error::into_candle)?)?),
            None => None,
        };
        let emb = emb.as_ref();
        let mut hs = Vec::with_capacity(self.encoder.len());
        let mut h = x.clone();
        for stage in &self.encoder {
            h = match stage {
                EncoderStage::Input(c) | EncoderStage::Down(c) => c.forward(&h)?,
                EncoderStage::Res(r) => r.forward(&h, emb)?,
            };
            hs.push(h.clone());
        }
        h = self.middle.0.forward(&h, emb)?;
        h = self.middle.1.forward(&h)?;
        h = self.middle.2.forward(&h, emb)?;
        for stage in &self.decoder {
            let skip = hs
                .pop()
                .ok_or_else(|| candle_core::Error::Msg("UNet skip stack empty".into()))?;
            h = stage.res.forward(&Tensor::cat(&[&h, &skip], 1)?, emb)?;
            if let Some(up) = &stage.up {
                h = up.forward(&crate::upsample::upsample_nearest(&h, 2)?)?;
            }
        }
        self.out_conv
            .forward(&self.out_norm.forward_act(&h, None, NormAct::Silu)?)
    }

    fn downsampling_factor(&self) -> usize {
        self.factor
    }

    fn in_channels(&self) -> usize {
        self.in_channels
    }
}
