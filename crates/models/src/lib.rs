//! Networks for multiscale training (SPEC section 5): the authors' UNet and ResNet (001 Table 7),
//! deeper variants (Table 4), ESPCN and the SR ResNet (Table 8), MgNet (004), each generic over
//! its convolution kind (standard, mesh-free, spectral); checkpoints in safetensors; Galerkin
//! transfer of a trained network between meshes (002 section 5.2).
//!
//! Sources: `001` is *Multiscale Training of Convolutional Neural Networks* (latest version, `000`
//! its earlier one); `002`, Haber, Ruthotto and Holtham, *Learning across scales*; `003`, Crafts,
//! *Multiresolution Methods for Convolutional Neural Networks*; `004`, Xu, *Deep Learning and
//! Numerical PDEs: Image Classification and MgNet* (slides).
//!
//! | file | what |
//! |---|---|
//! | `model.rs` | the object-safe interface every network implements |
//! | `config.rs` | serde configurations and `build` (001 Tables 4, 7, 8) |
//! | `conv.rs` | the convolution layer over its kind: standard, mesh-free (000 section 3), spectral (000 Table 8) |
//! | `unet.rs` | the authors' UNet (001 Table 7, Table 4) |
//! | `resnet.rs` | the authors' ResNet (001 Table 7) and ResNet18/50-style variants (001 Table 4) |
//! | `residual.rs` | residual blocks as forward Euler `y + dt F(y)` (002 eq. 2.9, 003 eq. 2.9) |
//! | `espcn.rs` | ESPCN (Shi et al. 2016), x2 super-resolution (001 Table 8) |
//! | `srresnet.rs` | the 9-layer SR ResNet (001 Table 8) |
//! | `superres.rs` | the x2 output stage shared by ESPCN and SR ResNet |
//! | `mgnet.rs` | MgNet (He & Xu 2019; 004 eq. 25) |
//! | `classifier.rs` | the small classifier of 002 section 5 and 003 section 3.2, head transfer (003 section 3.1.3) |
//! | `transfer.rs` | Galerkin transfer of a trained network (002 eqs. 2.6b, 4.14; sections 4, 5.2) |
//! | `attention.rs` | spatial self-attention in the UNet |
//! | `embedding.rs` | noise-level conditioning (sinusoidal embedding + MLPs) |
//! | `norm.rs` | group/layer norm per sample, batch norm (004 eq. 23) |
//! | `fused_norm.rs` | group norm + shift + activation as one CPU op |
//! | `upsample.rs` | nearest up-sampling and its adjoint (block sums) as CPU ops, each the other's backward |
//! | `activation.rs` | ReLU, leaky ReLU, identity, the Hat of 004 |
//! | `init.rs` | seeded initialisation |
//! | `params.rs` | parameter counting |
//! | `checkpoint.rs` | safetensors checkpoints with configuration and checksum |
//! | `atomic.rs` | atomic file writes and the FNV-1a checksum |
//! | `error.rs` | typed errors of `models` |
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use models::{build, ModelConfig, ResnetConfig};
//!
//! let cfg = ModelConfig::Resnet(ResnetConfig { hidden: 8, ..Default::default() });
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let net = build(&cfg, vb)?;
//! let x = Tensor::zeros((2, 3, 16, 16), DType::F32, &Device::Cpu)?;
//! let t = Tensor::new(&[0.5f32, 0.9], &Device::Cpu)?;
//! let y = net.forward(&x, Some(&t))?;
//! assert_eq!(y.dims(), &[2, 3, 16, 16]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod activation;
pub mod atomic;
pub mod attention;
pub mod checkpoint;
pub mod classifier;
pub mod config;
pub mod conv;
pub mod embedding;
pub mod error;
pub mod espcn;
pub mod fused_norm;
pub mod init;
pub mod mgnet;
pub mod model;
pub mod norm;
pub mod params;
pub mod residual;
pub mod resnet;
pub mod srresnet;
pub mod superres;
pub mod transfer;
pub mod unet;
pub mod upsample;

pub use config::{
    build, Activation, DeepResnetConfig, EspcnConfig, HatConfig, MgnetConfig, ModelConfig,
    ResnetConfig, SrResnetConfig, UnetConfig,
};
pub use conv::{Conv, ConvKind, ConvSpec};
pub use error::{Error, Result};
pub use model::{check_input, Model};
pub use params::{count_parameters, parameter_count};
