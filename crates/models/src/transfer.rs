//! Resolution transfer of a trained network (002 sections 4 and 5.2; SPEC sections 4-5): every
//! standard convolution stencil is mapped between meshes `h` and `2h` by Galerkin, stencil by
//! stencil, so a fine-trained network can run on coarse images (restriction) and a
//! coarse-trained one can hot-start fine training (prolongation).

use crate::error::{Error, Result};
use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use grids::{Prolongation, Restriction};

/// Whether variable `name` is a standard convolution's weight: a 4-D tensor not owned by a
/// mesh-free layer (`mfc.` / `spectral.` prefixes; their parameters are physical and need no
/// transfer). Biases, norms, linear layers and 1x1 kernels keep their values.
fn is_stencil(name: &str, t: &Tensor) -> bool {
    t.rank() == 4 && !name.split('.').any(|seg| seg == "mfc" || seg == "spectral")
}

/// A copy of `varmap` with every stencil `w` replaced by `map(w)` and every other variable copied.
pub(crate) fn map_stencils(
    varmap: &VarMap,
    map: impl Fn(&Tensor) -> grids::Result<Tensor>,
) -> Result<VarMap> {
    let out = VarMap::new();
    let src = varmap
        .data()
        .lock()
        .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?;
    let mut dst = out
        .data()
        .lock()
        .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?;
    for (name, var) in src.iter() {
        let w = var.as_tensor();
        let mapped = if is_stencil(name, w) {
            map(w)
                .map_err(|source| Error::Transfer {
                    name: name.clone(),
                    source,
                })?
                .detach()
        } else {
            w.copy()?.detach()
        };
        dst.insert(name.clone(), Var::from_tensor(&mapped)?);
    }
    drop(dst);
    Ok(out)
}

/// The coarse-mesh copy of a network: every 3x3 stencil `s_h` becomes the Galerkin stencil
/// `s_H = M s_h M^T` of `K_H = R K_h P` (002 eq. 2.6b), via `grids::galerkin::restrict_weights`;
/// 1x1 kernels and non-stencil variables are copied; other odd kernels (ESPCN's 5x5) use grids'
/// general closed form, and a kernel grids cannot transfer gives [`Error::Transfer`]. Build the network from the
/// same configuration on the returned `VarMap` and apply it to `R u`.
pub fn restrict_network(varmap: &VarMap, r: Restriction, p: Prolongation) -> Result<VarMap> {
    map_stencils(varmap, |w| grids::galerkin::restrict_weights(w, r, p))
}

/// Damping `λ` of the hot start's stencil prolongation ([`prolong_network`]). Measured on the
/// small denoising UNet (docs/models.md): `λ = 0` (exact 002 eq. 4.14) blows the loss up,
/// `λ = 0.1` roughly triples it at the finest stage, `λ = 1` lands near the identity hot start.
pub const HOT_START_DAMPING: f64 = 1.0;

/// The fine-mesh copy of a coarse network for a hot start: [`prolong_network_with`] with
/// `λ =` [`HOT_START_DAMPING`]. Exact Galerkin prolongation (`λ = 0`) amplifies high
/// frequencies (the coarse identity stencil becomes `[-1/2, 2, -1/2]^{⊗2}`, gain 9 at the
/// fine Nyquist frequency), which noisy inputs and deep stacks turn into a diverging loss.
pub fn prolong_network(varmap: &VarMap, r: Restriction, p: Prolongation) -> Result<VarMap> {
    prolong_network_with(varmap, r, p, HOT_START_DAMPING)
}

/// The Galerkin hot start in place (SPEC section 4, 002 eq. 4.14): every stencil of `varmap`
/// is replaced by its prolongation [`prolong_network`], so models and optimizers holding the
/// variables see the fine-mesh weights.
pub fn prolong_in_place(varmap: &VarMap, r: Restriction, p: Prolongation) -> Result<()> {
    let fine = prolong_network(varmap, r, p)?;
    let fine = fine
        .data()
        .lock()
        .map_err(|_| Error::InvalidConfig("poisoned VarMap".into()))?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| Error::InvalidConfig("poisoned VarMap".into()))?;
    for (name, var) in vars.iter() {
        let new = fine.get(name).ok_or_else(|| {
            Error::InvalidConfig(format!("the prolongation lost variable {name}"))
        })?;
        var.set(new.as_tensor())?;
    }
    Ok(())
}

/// The fine-mesh copy of a coarse network: every stencil `s_H` becomes the damped Galerkin
/// prolongation `s_h = argmin |A s_h - s_H|^2 + λ |s_h - s_H|^2`, i.e.
/// `s_h = (AᵀA + λI)^{-1} (Aᵀ + λI) s_H` with `A = M ⊗ M` the system of 002 eq. 4.14
/// (`grids::galerkin::prolongation_system`). `λ = 0` is the exact solve `R K(s_h) P = K(s_H)`,
/// the inverse of [`restrict_network`]; `λ -> ∞` is the identity transfer. 1x1 kernels and
/// non-stencil variables are copied; errors as in [`restrict_network`] or for `λ < 0`.
pub fn prolong_network_with(
    varmap: &VarMap,
    r: Restriction,
    p: Prolongation,
    lambda: f64,
) -> Result<VarMap> {
    if !(lambda >= 0.0 && lambda.is_finite()) {
        return Err(Error::InvalidConfig(format!(
            "prolongation damping must be finite and >= 0, got {lambda}"
        )));
    }
    map_stencils(varmap, |w| damped_prolong_weights(w, r, p, lambda))
}

/// `vec(s_h) = B vec(s_H)` for every stencil of `w`, `B = (AᵀA + λI)^{-1}(Aᵀ + λI)`.
fn damped_prolong_weights(
    w: &Tensor,
    r: Restriction,
    p: Prolongation,
    lambda: f64,
) -> grids::Result<Tensor> {
    let (co, ci, k, _) = w.dims4()?;
    if k == 1 || lambda == 0.0 {
        return grids::galerkin::prolong_weights(w, r, p);
    }
    let a = grids::galerkin::prolongation_system(r, p, k)?;
    let n = k * k;
    let at = a.transpose();
    let (mut lhs, mut rhs) = (at.matmul(&a)?.data().to_vec(), at.data().to_vec());
    for i in 0..n {
        lhs[i * n + i] += lambda;
        rhs[i * n + i] += lambda;
    }
    let b = grids::Matrix::from_vec(n, n, lhs)?.solve(&grids::Matrix::from_vec(n, n, rhs)?)?;
    let bt =
        Tensor::from_vec(b.transpose().data().to_vec(), (n, n), w.device())?.to_dtype(w.dtype())?;
    Ok(w.reshape((co * ci, n))?
        .matmul(&bt)?
        .reshape((co, ci, k, k))?)
}
