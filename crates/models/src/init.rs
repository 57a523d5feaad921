//! Seeded initialisation (candle's CPU generator cannot be seeded, so a network built by
//! [`crate::build`] starts differently on every run).

use crate::error::{Error, Result};
use candle_core::Tensor;
use candle_nn::VarMap;
use rand::{rngs::StdRng, Rng, SeedableRng};

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
            .map(|_| (std * standard_normal(&mut rng)) as f32)
            .collect();
        let t = Tensor::from_vec(values, dims, var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// One `N(0, 1)` sample by Box-Muller.
fn standard_normal(rng: &mut StdRng) -> f64 {
    let (a, b): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
    (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
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
