//! `cargo xtask eval`: score a trained checkpoint on a folder of images, and the test-set
//! machinery `reproduce` shares with it (one fixed degraded test set per task, so every
//! strategy is scored on identical inputs and paired t-tests apply).

use crate::common::{ensure_out_dir, Context};
use crate::config::Task;
use crate::pictures::Scale;
use crate::train::degradation;
use anyhow::{Context as _, Result};
use candle_core::{Device, IndexOp, Tensor};
use data::metrics::{per_image, Metric};
use data::{Degraded, ImageSource};
use rand::{rngs::StdRng, SeedableRng};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint written by `train` (`final.safetensors` or `checkpoints/step-*/model.safetensors`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub task: Task,
    /// Folder of PNG/JPEG test images (each is centre-cropped to a square and resized).
    #[arg(long)]
    pub images: PathBuf,
    /// Mesh the images are resized to.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Seed of the degradations (the same seed gives the same degraded inputs, and for
    /// denoising the same noise level t per image).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Deblurring PSF width in pixels of `--size` (001 Appendix D: 3 at 64x64).
    #[arg(long, default_value_t = 3.0)]
    pub blur_sigma: f64,
    #[arg(long)]
    pub out: PathBuf,
}

/// Images in the sample grid written by `eval` and `reproduce`.
pub const SAMPLE_IMAGES: usize = 4;
/// Images per forward pass when scoring.
const CHUNK: usize = 16;

/// A fixed degraded test set: the photos of a folder at one mesh, degraded once from a seed.
pub struct TestSet {
    /// One name per image (file stem, `#k` for the k-th random patch of a photo).
    pub names: Vec<String>,
    pub degraded: Degraded,
}

impl TestSet {
    /// The images of `dir` at mesh `size` with `channels` channels: every photo whole
    /// (centre-cropped square, area-resized) when `patches` is `None`, else `patches` random
    /// square patches of side `4 size` cycling over the photos. Degraded for `task` with
    /// `seed` (the same seed gives the same inputs, noise levels and masks).
    pub fn load(
        dir: &Path,
        task: Task,
        size: usize,
        channels: usize,
        patches: Option<usize>,
        blur_sigma: f64,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let folder = crate::train::photos(dir, channels)?;
        let stems: Vec<String> = folder
            .paths()
            .iter()
            .map(|p| p.file_stem().map_or("?".into(), |s| s.to_string_lossy().into_owned()))
            .collect();
        let (source, names): (Box<dyn ImageSource + Send + Sync>, Vec<String>) = match patches {
            None => (Box::new(folder), stems),
            Some(k) => {
                let names = (0..k)
                    .map(|i| format!("{}#{}", stems[i % stems.len()], i / stems.len()))
                    .collect();
                (Box::new(folder.with_random_crops(4 * size, seed)), names)
            }
        };
        let indices: Vec<u64> = (0..names.len() as u64).collect();
        let clean = data::load_batch(source.as_ref(), &indices, size, 2, device)
            .with_context(|| format!("test images in {}", dir.display()))?;
        let mut rng = StdRng::seed_from_u64(data::mix_seed(seed, 0x7E57));
        let degraded = degradation(task, blur_sigma).apply(&clean, &mut rng)?;
        Ok(Self { names, degraded })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }
}

/// The model's outputs on the whole test set, `CHUNK` images per forward pass.
pub fn predict(model: &dyn models::Model, test: &TestSet) -> Result<Tensor> {
    let d = &test.degraded;
    let mut outs = Vec::new();
    for start in (0..test.len()).step_by(CHUNK) {
        let len = CHUNK.min(test.len() - start);
        let x = d.input.narrow(0, start, len)?;
        let t = d.t.as_ref().map(|t| t.narrow(0, start, len)).transpose()?;
        outs.push(model.forward(&x, t.as_ref())?.detach());
    }
    Ok(Tensor::cat(&outs, 0)?)
}

/// Per-image MSE, PSNR and SSIM (SPEC section 6) of `pred` against the clean targets.
#[derive(Debug, Clone)]
pub struct Scores {
    pub mse: Vec<f64>,
    pub psnr: Vec<f64>,
    pub ssim: Vec<f64>,
}

impl Scores {
    pub fn of(pred: &Tensor, target: &Tensor) -> Result<Self> {
        Ok(Self {
            mse: per_image(Metric::Mse, pred, target)?,
            psnr: per_image(Metric::Psnr, pred, target)?,
            ssim: per_image(Metric::Ssim, pred, target)?,
        })
    }

    /// The values of the task's Table 2 metric.
    pub fn metric(&self, m: crate::config::Metric) -> &[f64] {
        match m {
            crate::config::Metric::Mse => &self.mse,
            crate::config::Metric::Ssim => &self.ssim,
        }
    }
}

/// `results.csv`: `image,mse,psnr,ssim`, one row per image.
pub fn write_scores(path: &Path, names: &[String], s: &Scores) -> Result<()> {
    let mut text = String::from("image,mse,psnr,ssim\n");
    for (i, name) in names.iter().enumerate() {
        writeln!(text, "{name},{:.6e},{:.4},{:.6}", s.mse[i], s.psnr[i], s.ssim[i])?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// A PNG grid, one row per test image (the first `SAMPLE_IMAGES`): the degraded input, each
/// of `outputs` (full test-set predictions), the target.
pub fn save_samples(path: &Path, test: &TestSet, outputs: &[(String, Tensor)]) -> Result<()> {
    let d = &test.degraded;
    let rows = (0..SAMPLE_IMAGES.min(test.len()))
        .map(|i| {
            let mut row = vec![d.input.i(i)?];
            for (_, o) in outputs {
                row.push(o.i(i)?);
            }
            row.push(d.target.i(i)?);
            Ok(row)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut labels = vec!["input".to_string()];
    labels.extend(outputs.iter().map(|(name, _)| name.clone()));
    labels.push("target".into());
    let side = d.target.dims().last().copied().unwrap_or(1);
    crate::pictures::save_labelled_grid(path, &labels, &rows, Scale::Unit, crate::pictures::magnification(side))
}

/// Input channels of a model configuration (3 where it does not say).
pub fn in_channels(cfg: &models::ModelConfig) -> usize {
    serde_json::to_value(cfg)
        .ok()
        .and_then(|v| v.get("in_channels").and_then(|c| c.as_u64()))
        .map_or(3, |c| c as usize)
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Score `a.checkpoint` on `a.images`; returns the scores (also written to `results.csv`).
pub fn evaluate(a: &Args, device: &Device) -> Result<Scores> {
    let out = ensure_out_dir(&a.out)?;
    let (cfg, varmap, _) = models::checkpoint::load(&a.checkpoint, device)
        .with_context(|| format!("cannot load checkpoint {}", a.checkpoint.display()))?;
    let model = models::build(
        &cfg,
        candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, device),
    )?;
    let test = TestSet::load(
        &a.images,
        a.task,
        a.size,
        in_channels(&cfg),
        None,
        a.blur_sigma,
        a.seed,
        device,
    )?;
    let pred = predict(model.as_ref(), &test)?;
    let scores = Scores::of(&pred, &test.degraded.target)?;
    write_scores(&out.join("results.csv"), &test.names, &scores)?;
    save_samples(&out.join("samples.png"), &test, &[("prediction".to_string(), pred.clone())])?;
    Ok(scores)
}

pub fn run(a: Args, ctx: &Context) -> Result<()> {
    let s = evaluate(&a, &ctx.device)?;
    println!(
        "{}: {} images, results in {}",
        a.task.name(),
        s.mse.len(),
        a.out.join("results.csv").display()
    );
    println!(
        "mean mse {:.6e} psnr {:.3} dB ssim {:.4}",
        mean(&s.mse),
        mean(&s.psnr),
        mean(&s.ssim)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{VarBuilder, VarMap};

    #[test]
    fn eval_writes_one_row_per_image_with_the_issue_columns() {
        let dir = std::env::temp_dir().join(format!("xtask-eval-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let images = dir.join("images");
        std::fs::create_dir_all(&images).unwrap();
        for (name, v) in [("a", 40u8), ("b", 200u8)] {
            let img = image::RgbImage::from_fn(20, 20, |x, y| image::Rgb([v, (x * 10) as u8, (y * 10) as u8]));
            img.save(images.join(format!("{name}.png"))).unwrap();
        }
        let cfg: models::ModelConfig =
            toml::from_str("kind = \"resnet\"\nhidden = 4\nblocks = 1\nnoise_conditioning = false").unwrap();
        let varmap = VarMap::new();
        models::build(
            &cfg,
            VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu),
        )
        .unwrap();
        let ckpt = dir.join("tiny.safetensors");
        models::checkpoint::save(&ckpt, &cfg, &varmap, &Default::default()).unwrap();
        let args = |seed| Args {
            checkpoint: ckpt.clone(),
            task: Task::Denoise,
            images: images.clone(),
            size: 16,
            seed,
            blur_sigma: 3.0,
            out: dir.join("out"),
        };
        let s = evaluate(&args(5), &Device::Cpu).unwrap();
        let text = std::fs::read_to_string(dir.join("out/results.csv")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "image,mse,psnr,ssim");
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[1].starts_with("a,") && lines[2].starts_with("b,"), "{text}");
        // PSNR is 10 log10(1 / MSE) per image, and the same seed gives the same inputs.
        for i in 0..2 {
            assert!((s.psnr[i] + 10.0 * s.mse[i].log10()).abs() < 1e-6, "{s:?}");
        }
        assert_eq!(evaluate(&args(5), &Device::Cpu).unwrap().mse, s.mse);
        assert_ne!(evaluate(&args(6), &Device::Cpu).unwrap().mse, s.mse);
        assert!(dir.join("out/samples.png").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
