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
fn map_stencils(varmap: &VarMap, map: impl Fn(&Tensor) -> grids::Result<Tensor>) -> Result<VarMap> {
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

/// The fine-mesh copy of a coarse network: every 3x3 stencil `s_H` is replaced by the `s_h` with
/// `R K(s_h) P = K(s_H)` (002 eq. 4.14), via `grids::galerkin::prolong_weights`; the inverse of
/// [`restrict_network`]. Errors as there.
pub fn prolong_network(varmap: &VarMap, r: Restriction, p: Prolongation) -> Result<VarMap> {
    map_stencils(varmap, |w| grids::galerkin::prolong_weights(w, r, p))
}
