//! ESPCN (Shi et al. 2016) for x2 super-resolution, 001 Table 8.

use crate::config::EspcnConfig;
use crate::conv::{Conv, ConvSpec};
use crate::error::{Error, Result};
use crate::model::{validate, Model};
use crate::norm::GroupNorm;
use crate::superres::{pixel_shuffle_residual, UPSCALE};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

/// `y = PixelShuffle_2(W_5 h_4) + P x`, `h_i = LReLU_0.2(LN(C_i h_{i-1}))`, `h_0 = x`, with a 5x5
/// first layer, 3x3 hidden layers of widths `hidden` (64, 64, 32, 32) and a 1x1 output layer of
/// `C_out r^2` filters (authors' `SRParaConvNet` kernel sizes and normalisation, but on the
/// low-resolution mesh with a sub-pixel output instead of on the pre-up-sampled image).
pub struct Espcn {
    in_channels: usize,
    layers: Vec<Conv>,
    output: Conv,
}

impl Espcn {
    /// Build from `cfg`.
    pub fn new(cfg: &EspcnConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.hidden.is_empty() || cfg.hidden.contains(&0) {
            return Err(Error::InvalidConfig(format!(
                "ESPCN hidden widths {:?} must be non-empty and positive",
                cfg.hidden
            )));
        }
        let mut layers = Vec::with_capacity(cfg.hidden.len());
        let mut c_in = cfg.in_channels;
        for (i, &width) in cfg.hidden.iter().enumerate() {
            let k = if i == 0 { 5 } else { 3 };
            layers.push(Conv::new(
                ConvSpec::new(c_in, width, k),
                cfg.conv,
                vb.pp(format!("layers.{i}")),
            )?);
            c_in = width;
        }
        let out_spec =
            ConvSpec::new(c_in, cfg.out_channels * UPSCALE * UPSCALE, 1).init_scale(1e-3);
        let output = Conv::new(out_spec, cfg.conv, vb.pp("output"))?;
        Ok(Self {
            in_channels: cfg.in_channels,
            layers,
            output,
        })
    }
}

impl Model for Espcn {
    fn forward(&self, x: &Tensor, _t: Option<&Tensor>) -> candle_core::Result<Tensor> {
        validate(self, x)?;
        let mut h = x.clone();
        for layer in &self.layers {
            h = candle_nn::ops::leaky_relu(
                &GroupNorm::layer_norm().forward(&layer.forward(&h)?)?,
                0.2,
            )?;
        }
        pixel_shuffle_residual(&self.output.forward(&h)?, x)
    }

    fn downsampling_factor(&self) -> usize {
        1
    }

    fn upscale(&self) -> usize {
        UPSCALE
    }

    fn in_channels(&self) -> usize {
        self.in_channels
    }
}
