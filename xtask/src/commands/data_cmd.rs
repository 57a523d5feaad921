//! `cargo xtask data ...`: inspect data sources and degradations.

use crate::common::{ensure_out_dir, Context};
use crate::report::pictures::{save_grid, Scale};
use anyhow::{Context as _, Result};
use candle_core::{Device, Tensor};
use data::{DeadLeaves, GaussianRandomField, Loader, MarkovField, PhotoFolder, SharedSource, Task};
use rand::{rngs::StdRng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DataCommand {
    /// Write DIR/preview.png: one row per sample, columns clean, denoise, deblur, inpaint,
    /// super-resolution input (shown upscaled).
    Preview(PreviewArgs),
}

#[derive(clap::Args, Debug)]
struct PreviewArgs {
    /// dead-leaves, grf, markov, photos, fashion-mnist, `mnist-idx:DIR`, `cifar10:DIR`,
    /// `cifar100:DIR`, `stl10:DIR` (the formats of `reproduce mgnet --dataset`), or a folder
    /// of PNG/JPEG files.
    #[arg(long, default_value = "dead-leaves")]
    source: String,
    /// Image side in pixels (even, for super-resolution).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Number of samples (rows).
    #[arg(long, default_value_t = 4)]
    count: usize,
    /// Seed of the source, the loader and the degradations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Channels of the procedural sources (1 or 3).
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Largest `--size` of a preview.
const MAX_PREVIEW_SIZE: usize = 4096;
/// Largest `--count` of a preview.
const MAX_PREVIEW_COUNT: usize = 256;

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    match args.command {
        DataCommand::Preview(a) => preview(a, ctx),
    }
}

/// The source named on the command line.
fn open_source(name: &str, seed: u64, channels: usize) -> Result<SharedSource> {
    Ok(match name {
        "dead-leaves" => Arc::new(DeadLeaves::new(seed).with_channels(channels)),
        "grf" => Arc::new(GaussianRandomField::new(seed, 3.0).with_channels(channels)),
        "markov" => Arc::new(MarkovField::new(seed).with_channels(channels)),
        "photos" => Arc::new(PhotoFolder::open(&data::photos_dir())?),
        "fashion-mnist" => Arc::new(data::fashion_mnist()?),
        spec if ["mnist-idx:", "cifar10:", "cifar100:", "stl10:"].iter().any(|p| spec.starts_with(p)) => {
            let (kind, dir) = spec.split_once(':').unwrap_or((spec, ""));
            crate::reproduce::labelled::LabelledSource::open(&[kind.to_string(), dir.to_string()])?.into_shared()
        }
        dir => Arc::new(PhotoFolder::open(Path::new(dir)).with_context(|| {
            format!("--source {dir}: not dead-leaves, grf, markov, photos or fashion-mnist, nor a folder of photos")
        })?),
    })
}

fn preview(a: PreviewArgs, ctx: &Context) -> Result<()> {
    anyhow::ensure!(
        (4..=MAX_PREVIEW_SIZE).contains(&a.size),
        "--size {} must be between 4 and {MAX_PREVIEW_SIZE}",
        a.size
    );
    anyhow::ensure!(
        a.size.is_multiple_of(2),
        "--size {} must be even (super-resolution halves it)",
        a.size
    );
    anyhow::ensure!(
        (1..=MAX_PREVIEW_COUNT).contains(&a.count),
        "--count {} must be between 1 and {MAX_PREVIEW_COUNT}",
        a.count
    );
    anyhow::ensure!(
        a.channels == 1 || a.channels == 3,
        "--channels {} must be 1 or 3",
        a.channels
    );
    let out = ensure_out_dir(&a.out)?;
    let source = open_source(&a.source, a.seed, a.channels)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let clean = Loader::new(source, a.size, a.seed, threads).next_batch(a.count, &ctx.device)?;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let inputs = Task::ALL
        .iter()
        .map(|t| {
            Ok(t.degradation(3.0)
                .apply(&clean, &mut rng)?
                .input
                .to_device(&Device::Cpu)?)
        })
        .collect::<Result<Vec<Tensor>>>()?;
    let clean = clean.to_device(&Device::Cpu)?;
    let rows = (0..a.count)
        .map(|i| {
            std::iter::once(&clean)
                .chain(&inputs)
                .map(|t| Ok(t.get(i)?))
                .collect::<Result<Vec<Tensor>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let path = out.join("preview.png");
    save_grid(&path, &rows, Scale::Unit)?;
    tracing::info!(source = %a.source, size = a.size, count = a.count, "columns: clean, {}", Task::ALL.map(Task::name).join(", "));
    println!("{}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(source: &str, size: usize, channels: usize, out: &Path) -> PreviewArgs {
        PreviewArgs {
            source: source.into(),
            size,
            count: 2,
            seed: 0,
            channels,
            out: out.to_path_buf(),
        }
    }

    /// Smaller cases: `--channels 0` no longer acts as 1, `--size 0` is not reported as odd.
    #[test]
    fn bad_sizes_and_channels_are_refused() {
        let out = std::env::temp_dir().join(format!("xtask-preview-bad-{}", std::process::id()));
        let ctx = Context {
            device: Device::Cpu,
        };
        let e = format!(
            "{:#}",
            preview(args("dead-leaves", 16, 0, &out), &ctx).unwrap_err()
        );
        assert!(e.contains("--channels 0"), "{e}");
        let e = format!(
            "{:#}",
            preview(args("dead-leaves", 0, 1, &out), &ctx).unwrap_err()
        );
        assert!(e.contains("--size 0") && e.contains("between"), "{e}");
        let e = format!(
            "{:#}",
            preview(args("dead-leaves", 15, 1, &out), &ctx).unwrap_err()
        );
        assert!(e.contains("even"), "{e}");
        assert!(!out.exists());
    }

    /// Smaller cases: STL-10 and CIFAR-100 files are opened by a command.
    #[test]
    fn previews_stl10_and_cifar100_files() {
        let dir = std::env::temp_dir().join(format!("xtask-preview-stl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        crate::reproduce::labelled::write_test_stl10(&dir, 3);
        crate::reproduce::labelled::write_test_cifar100(&dir, 3);
        let ctx = Context {
            device: Device::Cpu,
        };
        for kind in ["stl10", "cifar100"] {
            let out = dir.join(format!("out-{kind}"));
            preview(
                args(&format!("{kind}:{}", dir.display()), 16, 3, &out),
                &ctx,
            )
            .unwrap();
            assert!(out.join("preview.png").is_file());
        }
        let e = format!(
            "{:#}",
            preview(
                args(
                    &format!("stl10:{}", dir.join("nope").display()),
                    16,
                    3,
                    &dir.join("o")
                ),
                &ctx
            )
            .unwrap_err()
        );
        assert!(e.contains("train_X.bin"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
