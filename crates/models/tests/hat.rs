//! The Hat activation of 004: shape against its closed form, gradients against finite
//! differences, and its use in ResNet and MgNet through their configurations.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use models::activation::{hat, hat_trainable};
use models::{
    build, count_parameters, Activation, HatConfig, MgnetConfig, ModelConfig, ResnetConfig,
};

/// The closed form: `x` on `[0, s/2]`, `s - x` on `[s/2, s]`, 0 elsewhere.
fn reference(x: f64, s: f64) -> f64 {
    if x <= 0.0 || x >= s {
        0.0
    } else if x <= s / 2.0 {
        x
    } else {
        s - x
    }
}

fn points() -> Vec<f64> {
    // A grid over [-2, 7] that avoids the kinks of s = 3 (0, 1.5, 3) by a margin.
    (0..90).map(|i| -2.0 + 0.1 * i as f64 + 0.0371).collect()
}

#[test]
fn hat_matches_its_closed_form_including_the_kinks() {
    let s = 3.0;
    let mut xs = points();
    xs.extend([0.0, 1.5, 3.0, -1e-3, 3.001, 100.0, -100.0]);
    let x = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap();
    let y = hat(&x, s).unwrap().to_vec1::<f64>().unwrap();
    let yt = hat_trainable(&x, &Tensor::new(&[s], &Device::Cpu).unwrap())
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    for ((&x, &y), &yt) in xs.iter().zip(&y).zip(&yt) {
        assert!((y - reference(x, s)).abs() < 1e-12, "hat({x}) = {y}");
        assert!(
            (yt - reference(x, s)).abs() < 1e-12,
            "trainable hat({x}) = {yt}"
        );
    }
}

#[test]
fn hat_gradients_match_finite_differences() {
    let (s, eps) = (3.0, 1e-6);
    let xs = points();
    let x = Var::new(xs.as_slice(), &Device::Cpu).unwrap();
    let sv = Var::new(&[s], &Device::Cpu).unwrap();
    // Loss sum_i w_i hat_s(x_i) with distinct weights, so each gradient entry is checked.
    let w: Vec<f64> = (0..xs.len()).map(|i| 1.0 + 0.01 * i as f64).collect();
    let wt = Tensor::new(w.as_slice(), &Device::Cpu).unwrap();
    let loss = (hat_trainable(x.as_tensor(), sv.as_tensor()).unwrap() * &wt)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let gx = grads.get(&x).unwrap().to_vec1::<f64>().unwrap();
    let gs = grads.get(&sv).unwrap().to_vec1::<f64>().unwrap()[0];
    let mut fd_s = 0.0;
    for (i, &xi) in xs.iter().enumerate() {
        let fd = (reference(xi + eps, s) - reference(xi - eps, s)) / (2.0 * eps);
        assert!(
            (gx[i] - w[i] * fd).abs() < 1e-6,
            "d/dx at {xi}: {} vs {}",
            gx[i],
            w[i] * fd
        );
        fd_s += w[i] * (reference(xi, s + eps) - reference(xi, s - eps)) / (2.0 * eps);
    }
    assert!((gs - fd_s).abs() < 1e-6, "d/ds: {gs} vs {fd_s}");
    assert!(gs > 0.0, "the points in (s/2, s) pull the support");
    // The fixed-support version has the same x-gradient.
    let fixed = (hat(x.as_tensor(), s).unwrap() * &wt)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = fixed
        .backward()
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_eq!(g, gx);
}

fn trainable_hat(support: Vec<f64>) -> Activation {
    Activation::Hat(HatConfig {
        support,
        trainable: true,
    })
}

#[test]
fn resnet_and_mgnet_train_with_a_hat_of_trainable_support() {
    let resnet = |activation| {
        ModelConfig::Resnet(ResnetConfig {
            hidden: 4,
            blocks: 2,
            activation,
            noise_conditioning: false,
            ..Default::default()
        })
    };
    let mgnet = |activation| {
        ModelConfig::Mgnet(MgnetConfig {
            channels: vec![4, 4, 4],
            smoothings: vec![1, 1, 1],
            activation,
            ..Default::default()
        })
    };
    let cases = [
        (
            resnet(Activation::LeakyRelu),
            resnet(trainable_hat(vec![1.0])),
            1,
        ),
        (
            mgnet(Activation::Relu),
            mgnet(trainable_hat(vec![1.0, 2.0])),
            3,
        ),
    ];
    for (plain, with_hat, supports) in cases {
        let n_plain = count_parameters(&plain).unwrap();
        assert_eq!(count_parameters(&with_hat).unwrap(), n_plain + supports);
        let varmap = VarMap::new();
        let net = build(
            &with_hat,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu).unwrap();
        let loss = net
            .forward(&x, None)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let vars = varmap.data().lock().unwrap();
        let hat_vars: Vec<_> = vars.keys().filter(|k| k.ends_with("hat_support")).collect();
        assert_eq!(hat_vars.len(), supports, "{hat_vars:?}");
        for name in hat_vars {
            assert!(
                grads.get(vars[name].as_tensor()).is_some(),
                "{name} gets a gradient"
            );
        }
        // Per-level initial supports, the last repeated for deeper levels.
        if let Some(v) = vars.get("levels.2.hat_support") {
            assert_eq!(v.as_tensor().to_vec1::<f32>().unwrap(), vec![2.0]);
        }
    }
}

#[test]
fn hat_configuration_serde_and_bad_supports() {
    let json = r#"{"kind":"mgnet","activation":{"hat":{"support":[5.0,10.0],"trainable":false}}}"#;
    let cfg: ModelConfig = serde_json::from_str(json).unwrap();
    let ModelConfig::Mgnet(m) = &cfg else {
        panic!("{cfg:?}")
    };
    assert_eq!(
        m.activation,
        Activation::Hat(HatConfig {
            support: vec![5.0, 10.0],
            trainable: false
        })
    );
    let relu: ModelConfig =
        serde_json::from_str(r#"{"kind":"mgnet","activation":"relu"}"#).unwrap();
    assert_eq!(relu, ModelConfig::Mgnet(MgnetConfig::default()));
    // The ResNet's default activation (the authors' LReLU) is not written out.
    let r = serde_json::to_string(&ModelConfig::Resnet(ResnetConfig::default())).unwrap();
    assert!(!r.contains("activation"), "{r}");
    for support in [vec![], vec![0.0], vec![1.0, -2.0], vec![f64::NAN]] {
        let cfg = ModelConfig::Resnet(ResnetConfig {
            hidden: 4,
            activation: Activation::Hat(HatConfig {
                support: support.clone(),
                trainable: false,
            }),
            ..Default::default()
        });
        let varmap = VarMap::new();
        let e = build(
            &cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .err();
        assert!(
            matches!(e, Some(models::Error::InvalidConfig(_))),
            "{support:?}: {e:?}"
        );
    }
}
