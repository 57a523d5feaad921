//! Scoring a trained model on a fixed degraded test set: the photos of a folder at one mesh,
//! degraded once from a seed, so that every model compared on it sees identical inputs (and
//! paired t-tests over the images apply, `data::paired_t_test`).
//!
//! Per image `i` the scores are `MSE_i = mean((f(u_i) - y_i)^2)`, `PSNR_i = 10 log10(1 / MSE_i)`
//! and `SSIM_i` (Wang et al. 2004; `data::metrics`).

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use data::metrics::{per_image, Metric};
use data::{Degraded, ImageSource, Task};
use rand::{rngs::StdRng, SeedableRng};
use std::fmt::Write as _;
use std::path::Path;

/// Images per forward pass of [`TestSet::predict`].
pub const PREDICT_CHUNK: usize = 16;

/// Which test images are loaded and how they are degraded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestSpec {
    /// The restoration task, whose degradation is applied ([`Task::degradation`]).
    pub task: Task,
    /// Mesh of the clean images (`size x size`).
    pub size: usize,
    /// 3 (colour) or 1 (grey, ITU-R BT.601 luma).
    pub channels: usize,
    /// `None`: every photo whole (centre-cropped square, area-resized); `Some(k)`: `k` random
    /// square patches of side `4 size` cycling over the photos.
    pub patches: Option<usize>,
    /// Keep only the first this many images (only those are resized); `None`: all.
    pub limit: Option<usize>,
    /// Deblurring PSF width in pixels of `size` (001 Appendix D: 3 at 64x64).
    pub blur_sigma: f64,
    /// Seed of the patches and the degradation (the same seed gives the same inputs, noise
    /// levels and masks).
    pub seed: u64,
}

impl TestSpec {
    /// Every photo whole at mesh `size` in colour, degraded for `task` with seed 0 and the
    /// deblurring PSF of 001 (sigma 3 px).
    pub fn new(task: Task, size: usize) -> Self {
        Self {
            task,
            size,
            channels: 3,
            patches: None,
            limit: None,
            blur_sigma: 3.0,
            seed: 0,
        }
    }
}

/// A fixed degraded test set.
#[derive(Debug, Clone)]
pub struct TestSet {
    /// One name per image (file stem, `stem#k` for the k-th random patch of a photo).
    pub names: Vec<String>,
    /// Degraded inputs and clean targets.
    pub degraded: Degraded,
}

impl TestSet {
    /// The PNG/JPEG photos of `dir` as `spec` says, on `device`.
    pub fn load(dir: &Path, spec: &TestSpec, device: &Device) -> Result<Self> {
        let folder = data::PhotoFolder::open(dir)?.grayscale(spec.channels == 1);
        let stems: Vec<String> = folder
            .paths()
            .iter()
            .map(|p| {
                p.file_stem()
                    .map_or("?".into(), |s| s.to_string_lossy().into_owned())
            })
            .collect();
        let (source, mut names): (Box<dyn ImageSource + Send + Sync>, Vec<String>) =
            match spec.patches {
                None => (Box::new(folder), stems),
                Some(k) => {
                    let names = (0..k)
                        .map(|i| format!("{}#{}", stems[i % stems.len()], i / stems.len()))
                        .collect();
                    let crops = folder.with_random_crops(4 * spec.size, spec.seed);
                    (Box::new(crops), names)
                }
            };
        names.truncate(spec.limit.unwrap_or(usize::MAX));
        let indices: Vec<u64> = (0..names.len() as u64).collect();
        let clean = data::load_batch(source.as_ref(), &indices, spec.size, 2, device)?;
        let mut rng = StdRng::seed_from_u64(data::mix_seed(spec.seed, 0x7E57));
        let degraded = spec
            .task
            .degradation(spec.blur_sigma)
            .apply(&clean, &mut rng)?;
        Ok(Self { names, degraded })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The model's outputs on the whole set, [`PREDICT_CHUNK`] images per forward pass (the
    /// noise level `t` goes with each chunk for denoising).
    pub fn predict(&self, model: &dyn models::Model) -> Result<Tensor> {
        let d = &self.degraded;
        let mut outs = Vec::new();
        for start in (0..self.len()).step_by(PREDICT_CHUNK) {
            let len = PREDICT_CHUNK.min(self.len() - start);
            let x = d.input.narrow(0, start, len)?;
            let t = d.t.as_ref().map(|t| t.narrow(0, start, len)).transpose()?;
            outs.push(model.forward(&x, t.as_ref())?.detach());
        }
        Ok(Tensor::cat(&outs, 0)?)
    }

    /// Per-image scores of the predictions `pred` against the clean targets; an error naming
    /// the shapes when `pred` does not have the targets' shape (a model of another task).
    pub fn score(&self, pred: &Tensor) -> Result<Scores> {
        let (want, got) = (self.degraded.target.dims(), pred.dims());
        if want != got {
            return Err(Error::Invalid(format!(
                "the model maps the test inputs {:?} to {got:?}, but the targets are {want:?}",
                self.degraded.input.dims()
            )));
        }
        Scores::of(pred, &self.degraded.target)
    }
}

/// Per-image MSE, PSNR and SSIM (SPEC section 6) of predictions against clean targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// `mean((pred - target)^2)` per image.
    pub mse: Vec<f64>,
    /// `10 log10(1 / MSE)` dB per image (`+inf` for a perfect output).
    pub psnr: Vec<f64>,
    /// Mean SSIM per image.
    pub ssim: Vec<f64>,
}

impl Scores {
    /// The scores of the `[N, C, H, W]` predictions `pred` against `target` (same shape).
    pub fn of(pred: &Tensor, target: &Tensor) -> Result<Self> {
        Ok(Self {
            mse: per_image(Metric::Mse, pred, target)?,
            psnr: per_image(Metric::Psnr, pred, target)?,
            ssim: per_image(Metric::Ssim, pred, target)?,
        })
    }

    /// The values of metric `m`, one per image.
    pub fn metric(&self, m: Metric) -> &[f64] {
        match m {
            Metric::Mse => &self.mse,
            Metric::Psnr => &self.psnr,
            Metric::Ssim => &self.ssim,
        }
    }

    /// False when some MSE or SSIM is not finite or some PSNR is NaN (diverged weights;
    /// PSNR alone may be `+inf`, for a perfect output).
    pub fn is_finite(&self) -> bool {
        self.mse.iter().chain(&self.ssim).all(|v| v.is_finite())
            && !self.psnr.iter().any(|v| v.is_nan())
    }

    /// CSV text `image,mse,psnr,ssim`, one row per image named by `names`.
    pub fn csv(&self, names: &[String]) -> String {
        let mut text = String::from("image,mse,psnr,ssim\n");
        for (i, name) in names.iter().enumerate() {
            let _ = writeln!(
                text,
                "{name},{:.6e},{:.4},{:.6}",
                self.mse[i], self.psnr[i], self.ssim[i]
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity on images of this many channels, as a model of every task.
    struct Identity(usize);

    impl models::Model for Identity {
        fn forward(&self, x: &Tensor, _t: Option<&Tensor>) -> candle_core::Result<Tensor> {
            Ok(x.clone())
        }
        fn downsampling_factor(&self) -> usize {
            1
        }
        fn in_channels(&self) -> usize {
            self.0
        }
    }

    /// A folder of three 20x20 PNGs.
    fn photos(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("train-evaluate-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        for (k, stem) in ["a", "b", "c"].iter().enumerate() {
            let img = image::RgbImage::from_fn(20, 20, |x, y| {
                image::Rgb([(k * 80) as u8, (x * 12) as u8, (y * 12) as u8])
            });
            img.save(dir.join(format!("{stem}.png"))).unwrap();
        }
        dir
    }

    #[test]
    fn test_sets_are_fixed_by_the_seed_and_scored_per_image() {
        let dir = photos("fixed");
        let dev = Device::Cpu;
        let spec = TestSpec::new(Task::Denoise, 8);
        let test = TestSet::load(&dir, &spec, &dev).unwrap();
        assert_eq!(test.names, ["a", "b", "c"]);
        assert_eq!((test.len(), test.is_empty()), (3, false));
        assert_eq!(test.degraded.input.dims(), &[3, 3, 8, 8]);
        let again = TestSet::load(&dir, &spec, &dev).unwrap();
        let other = TestSet::load(&dir, &TestSpec { seed: 1, ..spec }, &dev).unwrap();
        let pred = test.predict(&Identity(3)).unwrap();
        let scores = test.score(&pred).unwrap();
        assert_eq!(
            again.score(&again.predict(&Identity(3)).unwrap()).unwrap(),
            scores
        );
        assert_ne!(
            other.score(&other.predict(&Identity(3)).unwrap()).unwrap(),
            scores
        );
        // PSNR is 10 log10(1 / MSE) per image.
        for (p, m) in scores.psnr.iter().zip(&scores.mse) {
            assert!((p + 10.0 * m.log10()).abs() < 1e-6, "{scores:?}");
        }
        assert!(scores.is_finite());
        assert_eq!(scores.metric(Metric::Ssim), scores.ssim.as_slice());
        let csv = scores.csv(&test.names);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4, "{csv}");
        assert_eq!(lines[0], "image,mse,psnr,ssim");
        assert!(lines[3].starts_with("c,"), "{csv}");
        // The targets score perfectly: MSE 0, SSIM 1, PSNR +inf (still "finite" scores).
        let perfect = test.score(&test.degraded.target).unwrap();
        assert!(perfect.mse.iter().all(|&v| v == 0.0));
        assert!(perfect.ssim.iter().all(|&v| (v - 1.0).abs() < 1e-9));
        assert!(perfect.is_finite());
        let nan = Scores {
            mse: vec![f64::NAN],
            ..perfect.clone()
        };
        assert!(!nan.is_finite());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn patches_limits_and_shapes() {
        let dir = photos("patches");
        let dev = Device::Cpu;
        let spec = TestSpec {
            patches: Some(5),
            limit: Some(4),
            channels: 1,
            ..TestSpec::new(Task::Superres, 8)
        };
        let test = TestSet::load(&dir, &spec, &dev).unwrap();
        assert_eq!(test.names, ["a#0", "b#0", "c#0", "a#1"]);
        // Super-resolution: inputs at half the mesh, so the identity has the wrong shape.
        assert_eq!(test.degraded.input.dims(), &[4, 1, 4, 4]);
        assert_eq!(test.degraded.target.dims(), &[4, 1, 8, 8]);
        let pred = test.predict(&Identity(1)).unwrap();
        let e = test.score(&pred).unwrap_err().to_string();
        assert!(
            e.contains("[4, 1, 4, 4]") && e.contains("[4, 1, 8, 8]"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
