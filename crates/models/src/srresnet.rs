//! The 9-layer SR ResNet of 001 Table 8 for x2 super-resolution.

use crate::config::SrResnetConfig;
use crate::error::Result;
use crate::model::{validate, Model};
use crate::resnet::{Layout, ResNet};
use crate::superres::{pixel_shuffle_residual, UPSCALE};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// `y = PixelShuffle_2(ResNet(x)) + P x`: the authors' ResNet trunk (`blocks` basic blocks at
/// `hidden` channels, no noise conditioning) on the low-resolution mesh, whose 1x1 output layer
/// has `C_out r^2` channels for the sub-pixel rearrangement.
pub struct SrResNet {
    trunk: ResNet,
    in_channels: usize,
}

impl SrResNet {
    /// Build from `cfg`.
    pub fn new(cfg: &SrResnetConfig, vb: VarBuilder) -> Result<Self> {
        let layout = Layout::Basic { count: cfg.blocks };
        let out = cfg.out_channels * UPSCALE * UPSCALE;
        let trunk = ResNet::new(
            cfg.in_channels,
            out,
            cfg.hidden,
            layout,
            false,
            cfg.conv,
            vb,
        )?;
        Ok(Self {
            trunk,
            in_channels: cfg.in_channels,
        })
    }
}

impl Model for SrResNet {
    fn forward(&self, x: &Tensor, _t: Option<&Tensor>) -> candle_core::Result<Tensor> {
        validate(self, x)?;
        pixel_shuffle_residual(&self.trunk.forward(x, None)?, x)
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
