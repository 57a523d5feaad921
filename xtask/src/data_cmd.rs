//! `cargo xtask data ...`: inspect data sources and degradations.

use crate::common::{ensure_out_dir, Context};
use crate::pictures::{save_grid, Scale};
use anyhow::{Context as _, Result};
use candle_core::{Device, Tensor};
use data::{DeadLeaves, Degradation, GaussianRandomField, Loader, MarkovField, PhotoFolder, SharedSource};
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
    /// dead-leaves, grf, markov, photos, fashion-mnist, or a folder of PNG/JPEG files.
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
        dir => Arc::new(PhotoFolder::open(Path::new(dir)).with_context(|| {
            format!("--source {dir}: not dead-leaves, grf, markov, photos or fashion-mnist, nor a folder of photos")
        })?),
    })
}

fn preview(a: PreviewArgs, ctx: &Context) -> Result<()> {
    anyhow::ensure!(
        a.size >= 2 && a.size % 2 == 0,
        "--size {} must be even (super-resolution halves it)",
        a.size
    );
    anyhow::ensure!(a.count > 0, "--count must be positive");
    let out = ensure_out_dir(&a.out)?;
    let source = open_source(&a.source, a.seed, a.channels)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let clean = Loader::new(source, a.size, a.seed, threads).next_batch(a.count, &ctx.device)?;
    let degradations = ["denoise", "deblur", "inpaint", "superres"];
    let mut rng = StdRng::seed_from_u64(a.seed);
    let inputs = degradations
        .iter()
        .map(|d| {
            Ok(d.parse::<Degradation>()?
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
    tracing::info!(source = %a.source, size = a.size, count = a.count, "columns: clean, {}", degradations.join(", "));
    println!("{}", path.display());
    Ok(())
}
