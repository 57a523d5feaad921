//! The restoration tasks of 001 section 4 and what each one fixes: its degradation and the test
//! metric of 001 Table 2.

use crate::metrics::Metric;
use crate::{Degradation, Error, Result};
use std::str::FromStr;

/// Restoration task of 001 section 4 (the degradation applied to clean images). Spelled in
/// kebab-case in configuration files and on command lines (`denoise`, `deblur`, `inpaint`,
/// `superres`); [`FromStr`] and serde accept the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Denoising, [`Degradation::Denoise`].
    Denoise,
    /// Deblurring, [`Degradation::Deblur`].
    Deblur,
    /// Inpainting, [`Degradation::Inpaint`].
    Inpaint,
    /// Super-resolution x2, [`Degradation::SuperRes`].
    Superres,
}

impl Task {
    /// Every task, in the order of 001 Table 2.
    pub const ALL: [Task; 4] = [Task::Denoise, Task::Deblur, Task::Inpaint, Task::Superres];

    /// The name accepted by [`FromStr`] and serde.
    pub fn name(self) -> &'static str {
        match self {
            Task::Denoise => "denoise",
            Task::Deblur => "deblur",
            Task::Inpaint => "inpaint",
            Task::Superres => "superres",
        }
    }

    /// Test metric of 001 Table 2: MSE for denoising and deblurring, SSIM otherwise.
    pub fn metric(self) -> Metric {
        match self {
            Task::Denoise | Task::Deblur => Metric::Mse,
            Task::Inpaint | Task::Superres => Metric::Ssim,
        }
    }

    /// The degradation of this task (001 section 4, Appendix D); `blur_sigma` is the PSF width
    /// in pixels of deblurring (001: 3 at 64x64), unused by the other tasks.
    pub fn degradation(self, blur_sigma: f64) -> Degradation {
        match self {
            Task::Denoise => Degradation::Denoise,
            Task::Deblur => Degradation::Deblur { sigma: blur_sigma },
            Task::Inpaint => Degradation::Inpaint,
            Task::Superres => Degradation::SuperRes,
        }
    }
}

impl FromStr for Task {
    type Err = Error;
    /// Parses the names of [`Task::name`]; an unknown name is an error listing them.
    fn from_str(s: &str) -> Result<Self> {
        find_name("task", s, Task::ALL, Task::name)
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The member of `all` whose `name` is `s`, or an [`Error::InvalidArgument`] naming the `kind`
/// of choice and listing the allowed names.
pub(crate) fn find_name<T: Copy, const N: usize>(
    kind: &str,
    s: &str,
    all: [T; N],
    name: fn(T) -> &'static str,
) -> Result<T> {
    all.into_iter().find(|&v| name(v) == s).ok_or_else(|| {
        let allowed: Vec<&str> = all.into_iter().map(name).collect();
        Error::InvalidArgument(format!(
            "unknown {kind} {s:?}: expected one of {}",
            allowed.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_and_from_str_agree() {
        for t in Task::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.name()));
            assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), t);
            assert_eq!(t.name().parse::<Task>().unwrap(), t);
            assert_eq!(t.to_string(), t.name());
        }
        let e = "colorize".parse::<Task>().unwrap_err().to_string();
        assert!(
            e.contains("colorize") && e.contains("denoise, deblur, inpaint, superres"),
            "{e}"
        );
        assert!(serde_json::from_str::<Task>("\"colorize\"").is_err());
    }

    #[test]
    fn each_task_has_its_metric_and_degradation() {
        assert_eq!(Task::Denoise.metric(), Metric::Mse);
        assert_eq!(Task::Superres.metric(), Metric::Ssim);
        assert_eq!(
            Task::Deblur.degradation(2.0),
            Degradation::Deblur { sigma: 2.0 }
        );
        assert_eq!(Task::Superres.degradation(2.0), Degradation::SuperRes);
    }
}
