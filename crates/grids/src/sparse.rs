//! Explicit sparse operators on `n x n` grids (images vectorised row-major, pixel `(i, j)`
//! at index `i n + j`): restriction, prolongation and convolution matrices in CSR form.
//! They are the independent reference for the batch tensor ops and the closed-form Galerkin
//! stencils (002 eq. 2.6b is written with these matrices).

use crate::{Boundary, Error, Matrix, Prolongation, Restriction, Result};

/// A compressed-sparse-row f64 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseMatrix {
    rows: usize,
    cols: usize,
    indptr: Vec<usize>,
    indices: Vec<usize>,
    values: Vec<f64>,
}

impl SparseMatrix {
    /// Builds from `(row, col, value)` triplets; duplicates are summed. Errors on an
    /// out-of-range index.
    pub fn from_triplets(
        rows: usize,
        cols: usize,
        triplets: &[(usize, usize, f64)],
    ) -> Result<Self> {
        if let Some(&(i, j, _)) = triplets.iter().find(|t| t.0 >= rows || t.1 >= cols) {
            return Err(Error::Shape(format!(
                "entry ({i},{j}) outside a {rows}x{cols} matrix"
            )));
        }
        let mut sorted = triplets.to_vec();
        sorted.sort_by_key(|t| (t.0, t.1));
        let mut indptr = vec![0; rows + 1];
        let (mut indices, mut values) = (Vec::new(), Vec::<f64>::new());
        let mut last = None;
        for (i, j, v) in sorted {
            if last == Some((i, j)) {
                if let Some(x) = values.last_mut() {
                    *x += v;
                }
                continue;
            }
            last = Some((i, j));
            indices.push(j);
            values.push(v);
            indptr[i + 1] += 1;
        }
        for i in 0..rows {
            indptr[i + 1] += indptr[i];
        }
        Ok(Self {
            rows,
            cols,
            indptr,
            indices,
            values,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Stored entries of row `i` as `(col, value)`.
    pub fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let range = self.indptr[i]..self.indptr[i + 1];
        self.indices[range.clone()]
            .iter()
            .copied()
            .zip(self.values[range].iter().copied())
    }

    /// All stored entries as `(row, col, value)`.
    pub fn triplets(&self) -> Vec<(usize, usize, f64)> {
        (0..self.rows)
            .flat_map(|i| self.row(i).map(move |(j, v)| (i, j, v)))
            .collect()
    }

    /// `y = A x`.
    pub fn matvec(&self, x: &[f64]) -> Result<Vec<f64>> {
        if x.len() != self.cols {
            return Err(Error::Shape(format!(
                "matvec of {} columns with {} values",
                self.cols,
                x.len()
            )));
        }
        Ok((0..self.rows)
            .map(|i| self.row(i).map(|(j, v)| v * x[j]).sum())
            .collect())
    }

    /// `A^T`.
    pub fn transpose(&self) -> Self {
        let t: Vec<_> = self
            .triplets()
            .into_iter()
            .map(|(i, j, v)| (j, i, v))
            .collect();
        Self::from_triplets(self.cols, self.rows, &t).expect("transposed indices are in range")
    }

    /// `A B`.
    pub fn matmul(&self, other: &Self) -> Result<Self> {
        if self.cols != other.rows {
            return Err(Error::Shape(format!(
                "matmul of {}x{} by {}x{}",
                self.rows, self.cols, other.rows, other.cols
            )));
        }
        let t: Vec<_> = self
            .triplets()
            .into_iter()
            .flat_map(|(i, k, a)| other.row(k).map(move |(j, b)| (i, j, a * b)))
            .collect();
        Self::from_triplets(self.rows, other.cols, &t)
    }

    /// Kronecker product `A ⊗ B` (row-major vectorisation: the 2-D operator of two 1-D ones).
    pub fn kron(&self, other: &Self) -> Self {
        let t: Vec<_> = self
            .triplets()
            .into_iter()
            .flat_map(|(i, j, a)| {
                other
                    .triplets()
                    .into_iter()
                    .map(move |(p, q, b)| (i * other.rows + p, j * other.cols + q, a * b))
            })
            .collect();
        Self::from_triplets(self.rows * other.rows, self.cols * other.cols, &t)
            .expect("kron indices are in range")
    }

    /// Dense copy (for tests and small grids).
    pub fn to_dense(&self) -> Matrix {
        let mut d = Matrix::zeros(self.rows, self.cols);
        for (i, j, v) in self.triplets() {
            d[(i, j)] += v;
        }
        d
    }
}

/// The 1-D restriction `R_1` (`n/2 x n`): `(R_1 x)_I = sum_i r(i) x_{b(2I+i)}`, `b` the
/// boundary index map.
pub fn restriction_matrix_1d(r: Restriction, n: usize, boundary: Boundary) -> Result<SparseMatrix> {
    if n == 0 || !n.is_multiple_of(2) {
        return Err(Error::Shape(format!(
            "restriction needs an even grid, got {n}"
        )));
    }
    let taps = r.taps();
    let t: Vec<_> = (0..n / 2)
        .flat_map(|big| {
            taps.support()
                .map(move |i| (big, boundary.index(2 * big as isize + i, n), taps.at(i)))
        })
        .collect();
    SparseMatrix::from_triplets(n / 2, n, &t)
}

/// The 1-D prolongation `P_1` (`2m x m`): `(P_1 x)_p = sum_J p(p - 2J) x_{b(J)}`, `b` the
/// boundary index map (the same as padding the coarse image, as the tensor op does).
pub fn prolongation_matrix_1d(
    p: Prolongation,
    m: usize,
    boundary: Boundary,
) -> Result<SparseMatrix> {
    if m == 0 {
        return Err(Error::Shape("prolongation of an empty grid".into()));
    }
    let taps = p.taps();
    let t: Vec<_> = (0..2 * m as isize)
        .flat_map(|fine| {
            // Coarse J with fine - 2J in the support: J in [(fine - hi)/2, (fine - lo)/2].
            let (lo, hi) = (*taps.support().start(), *taps.support().end());
            ((fine - hi).div_euclid(2)..=(fine - lo).div_euclid(2)).map(move |big| {
                (
                    fine as usize,
                    boundary.index(big, m),
                    taps.at(fine - 2 * big),
                )
            })
        })
        .filter(|t| t.2 != 0.0)
        .collect();
    SparseMatrix::from_triplets(2 * m, m, &t)
}

/// The 2-D restriction `R = R_1 ⊗ R_1` from `n x n` to `n/2 x n/2`.
pub fn restriction_matrix(r: Restriction, n: usize, boundary: Boundary) -> Result<SparseMatrix> {
    let r1 = restriction_matrix_1d(r, n, boundary)?;
    Ok(r1.kron(&r1))
}

/// The 2-D prolongation `P = P_1 ⊗ P_1` from `m x m` to `2m x 2m`.
pub fn prolongation_matrix(p: Prolongation, m: usize, boundary: Boundary) -> Result<SparseMatrix> {
    let p1 = prolongation_matrix_1d(p, m, boundary)?;
    Ok(p1.kron(&p1))
}

/// The periodic convolution matrix `K(s)` on an `n x n` grid (002 section 2.2):
/// `(K y)_{i,j} = sum_{a,b} s[a,b] y_{(i+a) mod n, (j+b) mod n}` for a square odd stencil.
pub fn convolution_matrix(stencil: &Matrix, n: usize) -> Result<SparseMatrix> {
    let size = stencil.rows();
    if size != stencil.cols() || size.is_multiple_of(2) || n == 0 {
        return Err(Error::Shape(format!(
            "convolution needs an odd square stencil and a non-empty grid, got {}x{} on {n}",
            stencil.rows(),
            stencil.cols()
        )));
    }
    let w = (size / 2) as isize;
    let idx = |i: isize| Boundary::Periodic.index(i, n);
    let mut t = Vec::with_capacity(n * n * size * size);
    for i in 0..n as isize {
        for j in 0..n as isize {
            for a in -w..=w {
                for b in -w..=w {
                    let v = stencil[((a + w) as usize, (b + w) as usize)];
                    t.push((idx(i) * n + idx(j), idx(i + a) * n + idx(j + b), v));
                }
            }
        }
    }
    SparseMatrix::from_triplets(n * n, n * n, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplets_sum_duplicates_and_products_match_dense() {
        let a =
            SparseMatrix::from_triplets(2, 3, &[(0, 0, 1.0), (0, 0, 2.0), (1, 2, -1.0)]).unwrap();
        assert_eq!(
            a.to_dense(),
            Matrix::from_rows(&[[3.0, 0.0, 0.0], [0.0, 0.0, -1.0]]).unwrap()
        );
        let b =
            SparseMatrix::from_triplets(3, 2, &[(0, 1, 2.0), (2, 0, 4.0), (1, 1, 5.0)]).unwrap();
        let dense = a.to_dense().matmul(&b.to_dense()).unwrap();
        assert_eq!(a.matmul(&b).unwrap().to_dense(), dense);
        assert_eq!(a.transpose().to_dense(), a.to_dense().transpose());
        assert_eq!(a.kron(&b).to_dense(), a.to_dense().kron(&b.to_dense()));
        assert!(SparseMatrix::from_triplets(1, 1, &[(1, 0, 1.0)]).is_err());
    }

    #[test]
    fn one_d_rows_sum_to_one() {
        for b in [Boundary::Periodic, Boundary::Replicate] {
            for r in Restriction::ALL {
                let m = restriction_matrix_1d(r, 8, b).unwrap().to_dense();
                for i in 0..4 {
                    assert!(((0..8).map(|j| m[(i, j)]).sum::<f64>() - 1.0).abs() < 1e-15);
                }
            }
            for p in Prolongation::ALL {
                let m = prolongation_matrix_1d(p, 4, b).unwrap().to_dense();
                for i in 0..8 {
                    assert!(((0..4).map(|j| m[(i, j)]).sum::<f64>() - 1.0).abs() < 1e-15);
                }
            }
        }
    }
}
