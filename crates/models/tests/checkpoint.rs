//! Checkpoint round trip is bit-exact; corrupt or mismatched checkpoints are typed errors.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::checkpoint::{load, load_into, load_model, save};
use models::{build, Error, ModelConfig, ResnetConfig, UnetConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("models-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn small_unet() -> ModelConfig {
    ModelConfig::Unet(UnetConfig {
        channels: Some(vec![8, 16]),
        ..Default::default()
    })
}

fn built(cfg: &ModelConfig) -> (VarMap, Box<dyn models::Model>) {
    let varmap = VarMap::new();
    let net = build(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    for v in varmap.all_vars() {
        v.set(&Tensor::randn(0f32, 1.0, v.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    (varmap, net)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

#[test]
fn saving_the_same_state_gives_the_same_bytes() {
    let cfg = small_unet();
    let (varmap, _) = built(&cfg);
    let extra = BTreeMap::from([
        ("iteration".to_string(), "42".to_string()),
        ("optimizer".to_string(), "adam.safetensors".to_string()),
    ]);
    let path = tmp("same_bytes.safetensors");
    save(&path, &cfg, &varmap, &extra).unwrap();
    let first = std::fs::read(&path).unwrap();
    // The metadata has five entries: a hash map's order would differ between saves.
    for _ in 0..8 {
        save(&path, &cfg, &varmap, &extra).unwrap();
        assert!(
            std::fs::read(&path).unwrap() == first,
            "checkpoint bytes differ"
        );
    }
    assert_eq!(load(&path, &Device::Cpu).unwrap().2, extra);
}

#[test]
fn round_trip_is_bit_exact() {
    let cfg = small_unet();
    let (varmap, net) = built(&cfg);
    let extra = BTreeMap::from([("iteration".to_string(), "42".to_string())]);
    let path = tmp("round_trip.safetensors");
    save(&path, &cfg, &varmap, &extra).unwrap();

    let (cfg2, varmap2, extra2) = load(&path, &Device::Cpu).unwrap();
    assert_eq!(cfg2, cfg);
    assert_eq!(extra2, extra);
    let a = varmap.data().lock().unwrap();
    let b = varmap2.data().lock().unwrap();
    assert_eq!(a.len(), b.len());
    for (name, var) in a.iter() {
        assert_eq!(bits(var.as_tensor()), bits(b[name].as_tensor()), "{name}");
    }
    drop((a, b));

    // The loaded network computes bit-identical outputs.
    let (_, net2, _, _) = load_model(&path, &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu).unwrap();
    let t = Tensor::new(&[0.2f32, 0.7], &Device::Cpu).unwrap();
    assert_eq!(
        bits(&net.forward(&x, Some(&t)).unwrap()),
        bits(&net2.forward(&x, Some(&t)).unwrap())
    );

    // Loading into a freshly built network of the same configuration restores it too.
    let (fresh, _) = built(&cfg);
    load_into(&path, &cfg, &fresh).unwrap();
    let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    for name in names {
        let x = varmap.data().lock().unwrap()[&name].as_tensor().clone();
        let y = fresh.data().lock().unwrap()[&name].as_tensor().clone();
        assert_eq!(bits(&x), bits(&y));
    }
    // Overwriting an existing checkpoint leaves no temporary file behind.
    save(&path, &cfg, &varmap, &extra).unwrap();
    let leftovers = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".round_trip.safetensors.tmp-")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn corrupt_files_are_typed_errors() {
    let cfg = ModelConfig::Resnet(ResnetConfig {
        hidden: 4,
        blocks: 1,
        ..Default::default()
    });
    let (varmap, _) = built(&cfg);
    let path = tmp("corrupt.safetensors");
    save(&path, &cfg, &varmap, &BTreeMap::new()).unwrap();
    let good = std::fs::read(&path).unwrap();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 7].to_vec()),
        ("flipped data bit", {
            let mut b = good.clone();
            let last = b.len() - 3;
            b[last] ^= 0x10;
            b
        }),
        ("garbage", b"not a checkpoint at all".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        let p = tmp(&format!("corrupt-{}.safetensors", what.replace(' ', "-")));
        std::fs::write(&p, bytes).unwrap();
        match load(&p, &Device::Cpu) {
            Err(Error::CorruptCheckpoint { .. }) => {}
            Err(e) => panic!("{what}: wrong error {e}"),
            Ok(_) => panic!("{what}: loaded a corrupt checkpoint"),
        }
    }
    // A plain safetensors file without our metadata.
    let plain = tmp("plain.safetensors");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([(
            "w",
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        )]),
        &plain,
    )
    .unwrap();
    assert!(matches!(
        load(&plain, &Device::Cpu),
        Err(Error::CorruptCheckpoint { .. })
    ));
    assert!(matches!(
        load(&tmp("missing.safetensors"), &Device::Cpu),
        Err(Error::Io { .. })
    ));
}

#[test]
fn wrong_architecture_is_a_typed_error() {
    let cfg = small_unet();
    let (varmap, _) = built(&cfg);
    let path = tmp("arch.safetensors");
    save(&path, &cfg, &varmap, &BTreeMap::new()).unwrap();

    let other = ModelConfig::Resnet(ResnetConfig {
        hidden: 8,
        ..Default::default()
    });
    let (other_vars, _) = built(&other);
    assert!(matches!(
        load_into(&path, &other, &other_vars),
        Err(Error::ArchitectureMismatch { .. })
    ));
    // Same kind, different widths.
    let wider = ModelConfig::Unet(UnetConfig {
        channels: Some(vec![8, 32]),
        ..Default::default()
    });
    let (wider_vars, _) = built(&wider);
    assert!(matches!(
        load_into(&path, &wider, &wider_vars),
        Err(Error::ArchitectureMismatch { .. })
    ));
    // A checkpoint whose variables do not fit its own configuration.
    let lying = tmp("lying.safetensors");
    save(&lying, &wider, &varmap, &BTreeMap::new()).unwrap();
    assert!(matches!(
        load_model(&lying, &Device::Cpu),
        Err(Error::ArchitectureMismatch { .. })
    ));
}

#[test]
fn plain_weights_load_bit_exact_and_refuse_mismatches() {
    let cfg = small_unet();
    let (varmap, _) = built(&cfg);
    let path = tmp("plain-weights.safetensors");
    varmap.save(&path).unwrap();
    let (copy, _) = built(&cfg);
    models::checkpoint::load_weights(&path, &copy).unwrap();
    {
        let (a, b) = (varmap.data().lock().unwrap(), copy.data().lock().unwrap());
        for (name, v) in a.iter() {
            assert_eq!(bits(v.as_tensor()), bits(b[name].as_tensor()), "{name}");
        }
    }
    let other = ModelConfig::Resnet(ResnetConfig {
        hidden: 8,
        ..Default::default()
    });
    let (other_vars, _) = built(&other);
    assert!(matches!(
        models::checkpoint::load_weights(&path, &other_vars),
        Err(Error::ArchitectureMismatch { .. })
    ));
    let junk = tmp("plain-junk.safetensors");
    std::fs::write(&junk, b"not a tensor file").unwrap();
    assert!(matches!(
        models::checkpoint::load_weights(&junk, &copy),
        Err(Error::CorruptCheckpoint { .. })
    ));
    assert!(matches!(
        models::checkpoint::load_weights(&tmp("absent.safetensors"), &copy),
        Err(Error::Io { .. })
    ));
}
