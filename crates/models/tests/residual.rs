//! Residual steps `y <- y + dt F(y)` (002 eq. 2.9): with the weights of block `j` shared by the
//! `2^k` blocks that refine its time interval, halving `dt` and doubling the block count changes
//! the output by O(dt) (forward Euler is first order).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::{build, Model, ModelConfig, ResnetConfig};

fn resnet(blocks: usize, dt: f64) -> ModelConfig {
    ModelConfig::Resnet(ResnetConfig {
        hidden: 4,
        blocks,
        dt,
        noise_conditioning: false,
        ..Default::default()
    })
}

/// Deterministic pseudo-random values in [-a, a] (a 64-bit LCG).
fn values(n: usize, seed: u64, a: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            a * (2.0 * ((s >> 40) as f32 / (1u64 << 24) as f32) - 1.0)
        })
        .collect()
}

/// The ResNet with `base_blocks << k` blocks and step `t_end / (base_blocks << k)`, block `j`
/// using the weights of base block `j >> k` (a piecewise-constant `theta(t)` on `[0, t_end]`).
fn refined(base: &VarMap, base_blocks: usize, k: usize, t_end: f64) -> Box<dyn Model> {
    let blocks = base_blocks << k;
    let varmap = VarMap::new();
    let cfg = resnet(blocks, t_end / blocks as f64);
    let net = build(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let source = base.data().lock().unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let from = match name.strip_prefix("blocks.") {
            Some(rest) => {
                let (j, suffix) = rest.split_once('.').unwrap();
                format!("blocks.{}.{suffix}", j.parse::<usize>().unwrap() >> k)
            }
            None => name.clone(),
        };
        var.set(source[&from].as_tensor()).unwrap();
    }
    net
}

#[test]
fn halving_dt_with_shared_weights_changes_the_output_by_o_dt() {
    let (base_blocks, t_end) = (2, 1.0);
    let base = VarMap::new();
    build(
        &resnet(base_blocks, t_end / base_blocks as f64),
        VarBuilder::from_varmap(&base, DType::F32, &Device::Cpu),
    )
    .unwrap();
    // Sorted by name: VarMap is a HashMap, so its own order changes from run to run.
    let data = base.data().lock().unwrap();
    let mut named: Vec<_> = data.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (_, var)) in named.into_iter().enumerate() {
        let v = values(var.elem_count(), i as u64 + 1, 0.5);
        var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    drop(data);
    let x = Tensor::from_vec(
        values(2 * 3 * 12 * 12, 99, 1.0),
        (2, 3, 12, 12),
        &Device::Cpu,
    )
    .unwrap();
    let outputs: Vec<Tensor> = (0..4)
        .map(|k| {
            refined(&base, base_blocks, k, t_end)
                .forward(&x, None)
                .unwrap()
        })
        .collect();
    let norm = |t: &Tensor| {
        t.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt() as f64
    };
    // d_k = |y(dt_k) - y(dt_k / 2)| / |y(dt_k / 2)| for dt_k = 1/2, 1/4, 1/8.
    let d: Vec<f64> = outputs
        .windows(2)
        .map(|w| norm(&(&w[0] - &w[1]).unwrap()) / norm(&w[1]))
        .collect();
    let ratios = [d[0] / d[1], d[1] / d[2]];
    println!("relative changes {d:?}, ratios {ratios:?}");
    assert!(d[0] > 1e-3, "the blocks must do something: {d:?}");
    for r in ratios {
        assert!(
            (1.6..2.5).contains(&r),
            "first order needs ratios near 2: {ratios:?} ({d:?})"
        );
    }
}

#[test]
fn unit_step_is_the_plain_residual_block_and_bad_steps_are_errors() {
    // dt = 1 is the default and is not written into the configuration (paper counts unchanged).
    let json = serde_json::to_string(&resnet(2, 1.0)).unwrap();
    assert!(!json.contains("dt"), "{json}");
    let back: ModelConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, resnet(2, 1.0));
    let half: ModelConfig =
        serde_json::from_str(&serde_json::to_string(&resnet(2, 0.5)).unwrap()).unwrap();
    assert_eq!(half, resnet(2, 0.5));
    for dt in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let varmap = VarMap::new();
        let e = build(
            &resnet(2, dt),
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .err();
        assert!(
            matches!(e, Some(models::Error::InvalidConfig(_))),
            "dt {dt}: {e:?}"
        );
    }
    // y + dt F(y) against the two branches computed by hand.
    let y = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    let f = Tensor::new(&[4f32, -8.0], &Device::Cpu).unwrap();
    let step = |dt| {
        models::residual::EulerStep::new(dt)
            .unwrap()
            .apply(&y, &f)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(step(1.0), vec![5.0, -6.0]);
    assert_eq!(step(0.25), vec![2.0, 0.0]);
}
