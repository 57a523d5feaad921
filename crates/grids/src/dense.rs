//! Small dense f64 matrices: stencils, the transfer matrix `M` and the 9x9 stencil
//! prolongation system (002 eq. 4.14). Row-major storage.

use crate::{Error, Result};

/// A dense row-major `rows x cols` matrix of f64.
///
/// Stencils are square matrices of odd size `2w+1`; entry `(a+w, b+w)` multiplies
/// `y[i+a, j+b]` (cross-correlation, the convention of `conv2d`; 002 eq. 2.4 uses the same
/// one: `s_1` multiplies `y_{j-1}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

/// Relative pivot threshold below which a system is reported [`Error::Singular`].
const SINGULAR_TOL: f64 = 1e-12;

impl Matrix {
    /// The `rows x cols` zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// The `n x n` identity.
    pub fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m[(i, i)] = 1.0;
        }
        m
    }

    /// A matrix from row-major `data`; errors unless `data.len() == rows * cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::Shape(format!(
                "{} values for a {rows}x{cols} matrix",
                data.len()
            )));
        }
        Ok(Self { rows, cols, data })
    }

    /// A matrix from equally long rows.
    pub fn from_rows<R: AsRef<[f64]>>(rows: &[R]) -> Result<Self> {
        let cols = rows.first().map_or(0, |r| r.as_ref().len());
        let data: Vec<f64> = rows
            .iter()
            .flat_map(|r| r.as_ref().iter().copied())
            .collect();
        Self::from_vec(rows.len(), cols, data)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row-major entries.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// `A^T`.
    pub fn transpose(&self) -> Self {
        let mut t = Self::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                t[(j, i)] = self[(i, j)];
            }
        }
        t
    }

    /// `A B`; errors on mismatched inner dimensions.
    pub fn matmul(&self, other: &Self) -> Result<Self> {
        if self.cols != other.rows {
            return Err(Error::Shape(format!(
                "matmul of {}x{} by {}x{}",
                self.rows, self.cols, other.rows, other.cols
            )));
        }
        let mut c = Self::zeros(self.rows, other.cols);
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self[(i, k)];
                for j in 0..other.cols {
                    c[(i, j)] += a * other[(k, j)];
                }
            }
        }
        Ok(c)
    }

    /// Kronecker product `A ⊗ B`, so that `vec(A X B^T) = (A ⊗ B) vec(X)` for row-major `vec`.
    pub fn kron(&self, other: &Self) -> Self {
        let mut k = Self::zeros(self.rows * other.rows, self.cols * other.cols);
        for i in 0..self.rows {
            for j in 0..self.cols {
                for p in 0..other.rows {
                    for q in 0..other.cols {
                        k[(i * other.rows + p, j * other.cols + q)] = self[(i, j)] * other[(p, q)];
                    }
                }
            }
        }
        k
    }

    /// Largest absolute entry difference `max |A - B|` (infinity if shapes differ).
    pub fn max_abs_diff(&self, other: &Self) -> f64 {
        if (self.rows, self.cols) != (other.rows, other.cols) {
            return f64::INFINITY;
        }
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }

    /// Solves `A X = B` for square `A` by LU with partial pivoting; [`Error::Singular`] when a
    /// pivot is below `1e-12 * max|A|`.
    pub fn solve(&self, rhs: &Self) -> Result<Self> {
        let n = self.rows;
        if self.cols != n || rhs.rows != n {
            return Err(Error::Shape(format!(
                "solve with a {}x{} matrix and a {}x{} right-hand side",
                self.rows, self.cols, rhs.rows, rhs.cols
            )));
        }
        let scale = self.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let (mut a, mut b) = (self.clone(), rhs.clone());
        for col in 0..n {
            let (piv, best) = (col..n)
                .map(|r| (r, a[(r, col)].abs()))
                .fold((col, -1.0), |acc, x| if x.1 > acc.1 { x } else { acc });
            if best <= SINGULAR_TOL * scale || scale == 0.0 {
                return Err(Error::Singular {
                    size: n,
                    column: col,
                    pivot: best,
                });
            }
            a.swap_rows(col, piv);
            b.swap_rows(col, piv);
            for r in col + 1..n {
                let f = a[(r, col)] / a[(col, col)];
                for c in col..n {
                    a[(r, c)] -= f * a[(col, c)];
                }
                for c in 0..b.cols {
                    b[(r, c)] -= f * b[(col, c)];
                }
            }
        }
        for col in (0..n).rev() {
            for c in 0..b.cols {
                let tail: f64 = (col + 1..n).map(|k| a[(col, k)] * b[(k, c)]).sum();
                b[(col, c)] = (b[(col, c)] - tail) / a[(col, col)];
            }
        }
        Ok(b)
    }

    /// `A^{-1}` via [`Matrix::solve`].
    pub fn inverse(&self) -> Result<Self> {
        self.solve(&Self::identity(self.rows))
    }

    /// Spectral condition number `sigma_max / sigma_min`, from the eigenvalues of `A^T A`
    /// (cyclic Jacobi). Infinite for singular matrices.
    pub fn cond2(&self) -> f64 {
        let eig = self
            .transpose()
            .matmul(self)
            .map(|g| g.symmetric_eigenvalues());
        match eig {
            Ok(e) => {
                let max = e.iter().copied().fold(0.0f64, f64::max);
                let min = e.iter().copied().fold(f64::INFINITY, f64::min);
                if min <= 0.0 {
                    f64::INFINITY
                } else {
                    (max / min).sqrt()
                }
            }
            Err(_) => f64::INFINITY,
        }
    }

    /// Eigenvalues of a symmetric matrix by cyclic Jacobi rotations.
    fn symmetric_eigenvalues(&self) -> Vec<f64> {
        let n = self.rows;
        let mut a = self.clone();
        for _sweep in 0..100 {
            let off: f64 = (0..n)
                .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
                .map(|(i, j)| a[(i, j)] * a[(i, j)])
                .sum();
            if off < 1e-30 {
                break;
            }
            for p in 0..n {
                for q in p + 1..n {
                    if a[(p, q)].abs() < 1e-300 {
                        continue;
                    }
                    let theta = (a[(q, q)] - a[(p, p)]) / (2.0 * a[(p, q)]);
                    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                    let t = if theta == 0.0 { 1.0 } else { t };
                    let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                    for k in 0..n {
                        let (akp, akq) = (a[(k, p)], a[(k, q)]);
                        a[(k, p)] = c * akp - s * akq;
                        a[(k, q)] = s * akp + c * akq;
                    }
                    for k in 0..n {
                        let (apk, aqk) = (a[(p, k)], a[(q, k)]);
                        a[(p, k)] = c * apk - s * aqk;
                        a[(q, k)] = s * apk + c * aqk;
                    }
                }
            }
        }
        (0..n).map(|i| a[(i, i)]).collect()
    }

    fn swap_rows(&mut self, i: usize, j: usize) {
        if i != j {
            for c in 0..self.cols {
                self.data.swap(i * self.cols + c, j * self.cols + c);
            }
        }
    }
}

impl std::ops::Index<(usize, usize)> for Matrix {
    type Output = f64;
    fn index(&self, (i, j): (usize, usize)) -> &f64 {
        &self.data[i * self.cols + j]
    }
}

impl std::ops::IndexMut<(usize, usize)> for Matrix {
    fn index_mut(&mut self, (i, j): (usize, usize)) -> &mut f64 {
        &mut self.data[i * self.cols + j]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_inverts_and_detects_singular() {
        let a = Matrix::from_rows(&[[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 2.0, 5.0]]).unwrap();
        let inv = a.inverse().unwrap();
        assert!(a.matmul(&inv).unwrap().max_abs_diff(&Matrix::identity(3)) < 1e-14);
        let s = Matrix::from_rows(&[[1.0, 2.0], [2.0, 4.0]]).unwrap();
        assert!(matches!(s.inverse(), Err(Error::Singular { .. })));
    }

    #[test]
    fn cond2_of_diagonal_and_rotation() {
        let d = Matrix::from_rows(&[[3.0, 0.0], [0.0, -0.5]]).unwrap();
        assert!((d.cond2() - 6.0).abs() < 1e-12);
        // Condition number is invariant under an orthogonal factor.
        let (c, s) = (0.6, 0.8);
        let q = Matrix::from_rows(&[[c, -s], [s, c]]).unwrap();
        assert!((q.matmul(&d).unwrap().cond2() - 6.0).abs() < 1e-10);
    }

    #[test]
    fn kron_vectorises_two_sided_product() {
        let a = Matrix::from_rows(&[[1.0, 2.0], [3.0, 4.0]]).unwrap();
        let b = Matrix::from_rows(&[[0.5, -1.0], [2.0, 0.25]]).unwrap();
        let x = Matrix::from_rows(&[[1.0, -2.0], [0.5, 3.0]]).unwrap();
        let lhs = a.matmul(&x).unwrap().matmul(&b.transpose()).unwrap();
        let vx = Matrix::from_vec(4, 1, x.data().to_vec()).unwrap();
        let rhs = a.kron(&b).matmul(&vx).unwrap();
        assert!(
            Matrix::from_vec(4, 1, lhs.data().to_vec())
                .unwrap()
                .max_abs_diff(&rhs)
                < 1e-14
        );
    }
}
