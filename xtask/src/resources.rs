//! Memory estimates made before a run or an evaluation starts, so that one that cannot fit is
//! refused with the estimate and the machine's available memory instead of aborting on a
//! failed allocation halfway (or growing into swap).
//!
//! The estimates are rough sizes of the large buffers (images, feature maps kept for the
//! backward pass, parameters and optimizer moments), meant to catch runs that cannot fit by a
//! wide margin without refusing ones that do: a run is refused only when the estimate exceeds
//! `MemAvailable` of `/proc/meminfo`. Where that cannot be read (not Linux), nothing is
//! refused.

use anyhow::{bail, Result};
use candle_nn::VarMap;

/// Bytes of an `f32`.
const F32: u64 = 4;

/// `MemAvailable` of `/proc/meminfo` in bytes (`None` where it cannot be read).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

/// `MemAvailable` (kB) of a `/proc/meminfo` text, in bytes.
fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Refuse `what` when `estimate` bytes exceed `available` (when known); `hint` says what
/// to reduce.
pub fn check_fits(what: &str, estimate: u64, available: Option<u64>, hint: &str) -> Result<()> {
    tracing::debug!(what, estimate, ?available, "memory estimate");
    if let Some(avail) = available {
        if estimate > avail {
            bail!(
                "{what} needs about {} of memory (estimate), but this machine has {} available (MemAvailable in /proc/meminfo): {hint}",
                gib(estimate),
                gib(avail)
            );
        }
    }
    Ok(())
}

/// What the model's tensors tell about its memory: the number of parameters, the sum of the
/// output channels of every convolution or linear layer (feature-map values per pixel kept
/// by a forward pass) and the widest layer.
#[derive(Debug, Clone, Copy)]
pub struct ModelFootprint {
    pub params: u64,
    pub channels_sum: u64,
    pub widest: u64,
}

impl ModelFootprint {
    pub fn of(varmap: &VarMap) -> Result<Self> {
        let vars = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned VarMap"))?;
        let (mut params, mut channels_sum, mut widest) = (0u64, 0u64, 1u64);
        for v in vars.values() {
            let dims = v.as_tensor().dims();
            params += v.as_tensor().elem_count() as u64;
            if dims.len() >= 2 {
                channels_sum += dims[0] as u64;
                widest = widest.max(dims[0] as u64);
            }
        }
        Ok(Self {
            params,
            channels_sum: channels_sum.max(1),
            widest,
        })
    }
}

/// Training: per level `l` a batch of `batches[l]` images of side `size / 2^l` (an upper
/// bound for cropping too) whose feature maps (every layer's output channels, counted at the
/// level's full resolution) are kept for the backward pass, the validation batch (input,
/// target, prediction), parameters with gradient and two Adam moments.
pub fn training_bytes(
    model: ModelFootprint,
    size: u64,
    channels: u64,
    batches: &[usize],
    validation_images: u64,
) -> u64 {
    let pixels = |l: usize| (size >> l).max(1).saturating_mul(size >> l);
    let per_pixel_train = F32.saturating_mul(model.channels_sum + 4 * channels);
    let mut total = 0u64;
    for (l, &n) in batches.iter().enumerate() {
        total = total.saturating_add(
            (n as u64)
                .saturating_mul(pixels(l))
                .saturating_mul(per_pixel_train),
        );
    }
    let validation = validation_images
        .saturating_mul(pixels(0))
        .saturating_mul(F32 * (3 * channels + 2 * model.widest));
    let params = model.params.saturating_mul(4 * F32);
    total.saturating_add(validation).saturating_add(params)
}

/// Evaluation: every test image (clean, degraded input, prediction) at `size`, and one chunk
/// of `chunk` images through the model (a few feature maps of the widest layer alive at once).
pub fn evaluation_bytes(
    model: ModelFootprint,
    size: u64,
    channels: u64,
    images: u64,
    chunk: u64,
) -> u64 {
    let pixels = size.saturating_mul(size);
    let data = images
        .saturating_mul(pixels)
        .saturating_mul(F32 * 3 * channels);
    let forward = chunk
        .min(images)
        .saturating_mul(pixels)
        .saturating_mul(F32 * 3 * model.widest);
    data.saturating_add(forward)
        .saturating_add(model.params.saturating_mul(F32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_read() {
        let text = "MemTotal:       16000000 kB\nMemFree:   100 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(parse_meminfo(text), Some(8_000_000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
        if cfg!(target_os = "linux") {
            assert!(available_memory().unwrap() > 0);
        }
    }

    /// resources: an estimate above the available memory is refused, naming both.
    #[test]
    fn a_run_that_does_not_fit_is_refused_with_the_estimate() {
        let e = check_fits(
            "eval --size 16384",
            3 << 30,
            Some(1 << 30),
            "use a smaller --size",
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("3.00 GiB") && e.contains("1.00 GiB available") && e.contains("--size"),
            "{e}"
        );
        check_fits("small", 1 << 20, Some(1 << 30), "").unwrap();
        check_fits("unknown machine", u64::MAX, None, "").unwrap();
        let m = ModelFootprint {
            params: 10_000,
            channels_sum: 100,
            widest: 32,
        };
        // 13 photos at 16384^2: 3 GiB each for the clean images alone.
        assert!(evaluation_bytes(m, 16384, 3, 13, 16) > 13 * (3u64 << 30));
        assert!(evaluation_bytes(m, 64, 3, 13, 16) < 64 << 20);
        assert!(training_bytes(m, 32, 3, &[100_000_000, 200_000_000], 16) > 1 << 40);
        assert!(training_bytes(m, 32, 3, &[2, 4], 16) < 64 << 20);
    }
}
