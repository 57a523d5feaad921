//! Dense `f64` vector helpers used by the CG kernels (Euclidean inner product and norm).

/// Euclidean inner product `a^T b` (lengths must match; the shorter length is used otherwise).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean norm `||a||_2 = sqrt(a^T a)`.
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `y <- y + alpha x` (BLAS axpy).
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(yi, xi)| *yi += alpha * xi);
}
