//! The authors' image-to-image ResNet (001 Table 7: 2 blocks at 128 channels) and the deeper
//! ResNet18/ResNet50-style variants of 001 Table 4. Every layer works at full resolution.

use crate::activation::{Act, LEAK};
use crate::config::{DeepResnetConfig, ResnetConfig};
use crate::conv::{Conv, ConvKind, ConvSpec};
use crate::embedding::{noise_level, ResnetEmbedding};
use crate::error::{Error, Result};
use crate::fused_norm::NormAct;
use crate::model::{validate, Model};
use crate::norm::GroupNorm;
use crate::residual::EulerStep;
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

/// `act(LN(x + shift))`: the per-sample, per-channel `shift` (`[N, C]`, the noise embedding)
/// added, then the parameter-free per-sample layer norm over `(C, H, W)`, then the activation
/// (the authors' blocks: `LReLU_0.2`); one fused op for ReLU, leaky ReLU and identity.
fn norm_act(x: &Tensor, shift: Option<&Tensor>, act: &Act) -> candle_core::Result<Tensor> {
    let ln = GroupNorm::layer_norm();
    let fused = match act {
        Act::Relu => NormAct::LeakyRelu(0.0),
        Act::LeakyRelu => NormAct::LeakyRelu(LEAK),
        Act::Identity => NormAct::Identity,
        Act::Hat(_) => return act.forward(&ln.forward_act(x, shift, NormAct::Identity)?),
    };
    ln.forward_act(x, shift, fused)
}

/// The residual branch of one block.
enum Block {
    /// `C_2 LReLU(LN(C_1 x + e(t)))`, two 3x3 convolutions (authors' `resnet_block`).
    Basic {
        conv1: Conv,
        emb: Option<ResnetEmbedding>,
        conv2: Conv,
    },
    /// `E LReLU(LN(C LReLU(LN(D x)) + e(t)))` with 1x1 reduction `D` to the inner width, a 3x3 `C`
    /// and 1x1 expansion `E` back (ResNet50's bottleneck).
    Bottleneck {
        reduce: Conv,
        conv: Conv,
        emb: Option<ResnetEmbedding>,
        expand: Conv,
    },
}

impl Block {
    fn forward(&self, x: &Tensor, t: Option<&Tensor>, act: &Act) -> candle_core::Result<Tensor> {
        let shift = |emb: &Option<ResnetEmbedding>| -> candle_core::Result<Option<Tensor>> {
            match (emb, t) {
                (Some(e), Some(t)) => Ok(Some(e.forward(t)?)),
                _ => Ok(None),
            }
        };
        match self {
            Block::Basic { conv1, emb, conv2 } => {
                let h = conv1.forward(x)?;
                conv2.forward(&norm_act(&h, shift(emb)?.as_ref(), act)?)
            }
            Block::Bottleneck {
                reduce,
                conv,
                emb,
                expand,
            } => {
                let h = norm_act(&reduce.forward(x)?, None, act)?;
                let h = conv.forward(&h)?;
                expand.forward(&norm_act(&h, shift(emb)?.as_ref(), act)?)
            }
        }
    }
}

/// How the residual blocks of a [`ResNet`] look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `count` basic blocks (two 3x3 convolutions each).
    Basic {
        /// Number of blocks.
        count: usize,
    },
    /// `count` bottleneck blocks with the given inner width.
    Bottleneck {
        /// Number of blocks.
        count: usize,
        /// Width of the 3x3 convolution.
        inner: usize,
    },
}

/// `y = Close(x_B)`, `x_{b+1} = x_b + dt Block_b(x_b, t)`, `x_0 = Open(x)` with 1x1 `Open`/`Close`
/// (authors' `resnet` at `dt = 1`; `Close` initialised at 1e-3 scale; forward Euler, 002 eq. 2.9).
/// Down-sampling factor 1.
pub struct ResNet {
    in_channels: usize,
    conditioned: bool,
    open: Conv,
    blocks: Vec<Block>,
    act: Act,
    step: EulerStep,
    close: Conv,
}

impl ResNet {
    /// A ResNet of `hidden` channels with the given block layout.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        hidden: usize,
        layout: Layout,
        conditioned: bool,
        kind: ConvKind,
        vb: VarBuilder,
    ) -> Result<Self> {
        if in_channels == 0 || out_channels == 0 || hidden == 0 {
            return Err(Error::InvalidConfig(
                "ResNet channels must be positive".into(),
            ));
        }
        let embedding = |width: usize, vb: VarBuilder| -> Result<Option<ResnetEmbedding>> {
            if conditioned {
                Ok(Some(ResnetEmbedding::new(width, vb.pp("emb"))?))
            } else {
                Ok(None)
            }
        };
        let vblocks = vb.pp("blocks");
        let blocks = match layout {
            Layout::Basic { count } => (0..count)
                .map(|i| {
                    let vb = vblocks.pp(i.to_string());
                    Ok(Block::Basic {
                        conv1: Conv::new(ConvSpec::new(hidden, hidden, 3), kind, vb.pp("conv1"))?,
                        emb: embedding(hidden, vb.clone())?,
                        conv2: Conv::new(ConvSpec::new(hidden, hidden, 3), kind, vb.pp("conv2"))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            Layout::Bottleneck { count, inner } => (0..count)
                .map(|i| {
                    let vb = vblocks.pp(i.to_string());
                    Ok(Block::Bottleneck {
                        reduce: Conv::new(ConvSpec::new(hidden, inner, 1), kind, vb.pp("reduce"))?,
                        conv: Conv::new(ConvSpec::new(inner, inner, 3), kind, vb.pp("conv"))?,
                        emb: embedding(inner, vb.clone())?,
                        expand: Conv::new(ConvSpec::new(inner, hidden, 1), kind, vb.pp("expand"))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(Self {
            in_channels,
            conditioned,
            open: Conv::new(ConvSpec::new(in_channels, hidden, 1), kind, vb.pp("open"))?,
            blocks,
            act: Act::LeakyRelu,
            step: EulerStep::UNIT,
            close: Conv::new(
                ConvSpec::new(hidden, out_channels, 1).init_scale(1e-3),
                kind,
                vb.pp("close"),
            )?,
        })
    }

    /// The same network with residual steps `x + dt Block(x)` (002 eq. 2.9).
    pub fn with_step(mut self, step: EulerStep) -> Self {
        self.step = step;
        self
    }

    /// The same network with activation `act` in its blocks (default: the authors' LReLU).
    pub fn with_activation(mut self, act: Act) -> Self {
        self.act = act;
        self
    }

    /// The Table 7 ResNet from its configuration (`cfg.dt` is the residual step size,
    /// `cfg.activation` the blocks' activation; a trainable Hat support is `hat_support`).
    pub fn from_config(cfg: &ResnetConfig, vb: VarBuilder) -> Result<Self> {
        let step = EulerStep::new(cfg.dt)?;
        let act = Act::new(&cfg.activation, 0, &vb)?;
        let layout = Layout::Basic { count: cfg.blocks };
        Ok(Self::new(
            cfg.in_channels,
            cfg.out_channels,
            cfg.hidden,
            layout,
            cfg.noise_conditioning,
            cfg.conv,
            vb,
        )?
        .with_step(step)
        .with_activation(act))
    }

    /// ResNet18-style: 8 basic blocks at `width` (1 + 16 + 1 = 18 layers).
    pub fn resnet18(cfg: &DeepResnetConfig, vb: VarBuilder) -> Result<Self> {
        let layout = Layout::Basic { count: 8 };
        Self::new(
            cfg.in_channels,
            cfg.out_channels,
            cfg.width,
            layout,
            cfg.noise_conditioning,
            cfg.conv,
            vb,
        )
    }

    /// ResNet50-style: 16 bottleneck blocks of inner width `width` in a trunk of `4 width`
    /// (1 + 48 + 1 = 50 layers).
    pub fn resnet50(cfg: &DeepResnetConfig, vb: VarBuilder) -> Result<Self> {
        let layout = Layout::Bottleneck {
            count: 16,
            inner: cfg.width,
        };
        Self::new(
            cfg.in_channels,
            cfg.out_channels,
            4 * cfg.width,
            layout,
            cfg.noise_conditioning,
            cfg.conv,
            vb,
        )
    }
}

impl Model for ResNet {
    fn forward(&self, x: &Tensor, t: Option<&Tensor>) -> candle_core::Result<Tensor> {
        validate(self, x)?;
        let t = if self.conditioned {
            Some(noise_level(t, x.dim(0)?).map_err(Error::into_candle)?)
        } else {
            None
        };
        let mut h = self.open.forward(x)?;
        for block in &self.blocks {
            h = self
                .step
                .apply(&h, &block.forward(&h, t.as_ref(), &self.act)?)?;
        }
        self.close.forward(&h)
    }

    fn downsampling_factor(&self) -> usize {
        1
    }

    fn in_channels(&self) -> usize {
        self.in_channels
    }
}
