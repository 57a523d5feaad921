//! Dense references shared by the integration tests.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// Row-major dense matrix `rows x cols`.
pub struct Dense {
    pub rows: usize,
    pub cols: usize,
    pub a: Vec<f64>,
}

impl Dense {
    pub fn matvec(&self, x: &[f64]) -> Vec<f64> {
        (0..self.rows)
            .map(|i| {
                (0..self.cols)
                    .map(|j| self.a[i * self.cols + j] * x[j])
                    .sum()
            })
            .collect()
    }

    pub fn transpose_matvec(&self, y: &[f64]) -> Vec<f64> {
        (0..self.cols)
            .map(|j| {
                (0..self.rows)
                    .map(|i| self.a[i * self.cols + j] * y[i])
                    .sum()
            })
            .collect()
    }

    /// `A^T A`.
    pub fn gram(&self) -> Dense {
        let n = self.cols;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..self.rows)
                    .map(|k| self.a[k * n + i] * self.a[k * n + j])
                    .sum();
            }
        }
        Dense {
            rows: n,
            cols: n,
            a,
        }
    }
}

pub fn gaussian(rng: &mut StdRng, len: usize) -> Vec<f64> {
    let normal = Normal::new(0.0, 1.0).expect("valid normal");
    (0..len).map(|_| normal.sample(rng)).collect()
}

pub fn random_matrix(seed: u64, rows: usize, cols: usize) -> Dense {
    let mut rng = StdRng::seed_from_u64(seed);
    Dense {
        rows,
        cols,
        a: gaussian(&mut rng, rows * cols),
    }
}

/// SPD `B^T B / n + shift I` (well conditioned for shift ~ 0.1 .. 1).
pub fn random_spd(seed: u64, n: usize, shift: f64) -> Dense {
    let mut g = random_matrix(seed, n, n).gram();
    for i in 0..n {
        for j in 0..n {
            g.a[i * n + j] /= n as f64;
        }
        g.a[i * n + i] += shift;
    }
    g
}

/// Solve `A x = b` by Gaussian elimination with partial pivoting.
pub fn dense_solve(m: &Dense, b: &[f64]) -> Vec<f64> {
    let n = m.rows;
    let mut a = m.a.clone();
    let mut x = b.to_vec();
    for k in 0..n {
        let p = (k..n)
            .max_by(|&i, &j| a[i * n + k].abs().total_cmp(&a[j * n + k].abs()))
            .expect("non-empty");
        for j in 0..n {
            a.swap(k * n + j, p * n + j);
        }
        x.swap(k, p);
        for i in k + 1..n {
            let f = a[i * n + k] / a[k * n + k];
            for j in k..n {
                a[i * n + j] -= f * a[k * n + j];
            }
            x[i] -= f * x[k];
        }
    }
    for k in (0..n).rev() {
        let s: f64 = (k + 1..n).map(|j| a[k * n + j] * x[j]).sum();
        x[k] = (x[k] - s) / a[k * n + k];
    }
    x
}

pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let n: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    d / n.max(f64::MIN_POSITIVE)
}
