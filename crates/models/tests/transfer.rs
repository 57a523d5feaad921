//! Galerkin network transfer (002 section 5.2): the restricted network on `R u` approximates
//! `R f(u)` better than the unrestricted network on `R u`; prolongation inverts restriction.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use grids::{Prolongation, Restriction};
use models::transfer::{prolong_network, restrict_network};
use models::{build, ConvKind, EspcnConfig, ModelConfig, ResnetConfig, UnetConfig};

/// The network's variables with seeded values: gains `1 + 0.3 z`, biases `0.3 z`, weights
/// Kaiming-normal `z sqrt(2 / fan_in)` (z standard normal, Box-Muller), in name order.
fn seeded(cfg: &ModelConfig, seed: u64) -> VarMap {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut normal = move || {
        let (a, b): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
        ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
    };
    let varmap = VarMap::new();
    build(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let mut vars: Vec<_> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in vars {
        let dims = var.dims().to_vec();
        let (offset, scale) = match dims.len() {
            1 if name.ends_with("weight") => (1.0, 0.3),
            1 => (0.0, 0.3),
            _ => (
                0.0,
                (2.0 / dims[1..].iter().product::<usize>() as f32).sqrt(),
            ),
        };
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| offset + scale * normal())
            .collect();
        var.set(&Tensor::from_vec(values, dims, &Device::Cpu).unwrap())
            .unwrap();
    }
    varmap
}

/// Smooth 3-channel images on the n x n cell-centred grid of the unit square.
fn smooth(n: usize, batch: usize) -> Tensor {
    let mut v = Vec::with_capacity(batch * 3 * n * n);
    for b in 0..batch {
        for c in 0..3 {
            for i in 0..n {
                for j in 0..n {
                    let (y, x) = ((i as f64 + 0.5) / n as f64, (j as f64 + 0.5) / n as f64);
                    let ph = 0.3 * (b * 3 + c) as f64;
                    let s = (2.0 * std::f64::consts::PI * (x + ph)).sin()
                        * (2.0 * std::f64::consts::PI * (y - ph)).cos()
                        + 0.5 * x * y;
                    v.push(s as f32);
                }
            }
        }
    }
    Tensor::from_vec(v, (batch, 3, n, n), &Device::Cpu).unwrap()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let num = (a - b)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let den = b
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    (num / den).sqrt()
}

/// Relative errors (restricted, unrestricted) of approximating `R f(u)` from `R u`.
fn errors(cfg: &ModelConfig, seed: u64) -> (f32, f32) {
    let (r, p) = (Restriction::Average, Prolongation::Bilinear);
    let fine_vars = seeded(cfg, seed);
    let coarse_vars = restrict_network(&fine_vars, r, p).unwrap();
    let dev = Device::Cpu;
    let fine = build(cfg, VarBuilder::from_varmap(&fine_vars, DType::F32, &dev)).unwrap();
    let coarse = build(cfg, VarBuilder::from_varmap(&coarse_vars, DType::F32, &dev)).unwrap();
    let u = smooth(64, 2);
    let t = Tensor::new(&[0.4f32, 0.7], &dev).unwrap();
    let target = grids::restrict(&fine.forward(&u, Some(&t)).unwrap(), r).unwrap();
    let ru = grids::restrict(&u, r).unwrap();
    let restricted = coarse.forward(&ru, Some(&t)).unwrap();
    let plain = fine.forward(&ru, Some(&t)).unwrap();
    (rel_err(&restricted, &target), rel_err(&plain, &target))
}

#[test]
fn restricted_network_tracks_the_fine_network_on_coarse_data() {
    let resnet = ModelConfig::Resnet(ResnetConfig {
        hidden: 8,
        ..Default::default()
    });
    let unet = ModelConfig::Unet(UnetConfig {
        channels: Some(vec![8, 16, 16]),
        ..Default::default()
    });
    for cfg in [resnet, unet] {
        for seed in 0..3 {
            let (restricted, plain) = errors(&cfg, seed);
            eprintln!(
                "{} seed {seed}: restricted {restricted:.4} unrestricted {plain:.4}",
                cfg.kind()
            );
            assert!(
                restricted < plain,
                "{}: restricted {restricted} vs unrestricted {plain}",
                cfg.kind()
            );
        }
    }
}

fn max_diff(a: &VarMap, b: &VarMap) -> f32 {
    let (a, b) = (a.data().lock().unwrap(), b.data().lock().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter()
        .map(|(k, v)| {
            let d = (v.as_tensor() - b[k].as_tensor()).unwrap().abs().unwrap();
            d.flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .fold(0.0, f32::max)
}

#[test]
fn prolongation_inverts_restriction_and_copies_the_rest() {
    let (r, p) = (Restriction::Average, Prolongation::Bilinear);
    let cfg = ModelConfig::Resnet(ResnetConfig {
        hidden: 4,
        ..Default::default()
    });
    let fine = seeded(&cfg, 7);
    let coarse = restrict_network(&fine, r, p).unwrap();
    assert!(
        max_diff(&fine, &coarse) > 1e-2,
        "restriction changed nothing"
    );
    let back = prolong_network(&coarse, r, p).unwrap();
    assert!(
        max_diff(&fine, &back) < 1e-4,
        "P(R(w)) differs from w by {}",
        max_diff(&fine, &back)
    );
    // Everything but the 3x3 stencils is copied exactly, into new variables.
    let (f, c) = (fine.data().lock().unwrap(), coarse.data().lock().unwrap());
    for (name, var) in f.iter() {
        let same = (var.as_tensor() - c[name].as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap();
        let same = same.to_scalar::<f32>().unwrap() == 0.0;
        assert_eq!(same, var.dims().len() != 4 || var.dims()[2] == 1, "{name}");
    }
    // New variables: zeroing the copy leaves the original alone.
    let bias = f.keys().find(|k| k.ends_with("bias")).unwrap().clone();
    let original = f[&bias].as_tensor().to_vec1::<f32>().unwrap();
    c[&bias]
        .set(&c[&bias].as_tensor().zeros_like().unwrap())
        .unwrap();
    assert_eq!(f[&bias].as_tensor().to_vec1::<f32>().unwrap(), original);
}

#[test]
fn mesh_free_layers_pass_unchanged_and_other_kernels_transfer() {
    let (r, p) = (Restriction::Average, Prolongation::Bilinear);
    let mfc = ModelConfig::Resnet(ResnetConfig {
        hidden: 4,
        conv: ConvKind::Mfc,
        ..Default::default()
    });
    let fine = seeded(&mfc, 3);
    assert_eq!(
        max_diff(&fine, &restrict_network(&fine, r, p).unwrap()),
        0.0
    );
    // ESPCN's 5x5 first layer goes through grids' general closed form and back.
    let espcn = ModelConfig::Espcn(EspcnConfig {
        hidden: vec![4, 4],
        ..Default::default()
    });
    let fine = seeded(&espcn, 3);
    let back = prolong_network(&restrict_network(&fine, r, p).unwrap(), r, p).unwrap();
    assert!(max_diff(&fine, &back) < 1e-3, "{}", max_diff(&fine, &back));
}
