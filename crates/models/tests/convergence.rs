//! Lemma 1 of 001 (proof in its Appendix A.1): for continuously differentiable inputs and
//! targets, `u^{2h} = R u^h`, `y^{2h} = R y^h`, the gradient of a convolutional loss with respect
//! to its weights satisfies `||g^h - g^{2h}|| = O(h)`; the proof's closing remark extends this to
//! deep CNNs (Lipschitz layers). And 000 Lemma 3: an MFC's gradients converge as `h -> 0`.
//!
//! Inputs and targets are procedural Gaussian random fields ([`data::GaussianRandomField`],
//! spectrum `|k|^-4`, 6 modes per axis) sampled at the pixel centres of the finest mesh 256 and
//! restricted by 2x2 averaging to 128 and 64. The observed order over the three meshes is
//! `p = log2(||g^64 - g^128|| / ||g^128 - g^256||)`. Layers are `models::Conv` (the layer every
//! model is built from), losses Riemann means `mean((f(u) - y)^2)` (SPEC section 0).

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use data::{GaussianRandomField, ImageSource};
use grids::{restrict, Restriction};
use models::{Conv, ConvKind, ConvSpec};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

const FINE: usize = 256;
const BATCH: u64 = 2;

/// `[BATCH, 1, n, n]` for `n = 64, 128, 256` (coarse first): GRF images on the finest mesh and
/// their restrictions.
fn pyramid(seed: u64) -> Vec<Tensor> {
    let src = GaussianRandomField::new(seed, 4.0).with_max_frequency(6);
    let imgs: Vec<Tensor> = (0..BATCH).map(|i| src.image(i, FINE).unwrap()).collect();
    let mut t = Tensor::stack(&imgs, 0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let mut levels = vec![t.clone()];
    for _ in 0..2 {
        t = restrict(&t, Restriction::Average).unwrap();
        levels.push(t.clone());
    }
    levels.reverse();
    levels
}

/// Overwrites every variable of `varmap` with seeded values inside the layers' initial ranges
/// (candle's initialisers are not seeded): MFC times `t = (s h0)^2 / 2` with `s in [1, 3]`
/// pixels of the 64 mesh, derivative vectors of one such pixel, everything else in `[-0.5, 0.5]`.
fn seed_vars(varmap: &VarMap, seed: u64) -> Vec<Var> {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let var = &data[name];
            let n = var.elem_count();
            let h0 = 1.0 / 64.0;
            let v: Vec<f64> = (0..n)
                .map(|_| match name.rsplit('.').next() {
                    Some("tau") => ((rng.random_range(1.0..3.0f64) * h0).powi(2) / 2.0).ln(),
                    Some("d") => rng.random_range(-h0..h0),
                    _ => rng.random_range(-0.5..0.5),
                })
                .collect();
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            var.clone()
        })
        .collect()
}

/// A one-layer (`1 -> 1`) or two-layer (`1 -> 4`, tanh, `4 -> 1`) network of `kind` layers.
struct Net {
    layers: Vec<Conv>,
    vars: Vec<Var>,
}

impl Net {
    fn new(kind: ConvKind, depth: usize, seed: u64) -> Net {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let specs = match depth {
            1 => vec![ConvSpec::new(1, 1, 3)],
            _ => vec![ConvSpec::new(1, 4, 3), ConvSpec::new(4, 1, 3)],
        };
        let layers = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| Conv::new(s, kind, vb.pp(format!("l{i}"))).unwrap())
            .collect();
        let vars = seed_vars(&varmap, seed);
        Net { layers, vars }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut y = self.layers[0].forward(x).unwrap();
        for l in &self.layers[1..] {
            y = l.forward(&y.tanh().unwrap()).unwrap();
        }
        y
    }

    /// Gradient of `mean((f(u) - y)^2)` for all parameters, flattened.
    fn gradient(&self, u: &Tensor, y: &Tensor) -> Vec<f64> {
        let loss = (self.forward(u) - y)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        let g = loss.backward().unwrap();
        self.vars
            .iter()
            .flat_map(|v| {
                g.get(v.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            })
            .collect()
    }
}

/// `(||g^64 - g^128||, ||g^128 - g^256||)` relative to `||g^256||`, and the observed order.
fn differences(net: &Net, seed: u64) -> ([f64; 2], f64) {
    let (u, y) = (pyramid(seed), pyramid(seed + 1_000_003));
    let g: Vec<Vec<f64>> = u.iter().zip(&y).map(|(u, y)| net.gradient(u, y)).collect();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff =
        |a: &[f64], b: &[f64]| norm(&a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>());
    let d = [
        diff(&g[0], &g[1]) / norm(&g[2]),
        diff(&g[1], &g[2]) / norm(&g[2]),
    ];
    (d, (d[0] / d[1]).log2())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// 001 Lemma 1: a 3x3 convolution's gradient differences shrink like `h` (order near 1 or
    /// better) for one layer and for a two-layer CNN.
    #[test]
    fn conv_gradients_converge_like_h(seed in 0u64..1_000_000, depth in 1usize..=2) {
        let net = Net::new(ConvKind::Standard, depth, seed ^ 0x5eed);
        let (d, p) = differences(&net, seed);
        eprintln!("3x3 conv, depth {depth}: rel. diffs {:.3e} {:.3e}, order {p:.2}", d[0], d[1]);
        prop_assert!(p > 0.8, "order {p} below 1 (diffs {d:?})");
    }

    /// 000 Lemma 3: an MFC's gradients converge too, and faster (order near 2: the symbol is
    /// mesh-free, only the data's `O(h^2)` restriction error remains).
    #[test]
    fn mfc_gradients_converge_faster(seed in 0u64..1_000_000, depth in 1usize..=2) {
        let net = Net::new(ConvKind::Mfc, depth, seed ^ 0x5eed);
        let (d, p) = differences(&net, seed);
        eprintln!("MFC, depth {depth}: rel. diffs {:.3e} {:.3e}, order {p:.2}", d[0], d[1]);
        prop_assert!(p > 1.5, "order {p} below 2 (diffs {d:?})");
    }
}
