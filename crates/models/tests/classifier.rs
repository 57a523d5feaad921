//! The 2-layer CNN classifier (002 section 5, 003 section 3.2): shapes, the Riemann-sum factor 4
//! of the head transfer (003 section 3.1.3), Galerkin transfer of the whole network (coarse
//! logits on `R u` track fine logits on smooth `u`), loss, accuracy and the smoothness penalty
//! against f64 references.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::classifier::{
    accuracy, cross_entropy, head_smoothness, prolong_classifier, prolong_head,
    restrict_classifier, restrict_head, Classifier, ClassifierConfig, StencilTransfer, HEAD_WEIGHT,
};
use std::f64::consts::PI;

/// A smooth function of the cell centre `(x, y)` of the unit square, varied by `k`.
fn smooth_value(k: usize, x: f64, y: f64) -> f64 {
    let ph = 0.37 * k as f64;
    (PI * x).sin().powi(2)
        * (PI * y).sin().powi(2)
        * (1.0 + 0.5 * (2.0 * PI * (x + ph)).cos() * (2.0 * PI * y).sin())
}

/// `[a, b, n, n]` of smooth images (index `k = i b + j`), scaled by `scale`.
fn smooth(a: usize, b: usize, n: usize, scale: f64) -> Tensor {
    let mut v = Vec::with_capacity(a * b * n * n);
    for k in 0..a * b {
        for i in 0..n {
            for j in 0..n {
                let (y, x) = ((i as f64 + 0.5) / n as f64, (j as f64 + 0.5) / n as f64);
                v.push((scale * smooth_value(k, x, y)) as f32);
            }
        }
    }
    Tensor::from_vec(v, (a, b, n, n), &Device::Cpu).unwrap()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let num = (a - b)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let den = b
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    (num / den).sqrt()
}

/// Plain-sum logits `z_j = sum_{k,x} g_k(x) w_{j,k}(x)` of one feature map `[c, m, m]`.
fn head_logits(g: &Tensor, w: &Tensor) -> Tensor {
    g.flatten_all()
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .matmul(&w.t().unwrap())
        .unwrap()
}

fn head_restriction_error(m: usize, factor: f64) -> f64 {
    let (classes, c) = (3, 2);
    let g = smooth(1, c, m, 1.0).squeeze(0).unwrap();
    let w = smooth(classes, c, m, 1.0).flatten_from(1).unwrap();
    let fine = head_logits(&g, &w);
    let rg = grids::restrict(&g.unsqueeze(0).unwrap(), grids::Restriction::Average)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let coarse_w = (restrict_head(&w, c, m).unwrap() * (factor / 4.0)).unwrap();
    rel_err(&head_logits(&rg, &coarse_w), &fine)
}

#[test]
fn head_restriction_keeps_the_logits_with_factor_4_to_second_order() {
    let (e32, e64) = (
        head_restriction_error(32, 4.0),
        head_restriction_error(64, 4.0),
    );
    println!("head restriction: rel err {e32:.2e} (m = 32), {e64:.2e} (m = 64)");
    assert!(e32 < 1e-2, "{e32}");
    assert!(e32 / e64 > 3.0, "not second order: {e32} -> {e64}");
    // Without the factor the coarse logits are a quarter of the fine ones.
    let e_plain = head_restriction_error(32, 1.0);
    assert!((e_plain - 0.75).abs() < 0.01, "{e_plain}");
}

#[test]
fn head_prolongation_keeps_the_logits() {
    let (classes, c, m) = (3, 2, 16);
    let w_coarse = smooth(classes, c, m, 1.0).flatten_from(1).unwrap();
    let g = smooth(1, c, 2 * m, 1.0);
    let rg = grids::restrict(&g, grids::Restriction::Average)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let coarse = head_logits(&rg, &w_coarse);
    let fine = head_logits(
        &g.squeeze(0).unwrap(),
        &prolong_head(&w_coarse, c, m).unwrap(),
    );
    let e = rel_err(&fine, &coarse);
    assert!(e < 1e-2, "{e}");
    assert!(prolong_head(&w_coarse, c + 1, m).is_err());
    assert!(restrict_head(&w_coarse, c, m + 1).is_err());
}

fn build(cfg: ClassifierConfig, varmap: &VarMap) -> Classifier {
    Classifier::new(
        cfg,
        VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu),
    )
    .unwrap()
}

/// A fine classifier with Kaiming stencils (seeded) and a smooth head.
fn fine_classifier(cfg: ClassifierConfig) -> VarMap {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let varmap = VarMap::new();
    build(cfg, &varmap);
    let m = cfg.feature_side();
    let w =
        (smooth(cfg.classes, cfg.c2, m, 1.0).flatten_from(1).unwrap() / (m * m) as f64).unwrap();
    let vars = varmap.data().lock().unwrap();
    vars[HEAD_WEIGHT].set(&w).unwrap();
    for name in ["conv1.weight", "conv2.weight"] {
        let dims = vars[name].dims().to_vec();
        let scale = (6.0 / dims[1..].iter().product::<usize>() as f64).sqrt();
        let vals: Vec<f32> = (0..vars[name].elem_count())
            .map(|_| (scale * (rng.random::<f64>() - 0.5)) as f32)
            .collect();
        vars[name]
            .set(&Tensor::from_vec(vals, dims, &Device::Cpu).unwrap())
            .unwrap();
    }
    drop(vars);
    varmap
}

#[test]
fn shapes_and_input_checks() {
    for pool in [false, true] {
        let cfg = ClassifierConfig {
            c1: 4,
            c2: 6,
            pool,
            classes: 10,
            size: 28,
        };
        let varmap = VarMap::new();
        let net = build(cfg, &varmap);
        let u = Tensor::zeros((3, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward(&u).unwrap().dims(), &[3, 10]);
        assert_eq!(
            net.features(&u).unwrap().dims(),
            &[3, 6, cfg.feature_side(), cfg.feature_side()]
        );
        let wrong = Tensor::zeros((3, 1, 14, 14), DType::F32, &Device::Cpu).unwrap();
        assert!(net.forward(&wrong).is_err());
    }
    let odd = ClassifierConfig {
        pool: true,
        size: 15,
        ..Default::default()
    };
    assert!(Classifier::new(
        odd,
        VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu)
    )
    .is_err());
}

/// Relative errors of coarse logits on `R u` against fine logits on `u`: (Galerkin, unchanged).
fn network_errors(pool: bool) -> (f64, f64) {
    let cfg = ClassifierConfig {
        c1: 6,
        c2: 8,
        pool,
        classes: 5,
        size: 64,
    };
    let fine_vars = fine_classifier(cfg);
    let fine = build(cfg, &fine_vars);
    let u = smooth(3, 1, 64, 1.0);
    let ru = grids::restrict(&u, grids::Restriction::Average).unwrap();
    let target = fine.forward(&u).unwrap();
    let err = |stencils| {
        let vars = restrict_classifier(&fine_vars, &cfg, stencils).unwrap();
        let coarse = build(cfg.at_size(32), &vars);
        rel_err(&coarse.forward(&ru).unwrap(), &target)
    };
    (
        err(StencilTransfer::Galerkin),
        err(StencilTransfer::Unchanged),
    )
}

#[test]
fn restricted_classifier_tracks_fine_logits_on_smooth_images() {
    for pool in [false, true] {
        let (galerkin, unchanged) = network_errors(pool);
        println!("pool {pool}: coarse vs fine logits rel err: Galerkin {galerkin:.3e}, unchanged {unchanged:.3e}");
        assert!(galerkin < 0.05, "pool {pool}: {galerkin}");
        assert!(
            galerkin < unchanged,
            "pool {pool}: Galerkin {galerkin} vs unchanged {unchanged}"
        );
    }
}

#[test]
fn prolongation_then_restriction_recovers_the_stencils() {
    let cfg = ClassifierConfig {
        c1: 3,
        c2: 4,
        pool: true,
        classes: 4,
        size: 32,
    };
    let coarse = fine_classifier(cfg);
    let fine = prolong_classifier(&coarse, &cfg, StencilTransfer::Galerkin).unwrap();
    let back = restrict_classifier(&fine, &cfg.at_size(64), StencilTransfer::Galerkin).unwrap();
    let (a, b) = (coarse.data().lock().unwrap(), back.data().lock().unwrap());
    for name in ["conv1.weight", "conv2.weight"] {
        let e = rel_err(b[name].as_tensor(), a[name].as_tensor());
        assert!(e < 1e-4, "{name}: {e}");
    }
    // The head comes back as R P w = w + O(h^2).
    let e = rel_err(b[HEAD_WEIGHT].as_tensor(), a[HEAD_WEIGHT].as_tensor());
    assert!(e < 0.05, "head: {e}");
    drop(b);
    drop(a);
    let unchanged = prolong_classifier(&coarse, &cfg, StencilTransfer::Unchanged).unwrap();
    let a = coarse.data().lock().unwrap();
    let u = unchanged.data().lock().unwrap();
    assert_eq!(
        u["conv2.weight"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        a["conv2.weight"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    );
    assert_eq!(u[HEAD_WEIGHT].dims(), &[4, 4 * 32 * 32]);
}

#[test]
fn cross_entropy_and_accuracy_match_f64_references() {
    let z = [
        [2.0f32, -1.0, 0.5],
        [0.1, 0.2, 0.3],
        [-3.0, 4.0, 1.0],
        [1.0, 1.0, 0.0],
    ];
    let y = [0u32, 1, 1, 2];
    let logits = Tensor::new(&z, &Device::Cpu).unwrap();
    let labels = Tensor::new(&y, &Device::Cpu).unwrap();
    let reference: f64 = z
        .iter()
        .zip(y)
        .map(|(row, label)| {
            let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            lse - row[label as usize] as f64
        })
        .sum::<f64>()
        / 4.0;
    let ce = cross_entropy(&logits, &labels)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    assert!((ce - reference).abs() < 1e-5, "{ce} vs {reference}");
    // Arg-max per row: 0, 2, 1, 0 -> hits at rows 0 and 2.
    assert_eq!(accuracy(&logits, &labels).unwrap(), 0.5);
}

#[test]
fn smoothness_penalty_matches_a_loop_and_vanishes_on_constants() {
    let (classes, c, m) = (2, 3, 5);
    let vals: Vec<f32> = (0..classes * c * m * m)
        .map(|i| ((i * 37) % 11) as f32 * 0.1 - 0.4)
        .collect();
    let w = Tensor::from_vec(vals.clone(), (classes, c * m * m), &Device::Cpu).unwrap();
    let at = |img: usize, i: usize, j: usize| vals[img * m * m + i * m + j] as f64;
    let mut reference = 0.0;
    for img in 0..classes * c {
        for i in 0..m {
            for j in 0..m {
                if i + 1 < m {
                    reference += (at(img, i + 1, j) - at(img, i, j)).powi(2);
                }
                if j + 1 < m {
                    reference += (at(img, i, j + 1) - at(img, i, j)).powi(2);
                }
            }
        }
    }
    reference *= 0.5;
    let got = head_smoothness(&w, c, m)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    assert!(
        (got - reference).abs() < 1e-4 * reference,
        "{got} vs {reference}"
    );
    let constant = Tensor::full(0.7f32, (classes, c * m * m), &Device::Cpu).unwrap();
    assert_eq!(
        head_smoothness(&constant, c, m)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
    assert!(head_smoothness(&w, c, m + 1).is_err());
}
