//! Rediscretisation (002 section 2.1, eq. 2.4 and its 2-D basis): a 3x3 stencil is written
//! in a basis of finite-difference stencils of derivatives, whose coefficients `alpha` are
//! mesh-independent; changing `h` and mapping back moves the stencil to another mesh.
//!
//! 1-D basis on mesh `h` (002 eq. 2.4, stencil offsets -1, 0, 1):
//! `b_0 = [1, 2, 1]/4 ≈ id`, `b_1 = [-1, 0, 1]/(2h) ≈ d/dx`, `b_2 = [1, -2, 1]/h^2 ≈ d²/dx²`.
//! The 2-D basis is the tensor product `B_{pq}[a, b] = b_q(a) b_p(b)` (rows `a` along `y`,
//! columns `b` along `x`) for `∂x^p ∂y^q`, `p, q <= 2`; its scaling `h^-(p+q)` follows from
//! the Taylor moments `sum B[a,b] b^p a^q h^(p+q) / (p! q!) = 1`. The basis printed in 002
//! is the same set with typos (see `docs/grids.md`): `∂x` needs `1/(8h)` not `1/(6h)`, the
//! two third-order labels are swapped, the printed `∂xy` matrix needs `-1/(4h^2)` and the
//! printed fourth-order matrix `-1/h^4`.

use crate::{Error, Matrix, Result};

/// The mixed derivative `∂x^dx ∂y^dy` (`dx, dy <= 2`) of one basis stencil.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Derivative {
    /// Order in `x` (along stencil columns).
    pub dx: u8,
    /// Order in `y` (along stencil rows).
    pub dy: u8,
}

/// The nine basis derivatives in 002's printed order (with corrected labels): id, ∂x, ∂y,
/// ∂xx, ∂yy, ∂xy, ∂xxy, ∂xyy, ∂xxyy.
pub const BASIS: [Derivative; 9] = [
    Derivative { dx: 0, dy: 0 },
    Derivative { dx: 1, dy: 0 },
    Derivative { dx: 0, dy: 1 },
    Derivative { dx: 2, dy: 0 },
    Derivative { dx: 0, dy: 2 },
    Derivative { dx: 1, dy: 1 },
    Derivative { dx: 2, dy: 1 },
    Derivative { dx: 1, dy: 2 },
    Derivative { dx: 2, dy: 2 },
];

/// The 1-D basis matrix of 002 eq. 2.4: column `k` is `b_k` on mesh `h`, so that
/// `s = E(h) alpha` for a 3-point stencil.
pub fn basis_1d(h: f64) -> Matrix {
    let mut e = Matrix::zeros(3, 3);
    let cols = [
        [0.25, 0.5, 0.25],
        [-0.5 / h, 0.0, 0.5 / h],
        [1.0 / (h * h), -2.0 / (h * h), 1.0 / (h * h)],
    ];
    for (k, col) in cols.iter().enumerate() {
        for (i, v) in col.iter().enumerate() {
            e[(i, k)] = *v;
        }
    }
    e
}

/// The 2-D basis stencil of `d` on mesh `h`: `B[a, b] = b_dy(a) b_dx(b)`, exact for
/// `∂x^dx ∂y^dy` on polynomials of degree `<= dx` in `x` and `<= dy` in `y`.
pub fn basis_stencil(d: Derivative, h: f64) -> Matrix {
    let e = basis_1d(h);
    let mut s = Matrix::zeros(3, 3);
    for a in 0..3 {
        for b in 0..3 {
            s[(a, b)] = e[(a, d.dy as usize)] * e[(b, d.dx as usize)];
        }
    }
    s
}

/// Coefficients `alpha` (in [`BASIS`] order) with `s = sum_d alpha_d B_d(h)`, computed as
/// `A = E(h)^{-1} s E(h)^{-T}`, `alpha_{(p,q)} = A[q, p]`.
pub fn coefficients(s: &Matrix, h: f64) -> Result<[f64; 9]> {
    check(s, h)?;
    let inv = basis_1d(h).inverse()?;
    let a = inv.matmul(s)?.matmul(&inv.transpose())?;
    Ok(BASIS.map(|d| a[(d.dy as usize, d.dx as usize)]))
}

/// The stencil `sum_d alpha_d B_d(h)` on mesh `h`.
pub fn from_coefficients(alpha: &[f64; 9], h: f64) -> Matrix {
    let mut s = Matrix::zeros(3, 3);
    for (d, a) in BASIS.iter().zip(alpha) {
        let b = basis_stencil(*d, h);
        for i in 0..3 {
            for j in 0..3 {
                s[(i, j)] += a * b[(i, j)];
            }
        }
    }
    s
}

/// Rediscretisation (002 section 2.2, "first solution"): the stencil on mesh `h_new` with
/// the same derivative coefficients as `s` on mesh `h`; `s_new = T s T^T` with
/// `T = E(h_new) E(h)^{-1}` (the basis part `b_k` scales as `(h / h_new)^k`).
pub fn rediscretise(s: &Matrix, h: f64, h_new: f64) -> Result<Matrix> {
    check(s, h)?;
    if !(h_new.is_finite() && h_new > 0.0) {
        return Err(Error::Shape(format!(
            "mesh size must be positive, got {h_new}"
        )));
    }
    let t = basis_1d(h_new).matmul(&basis_1d(h).inverse()?)?;
    t.matmul(s)?.matmul(&t.transpose())
}

fn check(s: &Matrix, h: f64) -> Result<()> {
    if (s.rows(), s.cols()) != (3, 3) {
        return Err(Error::Unsupported(format!(
            "rediscretisation is defined for 3x3 stencils, got {}x{}",
            s.rows(),
            s.cols()
        )));
    }
    if !(h.is_finite() && h > 0.0) {
        return Err(Error::Shape(format!("mesh size must be positive, got {h}")));
    }
    Ok(())
}
