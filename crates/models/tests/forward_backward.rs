//! Every model and convolution kind: forward and backward at two meshes with small widths,
//! output shapes, gradients reaching every parameter, typed errors for bad meshes.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use models::{
    build, ConvKind, DeepResnetConfig, EspcnConfig, MgnetConfig, ModelConfig, ResnetConfig,
    SrResnetConfig, UnetConfig,
};

/// Small versions of every model kind, with two meshes each fits (coarsest UNet/MgNet level at
/// least 4x4: on 1x1 or 2x2 meshes normalisation or the spectral truncation legitimately zero
/// some gradients).
fn small_models(conv: ConvKind) -> Vec<(ModelConfig, [usize; 2])> {
    let unet = |channels: Vec<usize>| UnetConfig {
        channels: Some(channels),
        conv,
        ..Default::default()
    };
    let deep = DeepResnetConfig {
        width: 4,
        conv,
        ..Default::default()
    };
    vec![
        (ModelConfig::Unet(unet(vec![8, 16, 16])), [16, 24]),
        (ModelConfig::Unet5(unet(vec![8, 8, 8, 8, 8])), [64, 96]),
        (
            ModelConfig::Resnet(ResnetConfig {
                hidden: 8,
                conv,
                ..Default::default()
            }),
            [6, 10],
        ),
        (ModelConfig::Resnet18(deep.clone()), [6, 8]),
        (ModelConfig::Resnet50(deep), [6, 8]),
        (
            ModelConfig::Espcn(EspcnConfig {
                hidden: vec![8, 8, 4, 4],
                conv,
                ..Default::default()
            }),
            [6, 8],
        ),
        (
            ModelConfig::Srresnet(SrResnetConfig {
                hidden: 8,
                blocks: 2,
                conv,
                ..Default::default()
            }),
            [6, 8],
        ),
        (
            ModelConfig::Mgnet(MgnetConfig {
                classes: 5,
                channels: vec![4, 4, 8, 8],
                conv,
                ..Default::default()
            }),
            [32, 48],
        ),
    ]
}

/// Add N(0, 0.5^2) noise to every variable (zero-initialised layers would otherwise block
/// gradients; a perturbation keeps mesh-free kernel widths in range).
fn randomise(varmap: &VarMap) {
    for var in varmap.all_vars() {
        let r = (Tensor::randn(0f32, 0.5, var.shape(), var.device()).unwrap() + var.as_tensor())
            .unwrap();
        var.set(&r).unwrap();
    }
}

fn check_model(cfg: &ModelConfig, meshes: [usize; 2]) {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let net = build(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    randomise(&varmap);
    let names: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(!names.is_empty());
    for n in meshes {
        let batch = 4;
        let x = Tensor::randn(0f32, 1.0, (batch, 3, n, n), &dev).unwrap();
        let t = Tensor::new(&[0.3f32, 0.8, 0.1, 0.5], &dev).unwrap();
        let y = net.forward(&x, Some(&t)).unwrap();
        let expected: Vec<usize> = match cfg {
            ModelConfig::Mgnet(c) => vec![batch, c.classes],
            _ => vec![batch, 3, n * net.upscale(), n * net.upscale()],
        };
        assert_eq!(y.dims(), expected.as_slice(), "{} at {n}", cfg.kind());
        let weights = Tensor::randn(0f32, 1.0, y.shape(), &dev).unwrap();
        let loss = (y * weights).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in &names {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{}: no gradient for {name} at {n}", cfg.kind()));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                norm.is_finite() && norm > 0.0,
                "{}: gradient of {name} is {norm} at {n}",
                cfg.kind()
            );
        }
    }
}

#[test]
fn standard_models_forward_backward() {
    for (cfg, meshes) in small_models(ConvKind::Standard) {
        check_model(&cfg, meshes);
    }
}

#[test]
fn bad_mesh_is_a_typed_error() {
    let (cfg, _) = small_models(ConvKind::Standard).remove(0);
    let varmap = VarMap::new();
    let net = build(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let x = Tensor::zeros((1, 3, 10, 12), DType::F32, &Device::Cpu).unwrap();
    let t = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
    let err = net.forward(&x, Some(&t)).unwrap_err();
    assert!(
        matches!(
            models::Error::from_candle(&err),
            Some(models::Error::MeshNotDivisible {
                h: 10,
                w: 12,
                factor: 4
            })
        ),
        "{err}"
    );
    assert!(matches!(
        models::check_input(net.as_ref(), &x),
        Err(models::Error::MeshNotDivisible { .. })
    ));
    let wrong_channels = Tensor::zeros((1, 2, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let err = net.forward(&wrong_channels, Some(&t)).unwrap_err();
    assert!(
        matches!(
            models::Error::from_candle(&err),
            Some(models::Error::InputShape { .. })
        ),
        "{err}"
    );
    let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let err = net.forward(&x, None).unwrap_err();
    assert!(
        matches!(
            models::Error::from_candle(&err),
            Some(models::Error::MissingNoiseLevel)
        ),
        "{err}"
    );
}

#[test]
fn noise_level_changes_the_output() {
    let cfg = ModelConfig::Resnet(ResnetConfig {
        hidden: 8,
        ..Default::default()
    });
    let varmap = VarMap::new();
    let net = build(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    randomise(&varmap);
    let x = Tensor::randn(0f32, 1.0, (1, 3, 8, 8), &Device::Cpu).unwrap();
    let y1 = net
        .forward(&x, Some(&Tensor::new(&[0.1f32], &Device::Cpu).unwrap()))
        .unwrap();
    let y2 = net
        .forward(&x, Some(&Tensor::new(&[0.9f32], &Device::Cpu).unwrap()))
        .unwrap();
    let diff = (y1 - y2)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff > 1e-4, "t has no effect: {diff}");
}

#[test]
fn config_serde_round_trip_and_unknown_fields() {
    for (cfg, _) in small_models(ConvKind::Spectral { modes: 4 }) {
        let json = serde_json::to_string(&cfg).unwrap();
        let back: ModelConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg, "{json}");
    }
    let cfg: ModelConfig = serde_json::from_str(r#"{"kind":"unet5","conv":"mfc"}"#).unwrap();
    assert_eq!(
        cfg,
        ModelConfig::Unet5(UnetConfig {
            conv: ConvKind::Mfc,
            ..Default::default()
        })
    );
    assert!(serde_json::from_str::<ModelConfig>(r#"{"kind":"resnet","hiden":64}"#).is_err());
    assert!(serde_json::from_str::<ModelConfig>(r#"{"kind":"vgg"}"#).is_err());
    assert_eq!(
        "spectral:7".parse::<ConvKind>().unwrap(),
        ConvKind::Spectral { modes: 7 }
    );
    assert!("spectral:0".parse::<ConvKind>().is_err());
    assert!("fft".parse::<ConvKind>().is_err());
}

#[test]
fn mfc_models_forward_backward() {
    for (cfg, meshes) in small_models(ConvKind::Mfc) {
        check_model(&cfg, meshes);
    }
}

#[test]
fn spectral_models_forward_backward() {
    for (cfg, meshes) in small_models(ConvKind::Spectral { modes: 3 }) {
        check_model(&cfg, meshes);
    }
}
