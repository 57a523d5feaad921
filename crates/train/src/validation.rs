//! Validation and divergence checks.

use crate::error::{Error, Result};
use candle_core::DType;
use candle_nn::VarMap;
use data::Degraded;

/// Mean training loss of `model` on the validation batch `v` (finest mesh).
pub fn validation_loss(model: &mge::ModelFn, loss: &mge::LossFn, v: &Degraded) -> Result<f64> {
    let pred = model(&v.input, v.t.as_ref())?;
    Ok(loss(&pred, &v.target)?
        .mean_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

/// The name of the first parameter of `varmap` (in name order) holding a NaN or an infinity.
pub fn non_finite_parameter(varmap: &VarMap) -> Result<Option<String>> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| Error::Invalid("poisoned VarMap".into()))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let values = vars[name]
            .as_tensor()
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        if values.iter().any(|v| !v.is_finite()) {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn finds_the_first_non_finite_parameter_by_name() {
        let varmap = VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        vb.get_with_hints(3, "b", candle_nn::Init::Const(1.0))
            .unwrap();
        vb.get_with_hints(3, "a", candle_nn::Init::Const(1.0))
            .unwrap();
        assert_eq!(non_finite_parameter(&varmap).unwrap(), None);
        let bad = Tensor::new(&[1f32, f32::NAN, 0.0], &Device::Cpu).unwrap();
        varmap.data().lock().unwrap()["b"].set(&bad).unwrap();
        assert_eq!(non_finite_parameter(&varmap).unwrap().as_deref(), Some("b"));
    }

    #[test]
    fn validation_loss_is_the_mean_loss_of_the_model_output() {
        let x = Tensor::new(&[[[[1f32, 3.0]]]], &Device::Cpu).unwrap();
        let v = Degraded::pair(x.clone(), x.zeros_like().unwrap());
        let model = |x: &Tensor, _: Option<&Tensor>| x * 2.0;
        let mse = |p: &Tensor, t: &Tensor| (p - t)?.sqr();
        assert_eq!(
            validation_loss(&model, &mse, &v).unwrap(),
            (4.0 + 36.0) / 2.0
        );
    }
}
