//! Galerkin transfer of convolution stencils between meshes `h` and `2h`
//! (002 eqs. 2.6b and 4.14, 003 eq. 3.5).
//!
//! For tensor-product operators `R = R_1 ⊗ R_1`, `P = P_1 ⊗ P_1` and a stencil `s_h` of
//! half-width `w`, the coarse operator `K_H = R K(s_h) P` on a periodic grid is again a
//! convolution, with stencil `s_H = M s_h M^T` where
//! `M[k, m] = g(2k - m)`, `g(d) = sum_i r(i) p(i - d)` (`k` coarse, `m` fine offsets).
//! For average + bilinear, `M = [[1/2, 1/8, 0], [1/2, 3/4, 1/2], [0, 1/8, 1/2]]`.

use crate::sparse::{convolution_matrix, prolongation_matrix, restriction_matrix, SparseMatrix};
use crate::{Boundary, Error, Matrix, Prolongation, Restriction, Result};
use candle_core::Tensor;

/// The transfer matrix `M` (rows: coarse offsets `-q..=q`, columns: fine offsets `-w..=w`
/// for `fine_size = 2w + 1`) with `s_H = M s_h M^T` (002 eq. 2.6b in closed form).
///
/// `q` is the smallest half-width holding every non-zero coarse entry: `q = w` for 3x3 with
/// every pair except full weighting + bilinear, whose coarse stencil grows to 5x5.
pub fn transfer_matrix(r: Restriction, p: Prolongation, fine_size: usize) -> Result<Matrix> {
    if fine_size.is_multiple_of(2) {
        return Err(Error::Shape(format!(
            "stencil size must be odd, got {fine_size}"
        )));
    }
    let (rt, pt) = (r.taps(), p.taps());
    let w = (fine_size / 2) as isize;
    let (r0, r1) = (*rt.support().start(), *rt.support().end());
    let (p0, p1) = (*pt.support().start(), *pt.support().end());
    let k_max = (w + r1 - p0).div_euclid(2);
    let k_min = -((w - r0 + p1).div_euclid(2));
    let q = k_max.max(-k_min);
    let g = |d: isize| rt.support().map(|i| rt.at(i) * pt.at(i - d)).sum::<f64>();
    let mut m = Matrix::zeros((2 * q + 1) as usize, fine_size);
    for k in -q..=q {
        for f in -w..=w {
            m[((k + q) as usize, (f + w) as usize)] = g(2 * k - f);
        }
    }
    Ok(m)
}

/// Closed-form Galerkin coarse stencil `s_H = M s_h M^T` (002 eq. 2.6b, SPEC section 1).
/// The result has size `2q+1` (see [`transfer_matrix`]).
pub fn coarse_stencil(s: &Matrix, r: Restriction, p: Prolongation) -> Result<Matrix> {
    check_stencil(s)?;
    let m = transfer_matrix(r, p, s.rows())?;
    m.matmul(s)?.matmul(&m.transpose())
}

/// The explicit coarse operator `K_H = R K(s_h) P` (002 eq. 2.6b) on a periodic `n x n`
/// fine grid, built from the sparse matrices; the reference for [`coarse_stencil`].
pub fn explicit_coarse_operator(
    s: &Matrix,
    r: Restriction,
    p: Prolongation,
    n: usize,
) -> Result<SparseMatrix> {
    check_stencil(s)?;
    let rm = restriction_matrix(r, n, Boundary::Periodic)?;
    let pm = prolongation_matrix(p, n / 2, Boundary::Periodic)?;
    rm.matmul(&convolution_matrix(s, n)?)?.matmul(&pm)
}

/// The linear system of stencil prolongation (002 eq. 4.14): `A vec(s_h) = vec(s_H)` with
/// `A = M ⊗ M` (row-major `vec`), 9x9 for 3x3 stencils. Unsupported when `M` is not square
/// (the coarse stencil would have a different size than the fine one).
pub fn prolongation_system(r: Restriction, p: Prolongation, size: usize) -> Result<Matrix> {
    let m = transfer_matrix(r, p, size)?;
    if m.rows() != size {
        return Err(Error::Unsupported(format!(
            "{r} + {p} maps {size}x{size} stencils to {0}x{0}; no square system",
            m.rows()
        )));
    }
    Ok(m.kron(&m))
}

/// Stencil prolongation (002 eq. 4.14): the `s_h` of the same size with
/// `R K(s_h) P = K(s_H)`, by solving the 9x9 system of [`prolongation_system`].
/// [`Error::Singular`] for pairs where it has no unique solution (injection + constant).
pub fn fine_stencil(s_coarse: &Matrix, r: Restriction, p: Prolongation) -> Result<Matrix> {
    check_stencil(s_coarse)?;
    let k = s_coarse.rows();
    let a = prolongation_system(r, p, k)?;
    let rhs = Matrix::from_vec(k * k, 1, s_coarse.data().to_vec())?;
    Matrix::from_vec(k, k, a.solve(&rhs)?.data().to_vec())
}

/// Restricts conv weights `[C_out, C_in, k, k]` stencil by stencil, `s_H = M s_h M^T`
/// (002 eq. 2.6b, 003 eq. 3.5), as a differentiable tensor op on `w`'s device. 1x1 kernels
/// pass unchanged (pointwise mixing is mesh-independent; `R c P = c R P ≈ c I`). Sizes
/// where the coarse stencil changes size (e.g. full weighting + bilinear) are `Unsupported`.
pub fn restrict_weights(w: &Tensor, r: Restriction, p: Prolongation) -> Result<Tensor> {
    let k = kernel_size(w)?;
    if k == 1 {
        return Ok(w.clone());
    }
    apply_stencil_map(w, &prolongation_system(r, p, k)?)
}

/// Prolongs conv weights `[C_out, C_in, k, k]` stencil by stencil by the 9x9 solve of 002
/// eq. 4.14 (`vec(s_h) = A^{-1} vec(s_H)`), differentiable; 1x1 kernels pass unchanged,
/// [`Error::Singular`] / [`Error::Unsupported`] as in [`fine_stencil`].
pub fn prolong_weights(w: &Tensor, r: Restriction, p: Prolongation) -> Result<Tensor> {
    let k = kernel_size(w)?;
    if k == 1 {
        return Ok(w.clone());
    }
    apply_stencil_map(w, &prolongation_system(r, p, k)?.inverse()?)
}

/// `vec(w'_{o,i}) = A vec(w_{o,i})` for every stencil, as one matmul.
fn apply_stencil_map(w: &Tensor, a: &Matrix) -> Result<Tensor> {
    let (co, ci, k, _) = w.dims4()?;
    let at = Tensor::from_vec(a.transpose().data().to_vec(), (k * k, k * k), w.device())?
        .to_dtype(w.dtype())?;
    Ok(w.reshape((co * ci, k * k))?
        .matmul(&at)?
        .reshape((co, ci, k, k))?)
}

fn kernel_size(w: &Tensor) -> Result<usize> {
    let (_, _, kh, kw) = w.dims4()?;
    if kh != kw || kh % 2 == 0 {
        return Err(Error::Unsupported(format!(
            "kernel shape {:?}: need odd square kernels",
            w.shape()
        )));
    }
    Ok(kh)
}

fn check_stencil(s: &Matrix) -> Result<()> {
    if s.rows() != s.cols() || s.rows().is_multiple_of(2) {
        return Err(Error::Shape(format!(
            "stencil must be odd and square, got {}x{}",
            s.rows(),
            s.cols()
        )));
    }
    Ok(())
}
