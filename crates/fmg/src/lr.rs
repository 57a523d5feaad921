//! Cosine learning-rate schedule (the authors' `CosineAnnealingLR(T_max = sum_s I_s, eta_min)`).

/// `lr(k) = lr_min + (lr_0 - lr_min) (1 + cos(pi k / T)) / 2` for `k = 0 .. T`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineLr {
    /// Initial rate `lr_0`.
    pub lr0: f64,
    /// Final rate `lr_min`.
    pub lr_min: f64,
    /// Total iterations `T` over all stages.
    pub total: u64,
}

impl CosineLr {
    /// Rate at global iteration `k` (clamped to `T`).
    pub fn at(&self, k: u64) -> f64 {
        if self.total == 0 {
            return self.lr0;
        }
        let x = k.min(self.total) as f64 / self.total as f64;
        self.lr_min + (self.lr0 - self.lr_min) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_midpoint_monotone() {
        let s = CosineLr {
            lr0: 5e-4,
            lr_min: 1e-6,
            total: 100,
        };
        assert!((s.at(0) - 5e-4).abs() < 1e-15);
        assert!((s.at(100) - 1e-6).abs() < 1e-15);
        assert!((s.at(50) - (5e-4 + 1e-6) / 2.0).abs() < 1e-15);
        assert!((1..=100).all(|k| s.at(k) <= s.at(k - 1)));
        assert_eq!(s.at(1000), s.at(100));
    }
}
