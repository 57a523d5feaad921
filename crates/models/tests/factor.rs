//! `ModelConfig::downsampling_factor` agrees with the built network's.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use models::{
    build, EspcnConfig, MgnetConfig, ModelConfig, ResnetConfig, SrResnetConfig, UnetConfig,
};

#[test]
fn config_factor_matches_the_built_model() {
    let unet = |channels: Vec<usize>| UnetConfig {
        channels: Some(channels),
        ..Default::default()
    };
    let cases = [
        ModelConfig::Unet(unet(vec![4, 8, 8])),
        ModelConfig::Unet(unet(vec![4, 8])),
        ModelConfig::Unet5(unet(vec![4, 4, 4, 4, 4])),
        ModelConfig::Resnet(ResnetConfig {
            hidden: 4,
            blocks: 1,
            ..Default::default()
        }),
        ModelConfig::Espcn(EspcnConfig {
            hidden: vec![4, 4],
            ..Default::default()
        }),
        ModelConfig::Srresnet(SrResnetConfig {
            hidden: 4,
            blocks: 1,
            ..Default::default()
        }),
        ModelConfig::Mgnet(MgnetConfig {
            channels: vec![4, 4, 4],
            smoothings: vec![1, 1, 1],
            ..Default::default()
        }),
    ];
    let expected = [4, 2, 16, 1, 1, 1, 4];
    for (cfg, want) in cases.iter().zip(expected) {
        let varmap = VarMap::new();
        let net = build(
            cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        assert_eq!(net.downsampling_factor(), want, "{}", cfg.kind());
        assert_eq!(cfg.downsampling_factor(), want, "{}", cfg.kind());
    }
}
