//! `cargo xtask models [--out DIR]`: every model x convolution kind with its parameter count,
//! the paper's count where it gives one (001 Tables 7-8), and forward+backward time per image.

use crate::common::Context;
use anyhow::{Context as _, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::{build, count_parameters, ConvKind, ModelConfig};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder for results.csv (default `runs/models/<unix time>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Side of the (output) image in pixels; SR models get inputs of half this size.
    #[arg(long, default_value_t = 64)]
    mesh: usize,
    /// Images per forward+backward pass.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Timed passes after one warm-up pass (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Models to include (default: all), e.g. --models unet,resnet.
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Convolution kinds (spectral layers hold 4 modes^2 weights per channel pair, so 12 modes
    /// make the wide models huge; the table uses 4).
    #[arg(long, value_delimiter = ',', default_value = "standard,mfc,spectral:4")]
    convs: Vec<String>,
    /// Models with more parameters than this are counted but not built or timed.
    #[arg(long, default_value_t = 100_000_000)]
    max_params: usize,
    /// Parameter counts only, no timing.
    #[arg(long)]
    no_timing: bool,
}

/// The parameter counts the papers print (001 Table 7 and Table 8), for standard convolutions.
fn paper_params(kind: &str) -> Option<usize> {
    match kind {
        "unet" => Some(2_537_187),
        "resnet" => Some(597_699),
        "espcn" => Some(69_603),
        "srresnet" => Some(23_315),
        _ => None,
    }
}

struct Row {
    model: String,
    conv: String,
    params: usize,
    paper: Option<usize>,
    ms_per_image: Option<f64>,
}

/// Median wall time (ms) of one forward+backward pass of `net` on a random batch.
fn time_pass(
    net: &dyn models::Model,
    input: (usize, usize, usize),
    batch: usize,
    reps: usize,
    dev: &Device,
) -> Result<f64> {
    let (c, h, w) = input;
    let x = Tensor::randn(0f32, 1.0, (batch, c, h, w), dev)?;
    let t = Tensor::rand(0f32, 1.0, batch, dev)?;
    let pass = || -> Result<f64> {
        let start = Instant::now();
        let y = net.forward(&x, Some(&t))?;
        let grads = y.sqr()?.mean_all()?.backward()?;
        drop(grads);
        dev.synchronize()?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    pass()?;
    let mut times = (0..reps.max(1))
        .map(|_| pass())
        .collect::<Result<Vec<_>>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let out = crate::common::out_dir_or_default(args.out.as_deref(), "models")?;
    let kinds: Vec<String> = if args.models.is_empty() {
        ModelConfig::KINDS.iter().map(|s| s.to_string()).collect()
    } else {
        args.models.clone()
    };
    let convs = args
        .convs
        .iter()
        .map(|s| s.parse::<ConvKind>())
        .collect::<models::Result<Vec<_>>>()?;
    let mut rows = Vec::new();
    for kind in &kinds {
        for &conv in &convs {
            let cfg = ModelConfig::default_for(kind)?.with_conv(conv);
            let paper = if conv == ConvKind::Standard {
                paper_params(kind)
            } else {
                None
            };
            // Counted without allocating: building allocates every weight.
            let params = count_parameters(&cfg)?;
            if params > args.max_params {
                tracing::info!("{kind} {conv}: {params} parameters, above --max-params, not timed");
                rows.push(Row {
                    model: kind.clone(),
                    conv: conv.to_string(),
                    params,
                    paper,
                    ms_per_image: None,
                });
                continue;
            }
            let varmap = VarMap::new();
            let net = build(
                &cfg,
                VarBuilder::from_varmap(&varmap, DType::F32, &ctx.device),
            )
            .with_context(|| format!("building {kind} with {conv} convolutions"))?;
            let ms_per_image = if args.no_timing {
                None
            } else {
                let n = args.mesh / net.upscale();
                let ms = time_pass(
                    net.as_ref(),
                    (net.in_channels(), n, n),
                    args.batch,
                    args.reps,
                    &ctx.device,
                )
                .with_context(|| format!("timing {kind} with {conv} convolutions"))?;
                Some(ms / args.batch as f64)
            };
            tracing::info!("{kind} {conv}: {params} parameters, {ms_per_image:?} ms/image");
            rows.push(Row {
                model: kind.clone(),
                conv: conv.to_string(),
                params,
                paper,
                ms_per_image,
            });
        }
    }
    let opt = |v: Option<String>| v.unwrap_or_default();
    let mut csv = String::from("model,conv,params,paper_params,ms_per_image\n");
    for r in &rows {
        let paper = opt(r.paper.map(|p| p.to_string()));
        writeln!(
            csv,
            "{},{},{},{},{}",
            r.model,
            r.conv,
            r.params,
            paper,
            opt(r.ms_per_image.map(|m| format!("{m:.2}")))
        )?;
    }
    let path = out.join("results.csv");
    std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;

    println!(
        "forward+backward per {m}x{m} output image, batch {b}, median of {r}, device {d:?}",
        m = args.mesh,
        b = args.batch,
        r = args.reps,
        d = ctx.device
    );
    println!(
        "{:<10} {:<12} {:>12} {:>12} {:>10}",
        "model", "conv", "params", "paper", "ms/image"
    );
    for r in &rows {
        let paper = r.paper.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let ms = r
            .ms_per_image
            .map(|m| format!("{m:.1}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<10} {:<12} {:>12} {:>12} {:>10}",
            r.model, r.conv, r.params, paper, ms
        );
    }
    println!("wrote {}", path.display());
    Ok(())
}
