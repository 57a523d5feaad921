//! Networks for multiscale training (SPEC section 5): the authors' UNet and ResNet (001 Table 7),
//! deeper variants (Table 4), ESPCN and the SR ResNet (Table 8), MgNet (004), each generic over
//! its convolution kind (standard, mesh-free, spectral); checkpoints in safetensors; Galerkin
//! transfer of a trained network between meshes (002 section 5.2).
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

pub use config::{
    build, Activation, DeepResnetConfig, EspcnConfig, HatConfig, MgnetConfig, ModelConfig,
    ResnetConfig, SrResnetConfig, UnetConfig,
};
pub use conv::{Conv, ConvKind, ConvSpec};
pub use error::{Error, Result};
pub use model::{check_input, Model};
pub use params::{count_parameters, parameter_count};
