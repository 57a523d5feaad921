//! The loss history of a run: one [`HistoryPoint`] per iteration, written as `history.csv`.

use crate::error::{io_error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One point of the loss history (every iteration; `val_loss` where validated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Global iteration (0-based, over all stages).
    pub iteration: u64,
    /// Stage index (0 = the first, coarsest for Full-Multiscale).
    pub stage: usize,
    /// Finest level of the stage (mesh `2^level h`).
    pub level: usize,
    /// MGE loss of the iteration (001 eq. 6, the sum of its terms).
    pub loss: f64,
    /// Cumulative work units (001 eq. 7).
    pub wu: f64,
    /// Wall time since the run started (over resumes).
    pub wall_s: f64,
    /// Wall time of the training steps alone: `wall_s` less validation and checkpoints.
    #[serde(default)]
    pub train_s: f64,
    /// Of `train_s`, the seconds spent drawing the training batches: rendering or reading and
    /// degrading images (with a loader that renders ahead, what was not ready in time).
    #[serde(default)]
    pub data_s: f64,
    /// Validation loss, on the iterations that validated.
    pub val_loss: Option<f64>,
    /// Per-term variance ratios `V_l / V_fine` (SPEC section 3, smoothed), finest term first,
    /// on the iterations that measured per-term statistics (in a pass of their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variance: Option<Vec<Option<f64>>>,
    /// Seconds of the per-term statistics pass when this iteration measured them (0 with
    /// adaptive allocation, whose statistics are part of its training step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_step_s: Option<f64>,
    /// #WU of that pass (outside `wu`), when this iteration measured statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_wu: Option<f64>,
}

/// The header of [`write_csv`].
pub const CSV_HEADER: &str = "iteration,stage,level,loss,wu,wall_s,train_s,data_s,val_loss";

/// Writes `h` to `path` as CSV ([`CSV_HEADER`]; `val_loss` empty where not validated),
/// atomically.
pub fn write_csv(path: &Path, h: &[HistoryPoint]) -> Result<()> {
    let mut s = format!("{CSV_HEADER}\n");
    for p in h {
        let v = p.val_loss.map(|v| format!("{v:.6e}")).unwrap_or_default();
        s.push_str(&format!(
            "{},{},{},{:.6e},{:.3},{:.3},{:.3},{:.3},{v}\n",
            p.iteration, p.stage, p.level, p.loss, p.wu, p.wall_s, p.train_s, p.data_s
        ));
    }
    models::atomic::write_atomic(path, s.as_bytes()).map_err(io_error("cannot write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_one_row_per_point_and_blank_unvalidated_losses() {
        let p = |iteration, val_loss| HistoryPoint {
            iteration,
            stage: 0,
            level: 1,
            loss: 0.5,
            wu: 2.25,
            wall_s: 1.0,
            train_s: 0.75,
            data_s: 0.25,
            val_loss,
            variance: None,
            stats_step_s: None,
            stats_wu: None,
        };
        let path = std::env::temp_dir().join(format!("train-history-{}.csv", std::process::id()));
        write_csv(&path, &[p(0, None), p(1, Some(0.25))]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows[0], CSV_HEADER);
        assert_eq!(rows[1], "0,0,1,5.000000e-1,2.250,1.000,0.750,0.250,");
        assert_eq!(
            rows[2],
            "1,0,1,5.000000e-1,2.250,1.000,0.750,0.250,2.500000e-1"
        );
        std::fs::remove_file(&path).ok();
    }
}
