//! Seeded initialisation (candle's CPU generator cannot be seeded, so a network built by
//! [`crate::build`] from `VarBuilder::from_varmap` starts differently on every run).
//!
//! - [`seeded_var_builder`]: every layer's own initialisation (its `Init` hint), drawn from a
//!   generator seeded by the seed and the variable's name: the same seed gives the same
//!   network, whatever the order in which layers are built.
//! - [`seed_weights`]: redraws an existing network's stencils and matrices (He / fan-in).

use crate::error::{Error, Result};
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{var_builder::SimpleBackend, Init, VarBuilder, VarMap};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, Normal, StandardNormal, Uniform};

/// A `VarBuilder` that creates each variable missing from `varmap` from its layer's `Init`
/// hint (constant, normal, uniform or Kaiming, as candle's `Init::var`), the values drawn in
/// f64 from `StdRng` seeded with `seed ^ fnv1a(name)`, then stored in `varmap`.
pub fn seeded_var_builder(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let backend = Seeded {
        varmap: varmap.clone(),
        seed,
    };
    VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
}

struct Seeded {
    varmap: VarMap,
    seed: u64,
}

/// 64-bit FNV-1a of a variable name.
fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Values of `init` for `shape` drawn from `rng`.
fn draw(init: Init, shape: &Shape, rng: &mut StdRng) -> candle_core::Result<Vec<f64>> {
    let n = shape.elem_count();
    let normal = |mean: f64, std: f64, rng: &mut StdRng| -> candle_core::Result<Vec<f64>> {
        let d =
            Normal::new(mean, std).map_err(|e| candle_core::Error::Msg(format!("init: {e}")))?;
        Ok((0..n).map(|_| d.sample(rng)).collect())
    };
    let uniform = |lo: f64, up: f64, rng: &mut StdRng| -> candle_core::Result<Vec<f64>> {
        if lo == up {
            return Ok(vec![lo; n]);
        }
        let d = Uniform::new(lo, up).map_err(|e| candle_core::Error::Msg(format!("init: {e}")))?;
        Ok((0..n).map(|_| d.sample(rng)).collect())
    };
    match init {
        Init::Const(v) => Ok(vec![v; n]),
        Init::Randn { mean, stdev } => normal(mean, stdev, rng),
        Init::Uniform { lo, up } => uniform(lo, up, rng),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Normal => normal(0.0, std, rng),
                candle_nn::init::NormalOrUniform::Uniform => {
                    uniform(-(3f64.sqrt()) * std, 3f64.sqrt() * std, rng)
                }
            }
        }
    }
}

impl SimpleBackend for Seeded {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut vars = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned VarMap lock".into()))?;
        if let Some(var) = vars.get(name) {
            if var.shape() != &shape {
                candle_core::bail!("shape mismatch on {name}: {shape:?} <> {:?}", var.shape());
            }
            return Ok(var.as_tensor().clone());
        }
        let mut rng = StdRng::seed_from_u64(self.seed ^ fnv1a(name));
        let values = draw(init, &shape, &mut rng)?;
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)?)?;
        let tensor = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: a seeded initialisation needs the variable's shape and hint")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .map(|v| v.contains_key(name))
            .unwrap_or(false)
    }
}

/// Redraws the weights of `varmap` from `seed`, variables in name order:
/// a stencil `[C_o, C_i, k, k]` from `N(0, 2 / fan_in)` (He et al. 2015, the ReLU-preserving
/// variance), a matrix `[C_o, C_i]` from `N(0, 1 / fan_in)`, `fan_in` the product of all dims
/// but the first; every variable whose name ends in `bias` is set to 0. Everything else (norm
/// scales, Hat supports, MFC times) keeps the value its layer gave it, which is deterministic.
pub fn seed_weights(varmap: &VarMap, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| Error::InvalidConfig("poisoned VarMap lock".into()))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let dims = var.dims().to_vec();
        let fan_in: usize = dims.iter().skip(1).product();
        let std = match dims.len() {
            4 => (2.0 / fan_in as f64).sqrt(),
            2 => (1.0 / fan_in as f64).sqrt(),
            _ if name.ends_with("bias") => 0.0,
            _ => continue,
        };
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| (std * rng.sample::<f64, _>(StandardNormal)) as f32)
            .collect();
        let t = Tensor::from_vec(values, dims, var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build, config::MgnetConfig, ModelConfig};
    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    fn mgnet(seed: u64) -> VarMap {
        let cfg = ModelConfig::Mgnet(MgnetConfig {
            in_channels: 1,
            channels: vec![16, 16],
            smoothings: vec![1, 1],
            ..MgnetConfig::default()
        });
        let vm = VarMap::new();
        build(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        seed_weights(&vm, seed).unwrap();
        vm
    }

    fn values(vm: &VarMap, name: &str) -> Vec<f32> {
        vm.data().lock().unwrap()[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn unet(seed: u64) -> VarMap {
        let cfg: ModelConfig =
            serde_json::from_str(r#"{"kind":"unet","channels":[4,8,8],"noise_conditioning":true}"#)
                .unwrap();
        let vm = VarMap::new();
        build(
            &cfg,
            seeded_var_builder(&vm, seed, DType::F32, &Device::Cpu),
        )
        .unwrap();
        vm
    }

    #[test]
    fn seeded_builder_is_reproducible_and_keeps_each_layers_initialisation() {
        let (a, b, c) = (unet(3), unet(3), unet(4));
        let names: Vec<String> = a.data().lock().unwrap().keys().cloned().collect();
        assert!(names.len() > 10);
        let mut differs = 0;
        for name in &names {
            assert_eq!(values(&a, name), values(&b, name), "{name}");
            differs += usize::from(values(&a, name) != values(&c, name));
        }
        assert!(differs > names.len() / 2, "{differs} of {}", names.len());
        // Layers' hints are kept: norm scales 1, norm shifts 0, zero-initialised stencils 0.
        for name in &names {
            let v = values(&a, name);
            if name.contains("norm") && name.ends_with("weight") {
                assert!(v.iter().all(|&x| x == 1.0), "{name}");
            }
        }
        // The statistics follow the hint: a 3x3 stencil with fan-in C_in 9 has std sqrt(2 / fan_in).
        let big = names
            .iter()
            .filter(|n| n.ends_with("weight") && a.data().lock().unwrap()[*n].dims().len() == 4)
            .filter(|n| values(&a, n).iter().any(|x| *x != 0.0))
            .max_by_key(|n| a.data().lock().unwrap()[*n].elem_count())
            .unwrap();
        let dims = a.data().lock().unwrap()[big].dims().to_vec();
        let v = values(&a, big);
        let std = (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        let he = (2.0 / (dims[1] * dims[2] * dims[3]) as f64).sqrt();
        assert!((std / he - 1.0).abs() < 0.15, "{big}: std {std} vs He {he}");
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let (a, b, c) = (mgnet(7), mgnet(7), mgnet(8));
        let names: Vec<String> = a.data().lock().unwrap().keys().cloned().collect();
        for name in &names {
            assert_eq!(values(&a, name), values(&b, name), "{name}");
        }
        assert_ne!(values(&a, "theta.weight"), values(&c, "theta.weight"));
    }

    #[test]
    fn variances_follow_fan_in_and_norm_scales_stay() {
        let vm = mgnet(3);
        // 16 * 16 * 9 stencil entries, fan_in 144: sample variance within 10% of 2/144.
        let w = values(&vm, "levels.0.a.weight");
        let var = w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!((var / (2.0 / 144.0) - 1.0).abs() < 0.1, "{var}");
        let head = values(&vm, "head.weight");
        let hv = head.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / head.len() as f64;
        assert!(hv > 0.02 && hv < 0.2, "head variance {hv} vs 1/16");
        assert!(values(&vm, "head.bias").iter().all(|&x| x == 0.0));
        let names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
        let gamma = names
            .iter()
            .find(|n| n.ends_with("weight") && values(&vm, n).len() == 16 && !n.contains("head"))
            .expect("a batch-norm scale");
        assert!(values(&vm, gamma).iter().all(|&x| x == 1.0), "{gamma}");
    }
}
