//! `cargo xtask eval`: score a trained checkpoint on a folder of images ([`train::evaluate`]:
//! one fixed degraded test set, so every model is scored on identical inputs and paired t-tests
//! apply), and the files `reproduce` writes beside its scores (`scores.csv`, sample grids).

use crate::common::{ensure_out_dir, Context};
use crate::report::pictures::Scale;
use crate::reproduce::mean;
use anyhow::{Context as _, Result};
use candle_core::{Device, IndexOp, Tensor};
use data::Task;
use std::path::{Path, PathBuf};
use train::evaluate::{Scores, TestSet, TestSpec, PREDICT_CHUNK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint written by `train` (`final.safetensors` or `checkpoints/step-*/model.safetensors`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, value_parser = crate::common::choice(Task::ALL, Task::name))]
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

/// Writes the per-image scores of `names` (`image,mse,psnr,ssim`, [`Scores::csv`]) to `path`.
pub fn write_scores(path: &Path, names: &[String], s: &Scores) -> Result<()> {
    std::fs::write(path, s.csv(names)).with_context(|| format!("cannot write {}", path.display()))
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
    crate::report::pictures::save_labelled_grid(
        path,
        &labels,
        &rows,
        Scale::Unit,
        crate::report::pictures::magnification(side),
    )
}

/// Input channels of a model configuration (3 where it does not say).
pub fn in_channels(cfg: &models::ModelConfig) -> usize {
    serde_json::to_value(cfg)
        .ok()
        .and_then(|v| v.get("in_channels").and_then(|c| c.as_u64()))
        .map_or(3, |c| c as usize)
}

/// Largest `--size` (and `data.size`) accepted.
pub const MAX_SIZE: usize = 16384;

/// The task a checkpoint was trained for, from the run's `config.toml` beside it
/// (`DIR/final.safetensors` or `DIR/checkpoints/step-*/model.safetensors`); `None` when there
/// is no such file.
fn trained_task(checkpoint: &Path) -> Option<(Task, PathBuf)> {
    let parent = checkpoint.parent()?;
    let candidates = [
        Some(parent.to_path_buf()),
        parent
            .parent()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|d| d.join("config.toml"))
        .find(|p| p.is_file())
        .and_then(|p| {
            let table: toml::Table = toml::from_str(&std::fs::read_to_string(&p).ok()?).ok()?;
            Some((table.get("task")?.as_str()?.parse().ok()?, p))
        })
}

/// Load `checkpoint`, refusing non-finite weights.
fn load_model(
    checkpoint: &Path,
    device: &Device,
) -> Result<(
    models::ModelConfig,
    candle_nn::VarMap,
    Box<dyn models::Model>,
)> {
    let (cfg, varmap, _) = models::checkpoint::load(checkpoint, device)
        .with_context(|| format!("cannot load checkpoint {}", checkpoint.display()))?;
    if let Some(name) = train::validation::non_finite_parameter(&varmap)? {
        anyhow::bail!("checkpoint {}: parameter {name} holds NaN or infinite values (a diverged run): refusing to score it", checkpoint.display());
    }
    let model = models::build(
        &cfg,
        candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, device),
    )?;
    Ok((cfg, varmap, model))
}

/// Score the model of `checkpoint` on `test`, writing `results.csv` and `samples.png` to `out`.
/// Refuses non-finite weights, outputs of the wrong shape (a model of another task) and
/// non-finite scores.
pub fn score_checkpoint(
    checkpoint: &Path,
    test: &TestSet,
    out: &Path,
    device: &Device,
) -> Result<Scores> {
    let out = ensure_out_dir(out)?;
    let (cfg, _varmap, model) = load_model(checkpoint, device)?;
    let what = || format!("the model of {} ({})", checkpoint.display(), cfg.kind());
    let pred = test.predict(model.as_ref()).with_context(|| {
        format!(
            "{} cannot be applied to these test inputs: was it trained for another task?",
            what()
        )
    })?;
    let scores = test.score(&pred).with_context(|| {
        format!(
            "{}: it was trained for another task (super-resolution doubles the side, the other tasks keep it)",
            what()
        )
    })?;
    if !scores.is_finite() {
        anyhow::bail!(
            "{} gives non-finite outputs (NaN or infinite scores): the weights have diverged",
            what()
        );
    }
    write_scores(&out.join("results.csv"), &test.names, &scores)?;
    save_samples(
        &out.join("samples.png"),
        test,
        &[("prediction".to_string(), pred.clone())],
    )?;
    Ok(scores)
}

/// Score `a.checkpoint` on `a.images`; returns the scores (also written to `results.csv`).
pub fn evaluate(a: &Args, device: &Device) -> Result<Scores> {
    if a.size < 4 || a.size > MAX_SIZE {
        anyhow::bail!("--size {}: must be between 4 and {MAX_SIZE}", a.size);
    }
    if a.task == Task::Superres && !a.size.is_multiple_of(2) {
        anyhow::bail!(
            "--size {}: super-resolution needs an even size (the input is half of it)",
            a.size
        );
    }
    if let Some((trained, config)) = trained_task(&a.checkpoint) {
        if trained != a.task {
            anyhow::bail!(
                "--task {}: the checkpoint {} was trained for task {} ({} says so); evaluate it with --task {}",
                a.task.name(),
                a.checkpoint.display(),
                trained.name(),
                config.display(),
                trained.name()
            );
        }
    }
    let (cfg, varmap, _) = load_model(&a.checkpoint, device)?;
    let channels = in_channels(&cfg);
    let files = std::fs::read_dir(&a.images)
        .with_context(|| format!("cannot list --images {}", a.images.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_ascii_lowercase();
            n.ends_with(".png") || n.ends_with(".jpg") || n.ends_with(".jpeg")
        })
        .count();
    crate::resources::check_fits(
        &format!("eval --size {} on {files} images", a.size),
        crate::resources::evaluation_bytes(
            crate::resources::ModelFootprint::of(&varmap)?,
            a.size as u64,
            channels as u64,
            files as u64,
            PREDICT_CHUNK as u64,
        ),
        crate::resources::available_memory(),
        "use a smaller --size or fewer images",
    )?;
    drop(varmap);
    let spec = TestSpec {
        channels,
        blur_sigma: a.blur_sigma,
        seed: a.seed,
        ..TestSpec::new(a.task, a.size)
    };
    let test = TestSet::load(&a.images, &spec, device)
        .with_context(|| format!("test images in {}", a.images.display()))?;
    score_checkpoint(&a.checkpoint, &test, &a.out, device)
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
            let img = image::RgbImage::from_fn(20, 20, |x, y| {
                image::Rgb([v, (x * 10) as u8, (y * 10) as u8])
            });
            img.save(images.join(format!("{name}.png"))).unwrap();
        }
        let cfg: models::ModelConfig =
            toml::from_str("kind = \"resnet\"\nhidden = 4\nblocks = 1\nnoise_conditioning = false")
                .unwrap();
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
        assert!(
            lines[1].starts_with("a,") && lines[2].starts_with("b,"),
            "{text}"
        );
        // PSNR is 10 log10(1 / MSE) per image, and the same seed gives the same inputs.
        for i in 0..2 {
            assert!((s.psnr[i] + 10.0 * s.mse[i].log10()).abs() < 1e-6, "{s:?}");
        }
        assert_eq!(evaluate(&args(5), &Device::Cpu).unwrap().mse, s.mse);
        assert_ne!(evaluate(&args(6), &Device::Cpu).unwrap().mse, s.mse);
        assert!(dir.join("out/samples.png").exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A folder of `n` small PNGs and a tiny denoising ResNet checkpoint in `dir`.
    fn fixture(dir: &Path, n: usize) -> (PathBuf, PathBuf, VarMap, models::ModelConfig) {
        std::fs::remove_dir_all(dir).ok();
        let images = dir.join("images");
        std::fs::create_dir_all(&images).unwrap();
        for k in 0..n {
            let img = image::RgbImage::from_fn(20, 20, |x, y| {
                image::Rgb([(k * 50) as u8, (x * 10) as u8, (y * 10) as u8])
            });
            img.save(images.join(format!("{k}.png"))).unwrap();
        }
        let cfg: models::ModelConfig =
            toml::from_str("kind = \"resnet\"\nhidden = 4\nblocks = 1\nnoise_conditioning = false")
                .unwrap();
        let varmap = VarMap::new();
        models::build(
            &cfg,
            VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu),
        )
        .unwrap();
        let ckpt = dir.join("final.safetensors");
        models::checkpoint::save(&ckpt, &cfg, &varmap, &Default::default()).unwrap();
        (images, ckpt, varmap, cfg)
    }

    fn args(images: &Path, ckpt: &Path, task: Task, size: usize, out: PathBuf) -> Args {
        Args {
            checkpoint: ckpt.to_path_buf(),
            task,
            images: images.to_path_buf(),
            size,
            seed: 0,
            blur_sigma: 3.0,
            out,
        }
    }

    /// runs: `eval` refuses a checkpoint holding NaN weights instead of printing `mse NaN`.
    #[test]
    fn eval_refuses_non_finite_weights() {
        let dir = std::env::temp_dir().join(format!("xtask-eval-nan-{}", std::process::id()));
        let (images, ckpt, varmap, cfg) = fixture(&dir, 2);
        {
            let vars = varmap.data().lock().unwrap();
            let (_, v) = vars.iter().next().unwrap();
            let nan = (v.as_tensor().ones_like().unwrap() * f64::NAN).unwrap();
            v.set(&nan).unwrap();
        }
        models::checkpoint::save(&ckpt, &cfg, &varmap, &Default::default()).unwrap();
        let e = format!(
            "{:#}",
            evaluate(
                &args(&images, &ckpt, Task::Denoise, 16, dir.join("out")),
                &Device::Cpu
            )
            .unwrap_err()
        );
        assert!(e.contains("NaN") && e.contains("diverged"), "{e}");
        assert!(!dir.join("out/results.csv").exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Smaller cases: `eval --task superres` with a denoising checkpoint is a clear error
    /// (from the run's config.toml when there is one, else from the output shape), and
    /// `--size` out of range is refused.
    #[test]
    fn eval_with_another_task_says_so() {
        let dir = std::env::temp_dir().join(format!("xtask-eval-task-{}", std::process::id()));
        let (images, ckpt, _, _) = fixture(&dir, 2);
        let e = format!(
            "{:#}",
            evaluate(
                &args(&images, &ckpt, Task::Superres, 16, dir.join("out")),
                &Device::Cpu
            )
            .unwrap_err()
        );
        assert!(e.contains("trained for another task"), "{e}");
        std::fs::write(dir.join("config.toml"), "task = \"denoise\"\n").unwrap();
        let e = format!(
            "{:#}",
            evaluate(
                &args(&images, &ckpt, Task::Superres, 16, dir.join("out")),
                &Device::Cpu
            )
            .unwrap_err()
        );
        assert!(
            e.contains("trained for task denoise") && e.contains("--task denoise"),
            "{e}"
        );
        for size in [0, 3, MAX_SIZE + 2] {
            let e = format!(
                "{:#}",
                evaluate(
                    &args(&images, &ckpt, Task::Denoise, size, dir.join("out")),
                    &Device::Cpu
                )
                .unwrap_err()
            );
            assert!(e.contains("--size"), "{e}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// resources: `eval --size 16384` is refused at once with the estimate and the available
    /// memory (it used to abort on a failed 3 GiB allocation after 48 s).
    #[test]
    fn eval_too_large_for_memory_is_refused_before_loading() {
        let dir = std::env::temp_dir().join(format!("xtask-eval-mem-{}", std::process::id()));
        let (images, ckpt, _, _) = fixture(&dir, 13);
        let t = std::time::Instant::now();
        let e = format!(
            "{:#}",
            evaluate(
                &args(&images, &ckpt, Task::Denoise, 16384, dir.join("out")),
                &Device::Cpu
            )
            .unwrap_err()
        );
        assert!(
            e.contains("(estimate)") && e.contains("available") && e.contains("--size"),
            "{e}"
        );
        assert!(t.elapsed().as_secs() < 5);
        std::fs::remove_dir_all(&dir).ok();
    }
}
