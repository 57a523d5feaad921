//! Proptest over bytes (issue 19, item 8): reading a damaged or arbitrary checkpoint file
//! returns a typed error (or a consistent checkpoint), never a panic. 16 cases in CI; more
//! with `PROPTEST_CASES=5000 cargo test --release -p models --test checkpoint_never_panics`.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use models::checkpoint::{load, load_model, save};
use models::ModelConfig;
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(16);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("models-ckpt-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The bytes of a valid checkpoint of a tiny ResNet.
fn valid() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let cfg: ModelConfig = serde_json::from_str(
            r#"{"kind":"resnet","hidden":2,"blocks":1,"noise_conditioning":false}"#,
        )
        .unwrap();
        let varmap = VarMap::new();
        models::build(
            &cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let p = dir().join("valid.safetensors");
        save(&p, &cfg, &varmap, &Default::default()).unwrap();
        std::fs::read(&p).unwrap()
    })
}

fn check(bytes: &[u8], name: &str) {
    let p = dir().join(name);
    std::fs::write(&p, bytes).unwrap();
    if let Ok((_, varmap, _)) = load(&p, &Device::Cpu) {
        for v in varmap.all_vars() {
            let _ = v.as_tensor().flatten_all().and_then(|t| t.to_vec1::<f32>());
        }
    }
    let _ = load_model(&p, &Device::Cpu);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_damaged_checkpoint_never_panics(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6), cut in any::<prop::sample::Index>(), truncate in any::<bool>()) {
        let mut b = valid().to_vec();
        for (pos, val) in flips {
            let i = pos.index(b.len());
            b[i] = val;
        }
        if truncate {
            b.truncate(cut.index(b.len()));
        }
        check(&b, "damaged.safetensors");
    }

    #[test]
    fn arbitrary_bytes_never_panic(prefix in any::<u64>(), rest in prop::collection::vec(any::<u8>(), 0..300)) {
        // A plausible header length half of the time, so the parser reaches the header.
        let len = if prefix % 2 == 0 { rest.len() as u64 / 2 } else { prefix };
        check(&[&len.to_le_bytes()[..], &rest].concat(), "arbitrary.safetensors");
    }
}
