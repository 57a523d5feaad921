//! Flattening a parameter list `&[Var]` into one `f64` vector `theta` and back.
//!
//! The optimizers work on the stacked parameter vector `theta = [vec(W_1); vec(W_2); ...]`
//! (row-major `vec`, in the order of the slice). Vectors live on the host in `f64` whatever
//! the variables' device and dtype; writing back converts to each variable's dtype and device.

use candle_core::{backprop::GradStore, DType, Tensor, Var};

use crate::{Error, Result};

/// Total number of scalar parameters `n = sum_i numel(W_i)`.
pub fn num_params(vars: &[Var]) -> usize {
    vars.iter().map(|v| v.elem_count()).sum()
}

/// Stack the variables' current values into `theta` (f64, row-major per variable).
pub fn flatten(vars: &[Var]) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(num_params(vars));
    for v in vars {
        out.extend(tensor_to_f64(v.as_tensor())?);
    }
    Ok(out)
}

/// Stack the gradients `dL/dW_i` from a [`GradStore`] in the same layout as [`flatten`];
/// a variable without a gradient (not reached by the backward pass) contributes zeros.
pub fn flatten_grads(vars: &[Var], grads: &GradStore) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(num_params(vars));
    for v in vars {
        match grads.get(v.as_tensor()) {
            Some(g) => out.extend(tensor_to_f64(g)?),
            None => out.extend(std::iter::repeat_n(0.0, v.elem_count())),
        }
    }
    Ok(out)
}

/// Split `flat` into tensors shaped, typed and placed like `vars` (inverse of [`flatten`]).
pub fn unflatten(vars: &[Var], flat: &[f64]) -> Result<Vec<Tensor>> {
    check_len(vars, flat)?;
    let mut offset = 0;
    let mut out = Vec::with_capacity(vars.len());
    for v in vars {
        let n = v.elem_count();
        let t = Tensor::from_slice(&flat[offset..offset + n], v.shape(), v.device())?
            .to_dtype(v.dtype())?;
        out.push(t);
        offset += n;
    }
    Ok(out)
}

/// Overwrite the variables' values with `flat` (`W_i <- reshape(theta[slice_i])`).
pub fn assign(vars: &[Var], flat: &[f64]) -> Result<()> {
    for (v, t) in vars.iter().zip(unflatten(vars, flat)?) {
        v.set(&t)?;
    }
    Ok(())
}

/// Error unless `flat.len()` equals the parameter count of `vars`.
pub fn check_len(vars: &[Var], flat: &[f64]) -> Result<()> {
    let expected = num_params(vars);
    if flat.len() != expected {
        return Err(Error::LengthMismatch {
            expected,
            got: flat.len(),
        });
    }
    Ok(())
}

/// Copy any tensor to a flat host `Vec<f64>`.
pub(crate) fn tensor_to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}
