//! Early stopping on a validation loss.

/// Stops after `patience` validations without an improvement of more than `min_delta`
/// (serialisable, so that a checkpoint can resume it exactly).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EarlyStopping {
    patience: usize,
    min_delta: f64,
    best: Option<f64>,
    since_best: usize,
}

impl EarlyStopping {
    /// A fresh criterion.
    pub fn new(patience: usize, min_delta: f64) -> Self {
        EarlyStopping {
            patience,
            min_delta,
            best: None,
            since_best: 0,
        }
    }

    /// Records a validation loss; returns true when training should stop. A NaN never counts
    /// as an improvement.
    pub fn update(&mut self, loss: f64) -> bool {
        match self.best {
            Some(b)
                if loss.partial_cmp(&(b - self.min_delta)) != Some(std::cmp::Ordering::Less) =>
            {
                self.since_best += 1
            }
            _ if loss.is_nan() => self.since_best += 1,
            _ => {
                self.best = Some(loss);
                self.since_best = 0;
            }
        }
        self.since_best >= self.patience.max(1)
    }

    /// Best loss seen.
    pub fn best(&self) -> Option<f64> {
        self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_patience() {
        let mut e = EarlyStopping::new(2, 0.01);
        assert!(!e.update(1.0));
        assert!(!e.update(0.5));
        assert!(!e.update(0.495)); // not better by min_delta
        assert!(e.update(0.6));
        assert_eq!(e.best(), Some(0.5));
        let mut e = EarlyStopping::new(1, 0.0);
        assert!(e.update(f64::NAN));
    }
}
