//! Serde model configurations and [`build`].

use crate::conv::ConvKind;
use crate::error::{Error, Result};
use crate::espcn::Espcn;
use crate::mgnet::MgNet;
use crate::model::Model;
use crate::resnet::ResNet;
use crate::srresnet::SrResNet;
use crate::unet::Unet;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// UNet (`kind = "unet"`, 001 Table 7, or `"unet5"`, Table 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Width per level; `None` is the kind's default: `[32, 64, 128]` (unet) or
    /// `[32, 64, 128, 256, 512]` (unet5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<usize>>,
    /// Residual blocks per encoder level (the decoder has one more).
    pub res_blocks: usize,
    /// Condition on the noise level `t` (denoising).
    pub noise_conditioning: bool,
    /// Convolution kind of the spatial convolutions.
    pub conv: ConvKind,
}

impl Default for UnetConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            channels: None,
            res_blocks: 1,
            noise_conditioning: true,
            conv: ConvKind::Standard,
        }
    }
}

/// The authors' ResNet (`kind = "resnet"`, 001 Table 7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResnetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Hidden channels (128).
    pub hidden: usize,
    /// Residual blocks (2).
    pub blocks: usize,
    /// Residual step size: blocks are `x + dt F(x)` (forward Euler, 002 eq. 2.9); 1 (the
    /// authors' ResNet) is the default and is not written out.
    #[serde(skip_serializing_if = "is_unit_step")]
    pub dt: f64,
    /// Activation inside the blocks: the authors' leaky ReLU by default (not written out), or
    /// e.g. the Hat of 004.
    #[serde(skip_serializing_if = "is_leaky_relu")]
    pub activation: Activation,
    /// Condition on the noise level `t` (denoising).
    pub noise_conditioning: bool,
    /// Convolution kind of the spatial convolutions.
    pub conv: ConvKind,
}

fn is_unit_step(dt: &f64) -> bool {
    *dt == 1.0
}

fn is_leaky_relu(a: &Activation) -> bool {
    *a == Activation::LeakyRelu
}

impl Default for ResnetConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            hidden: 128,
            blocks: 2,
            dt: 1.0,
            activation: Activation::LeakyRelu,
            noise_conditioning: true,
            conv: ConvKind::Standard,
        }
    }
}

/// ResNet18/ResNet50-style image-to-image networks (`kind = "resnet18" | "resnet50"`, 001 Table 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepResnetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Block width (ResNet18: trunk width; ResNet50: bottleneck width, trunk `4 width`).
    pub width: usize,
    /// Condition on the noise level `t` (denoising).
    pub noise_conditioning: bool,
    /// Convolution kind of the spatial convolutions.
    pub conv: ConvKind,
}

impl Default for DeepResnetConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            width: 64,
            noise_conditioning: true,
            conv: ConvKind::Standard,
        }
    }
}

/// ESPCN for x2 super-resolution (`kind = "espcn"`, 001 Table 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EspcnConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Widths of the hidden layers (64, 64, 32, 32).
    pub hidden: Vec<usize>,
    /// Convolution kind of the spatial convolutions.
    pub conv: ConvKind,
}

impl Default for EspcnConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            hidden: vec![64, 64, 32, 32],
            conv: ConvKind::Standard,
        }
    }
}

/// The 9-layer SR ResNet (`kind = "srresnet"`, 001 Table 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrResnetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Hidden channels (100).
    pub hidden: usize,
    /// Residual blocks (9).
    pub blocks: usize,
    /// Convolution kind of the spatial convolutions.
    pub conv: ConvKind,
}

impl Default for SrResnetConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            hidden: 100,
            blocks: 9,
            conv: ConvKind::Standard,
        }
    }
}

/// Activation of a model (`activation = "relu"`, or `activation = { hat = { support = [5.0,
/// 10.0], trainable = true } }` in TOML); applied by [`crate::activation::Act`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `max(x, 0)`.
    #[default]
    Relu,
    /// `max(x, 0.2 x)` (the authors' ResNet).
    #[serde(rename = "lrelu")]
    LeakyRelu,
    /// `x` (linear MgNet: a multigrid iteration with learned operators).
    Identity,
    /// The locally supported Hat of 004, [`crate::activation::hat`].
    Hat(HatConfig),
}

/// Support of the Hat activation (004 "Locally supported activation for CNNs").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HatConfig {
    /// Support `s` per level, finest first (`hat_s` is nonzero on `(0, s)`); the last value
    /// holds for deeper levels. 004's MgNet uses `[5, 10, 15, 20]` (coarser levels wider).
    pub support: Vec<f64>,
    /// Train the support (one scalar per level, initialised to `support`), as in 004's
    /// "trainable support" table.
    pub trainable: bool,
}

impl Default for HatConfig {
    fn default() -> Self {
        Self {
            support: vec![5.0, 10.0, 15.0, 20.0],
            trainable: false,
        }
    }
}

impl HatConfig {
    /// The support at `level` (the last entry beyond the list); `Error::InvalidConfig` unless
    /// every entry is finite and positive.
    pub fn support_at(&self, level: usize) -> Result<f64> {
        crate::activation::check_supports(&self.support)?;
        Ok(self.support[level.min(self.support.len() - 1)])
    }
}

/// MgNet classifier (`kind = "mgnet"`, 004).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MgnetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Number of classes.
    pub classes: usize,
    /// Channels per level (256 each in 004's `MgNet[2,2,2,2],256`).
    pub channels: Vec<usize>,
    /// Smoothing steps per level (`[2, 2, 2, 2]`).
    pub smoothings: Vec<usize>,
    /// Activation in `sigma`.
    pub activation: Activation,
    /// Batch norm inside `sigma` (004 eq. 25).
    pub batch_norm: bool,
    /// Convolution kind of the 3x3 convolutions.
    pub conv: ConvKind,
}

impl Default for MgnetConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            classes: 10,
            channels: vec![256; 4],
            smoothings: vec![2; 4],
            activation: Activation::Relu,
            batch_norm: true,
            conv: ConvKind::Standard,
        }
    }
}

/// Every model this crate builds, tagged by `kind` (JSON/TOML: `kind = "unet"`, then the fields
/// of the variant's config, all optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelConfig {
    /// 3-level UNet, 32/64/128 (001 Table 7).
    Unet(UnetConfig),
    /// 5-level UNet (001 Table 4).
    Unet5(UnetConfig),
    /// 2 residual blocks at 128 channels (001 Table 7).
    Resnet(ResnetConfig),
    /// ResNet18-style (001 Table 4).
    Resnet18(DeepResnetConfig),
    /// ResNet50-style (001 Table 4).
    Resnet50(DeepResnetConfig),
    /// ESPCN, x2 super-resolution (001 Table 8).
    Espcn(EspcnConfig),
    /// 9-block SR ResNet, x2 super-resolution (001 Table 8).
    Srresnet(SrResnetConfig),
    /// MgNet classifier (004).
    Mgnet(MgnetConfig),
}

impl ModelConfig {
    /// Every model kind name, in table order.
    pub const KINDS: [&'static str; 8] = [
        "unet", "unet5", "resnet", "resnet18", "resnet50", "espcn", "srresnet", "mgnet",
    ];

    /// The default configuration of model `kind` (one of [`ModelConfig::KINDS`]).
    pub fn default_for(kind: &str) -> Result<Self> {
        Ok(match kind {
            "unet" => Self::Unet(UnetConfig::default()),
            "unet5" => Self::Unet5(UnetConfig::default()),
            "resnet" => Self::Resnet(ResnetConfig::default()),
            "resnet18" => Self::Resnet18(DeepResnetConfig::default()),
            "resnet50" => Self::Resnet50(DeepResnetConfig::default()),
            "espcn" => Self::Espcn(EspcnConfig::default()),
            "srresnet" => Self::Srresnet(SrResnetConfig::default()),
            "mgnet" => Self::Mgnet(MgnetConfig::default()),
            _ => {
                return Err(Error::UnknownName {
                    kind: "model",
                    name: kind.to_string(),
                    expected: "unet, unet5, resnet, resnet18, resnet50, espcn, srresnet, mgnet",
                })
            }
        })
    }

    /// Whether the network treats every sample on its own: group/layer norm or no
    /// normalisation, no batch statistics, so its output for a sample does not depend on the
    /// other samples of the batch. Every model but MgNet with batch norm (004 eq. 25). Such models
    /// give the same MGE loss and gradient with same-mesh model calls fused
    /// (`mge::Estimator::set_fused_levels`), which training turns on for them.
    pub fn normalises_per_sample(&self) -> bool {
        !matches!(self, Self::Mgnet(c) if c.batch_norm)
    }

    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unet(_) => "unet",
            Self::Unet5(_) => "unet5",
            Self::Resnet(_) => "resnet",
            Self::Resnet18(_) => "resnet18",
            Self::Resnet50(_) => "resnet50",
            Self::Espcn(_) => "espcn",
            Self::Srresnet(_) => "srresnet",
            Self::Mgnet(_) => "mgnet",
        }
    }

    fn conv_mut(&mut self) -> &mut ConvKind {
        match self {
            Self::Unet(c) | Self::Unet5(c) => &mut c.conv,
            Self::Resnet(c) => &mut c.conv,
            Self::Resnet18(c) | Self::Resnet50(c) => &mut c.conv,
            Self::Espcn(c) => &mut c.conv,
            Self::Srresnet(c) => &mut c.conv,
            Self::Mgnet(c) => &mut c.conv,
        }
    }

    /// The convolution kind.
    pub fn conv(&self) -> ConvKind {
        *self.clone().conv_mut()
    }

    /// The same configuration with convolution kind `conv`.
    pub fn with_conv(mut self, conv: ConvKind) -> Self {
        *self.conv_mut() = conv;
        self
    }

    /// The down-sampling factor of the network this configuration builds (what
    /// [`Model::downsampling_factor`] returns, without building it): `2^(levels-1)` for the UNets
    /// and MgNet, 1 for the full-resolution models.
    pub fn downsampling_factor(&self) -> usize {
        match self {
            Self::Unet(c) => 1 << (Self::unet_channels(c, 3).len().max(1) - 1),
            Self::Unet5(c) => 1 << (Self::unet_channels(c, 5).len().max(1) - 1),
            Self::Mgnet(c) => 1 << (c.channels.len().max(1) - 1),
            Self::Resnet(_)
            | Self::Resnet18(_)
            | Self::Resnet50(_)
            | Self::Espcn(_)
            | Self::Srresnet(_) => 1,
        }
    }

    /// The UNet level widths this configuration builds.
    fn unet_channels(cfg: &UnetConfig, levels: usize) -> Vec<usize> {
        cfg.channels
            .clone()
            .unwrap_or_else(|| (0..levels).map(|l| 32 << l).collect())
    }
}

/// Build the network `cfg` describes, creating or reading its variables through `vb`
/// (`VarBuilder::from_varmap` for training, a loaded checkpoint for inference).
pub fn build(cfg: &ModelConfig, vb: VarBuilder) -> Result<Box<dyn Model>> {
    Ok(match cfg {
        ModelConfig::Unet(c) => Box::new(Unet::new(c, &ModelConfig::unet_channels(c, 3), vb)?),
        ModelConfig::Unet5(c) => Box::new(Unet::new(c, &ModelConfig::unet_channels(c, 5), vb)?),
        ModelConfig::Resnet(c) => Box::new(ResNet::from_config(c, vb)?),
        ModelConfig::Resnet18(c) => Box::new(ResNet::resnet18(c, vb)?),
        ModelConfig::Resnet50(c) => Box::new(ResNet::resnet50(c, vb)?),
        ModelConfig::Espcn(c) => Box::new(Espcn::new(c, vb)?),
        ModelConfig::Srresnet(c) => Box::new(SrResNet::new(c, vb)?),
        ModelConfig::Mgnet(c) => Box::new(MgNet::new(c, vb)?),
    })
}
