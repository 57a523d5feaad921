//! Parameter counts of the default configurations against the counts derived by hand from the
//! architectures (and, where the descriptions allow, the papers' counts).

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use models::{build, parameter_count, ModelConfig};

fn count(kind: &str) -> usize {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    build(&ModelConfig::default_for(kind).unwrap(), vb).unwrap();
    parameter_count(&varmap)
}

#[test]
fn table7_counts_match_the_paper() {
    // 001 Table 7: UNet 2,537,187 and ResNet 597,699 (the authors' code builds exactly these).
    assert_eq!(count("unet"), 2_537_187);
    assert_eq!(count("resnet"), 597_699);
}

#[test]
fn table8_counts_follow_the_descriptions() {
    let conv = |ci: usize, co: usize, k: usize| ci * co * k * k + co;
    // ESPCN: 5x5 3->64, 3x3 64->64, 64->32, 32->32, 1x1 32->3*2^2 (pixel shuffle): the paper's
    // 69,603 has a 1x1 32->3 output on a pre-up-sampled image, 297 fewer.
    let espcn =
        conv(3, 64, 5) + conv(64, 64, 3) + conv(64, 32, 3) + conv(32, 32, 3) + conv(32, 12, 1);
    assert_eq!(espcn, 69_603 + 297);
    assert_eq!(count("espcn"), espcn);
    // SR ResNet: 1x1 open, 9 blocks of two 3x3 100->100, 1x1 close to 12 channels.
    assert_eq!(
        count("srresnet"),
        conv(3, 100, 1) + 9 * 2 * conv(100, 100, 3) + conv(100, 12, 1)
    );
}

#[test]
fn deep_variants_and_mgnet_counts() {
    let conv = |ci: usize, co: usize, k: usize| ci * co * k * k + co;
    let emb = |d: usize| (32 + 32) + (32 * 32 + 32) + (32 * (d - 2 * (d / 4)) + d - 2 * (d / 4));
    assert_eq!(
        count("resnet18"),
        conv(3, 64, 1) + 8 * (2 * conv(64, 64, 3) + emb(64)) + conv(64, 3, 1)
    );
    let bottleneck = conv(256, 64, 1) + conv(64, 64, 3) + emb(64) + conv(64, 256, 1);
    assert_eq!(
        count("resnet50"),
        conv(3, 256, 1) + 16 * bottleneck + conv(256, 3, 1)
    );
    // MgNet[2,2,2,2],256 (004: "8.2M"): theta, A^l and B^l per level, Pi and R per transition
    // (no bias), two batch norms per smoothing step and per transition, 256 -> 10 head.
    let w = 256 * 256 * 9;
    let mgnet = 3 * 256 * 9 + 4 * 2 * w + 3 * 2 * w + (8 + 3) * 2 * 2 * 256 + 256 * 10 + 10;
    assert_eq!(count("mgnet"), mgnet);
    assert!((8_200_000..8_300_000).contains(&mgnet));
}

#[test]
fn counting_without_allocation_agrees_with_building() {
    for kind in ["unet", "resnet", "espcn", "srresnet"] {
        for conv in [
            models::ConvKind::Standard,
            models::ConvKind::Mfc,
            models::ConvKind::Spectral { modes: 2 },
        ] {
            let cfg = ModelConfig::default_for(kind).unwrap().with_conv(conv);
            let varmap = VarMap::new();
            build(
                &cfg,
                VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            )
            .unwrap();
            assert_eq!(
                models::count_parameters(&cfg).unwrap(),
                parameter_count(&varmap),
                "{kind} {conv}"
            );
        }
    }
}
