//! Parameter counting, with or without allocating the weights.

use crate::config::{build, ModelConfig};
use crate::error::Result;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use std::collections::HashMap;
use std::sync::Mutex;

/// Number of scalar parameters in `varmap`: `sum_v prod(shape(v))`.
pub fn parameter_count(varmap: &VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// Records the shape of every variable a model asks for and hands out broadcast zeros, so
/// that counting needs no memory for the weights.
#[derive(Default)]
struct ShapeRecorder {
    sizes: Mutex<HashMap<String, usize>>,
}

impl SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Ok(mut sizes) = self.sizes.lock() {
            sizes.insert(name.to_string(), s.elem_count());
        }
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::CannotFindTensor {
            path: name.to_string(),
        })
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

struct Shared(std::sync::Arc<ShapeRecorder>);

impl SimpleBackend for Shared {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.get(s, name, h, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}

/// Number of scalar parameters of the network `cfg` describes, without allocating its weights.
pub fn count_parameters(cfg: &ModelConfig) -> Result<usize> {
    let recorder = std::sync::Arc::new(ShapeRecorder::default());
    let vb = VarBuilder::from_backend(Box::new(Shared(recorder.clone())), DType::F32, Device::Cpu);
    build(cfg, vb)?;
    let total = recorder.sizes.lock().map(|s| s.values().sum()).unwrap_or(0);
    Ok(total)
}
