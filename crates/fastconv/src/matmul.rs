//! Bounds-checked strided views over slices and the `gemm` crate call on them.

use crate::elem::Elem;
use gemm::Parallelism;

/// Read-only `rows x cols` matrix: element `(r, c)` is `data[r rs + c cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

/// Mutable `rows x cols` matrix: element `(r, c)` is `data[r rs + c cs]`.
pub(crate) struct MatMut<'a, T> {
    pub data: &'a mut [T],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// Row-major `rows x cols` with leading dimension `ld`.
    pub fn rm(data: &'a [T], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn extent(&self) -> usize {
        extent(self.rows, self.cols, self.rs, self.cs)
    }
}

impl<'a, T> MatMut<'a, T> {
    /// Row-major `rows x cols` with leading dimension `ld`.
    pub fn rm(data: &'a mut [T], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: ld,
            cs: 1,
        }
    }

    /// Column-major `rows x cols` with leading dimension `ld`.
    pub fn cm(data: &'a mut [T], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: 1,
            cs: ld,
        }
    }
}

fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst = lhs rhs` (or `dst += lhs rhs` when `accumulate`), via `gemm::gemm`, whose contract is
/// `dst := alpha dst + beta lhs rhs`.
pub(crate) fn matmul<T: Elem>(
    dst: MatMut<'_, T>,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    accumulate: bool,
    par: Parallelism,
) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert!(
        lhs.rows == m && rhs.rows == k && rhs.cols == n,
        "matmul shape mismatch"
    );
    assert!(
        lhs.extent() <= lhs.data.len() && rhs.extent() <= rhs.data.len(),
        "matmul operand out of bounds"
    );
    assert!(
        extent(m, n, dst.rs, dst.cs) <= dst.data.len(),
        "matmul destination out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    dst.data[r * dst.rs + c * dst.cs] = T::ZERO;
                }
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every index `r rs + c cs` of the three views inside their
    // slices; `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        )
    }
}
