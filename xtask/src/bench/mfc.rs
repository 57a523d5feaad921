//! `cargo xtask bench mfc --out DIR`: one mesh-free convolution (C -> C, FFT backend on the CPU)
//! against one 3x3 convolution (`fastconv::conv2d`, padding 1) with the same channels, forward and
//! forward+backward, side by side in one run.
//!
//! Writes `results.csv` (`layer,size,fwd_ms,fwdbwd_ms,flops`, with `flops` the forward FLOP
//! estimate: conv `2 B C^2 9 n^2`; MFC `2 B C^2 n^2` for `M` plus `B C (2 * 2.5 n^2 log2(n^2) +
//! 6 n (n/2+1))` for the two real FFTs and the complex symbol product) and `results.md` (table
//! with the MFC/conv time ratios). With `--matmul`, a `mfc_matmul` row times the DFT-as-matmul
//! backend (FLOPs: `2 B C^2 n^2 + 24 B C n^2 (n/2+1)`).

use crate::common::{ensure_out_dir, Context};
use anyhow::{bail, Result};
use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use mfc::{Backend, Mfc, MfcConfig};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder for results.csv and results.md.
    #[arg(long)]
    out: PathBuf,
    /// Mesh sizes n (images n x n), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "32,64,128,256")]
    sizes: Vec<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Channels (in = out).
    #[arg(long, default_value_t = 32)]
    channels: usize,
    /// Maximum timed repetitions per measurement (median reported), after one warm-up run.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Stop repeating a measurement once its timed runs add up to this many seconds.
    #[arg(long, default_value_t = 3.0)]
    budget_s: f64,
    /// Also time the MFC on the matmul DFT backend (the one used off the CPU).
    #[arg(long)]
    matmul: bool,
}

struct Row {
    layer: &'static str,
    size: usize,
    fwd_ms: f64,
    fwdbwd_ms: f64,
    flops: f64,
}

/// Median wall time in ms of `f` (one warm-up run, then up to `reps` runs within `budget_s`).
fn time_ms(
    dev: &Device,
    reps: usize,
    budget_s: f64,
    f: &mut dyn FnMut() -> Result<()>,
) -> Result<f64> {
    f()?;
    dev.synchronize()?;
    let mut times = vec![];
    let start = Instant::now();
    while times.len() < reps.max(1)
        && (times.is_empty() || start.elapsed().as_secs_f64() < budget_s)
    {
        let t = Instant::now();
        f()?;
        dev.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Forward and forward+backward time of `f` on `x` (loss: `sum(f(x) * r)`, gradients for the
/// input and all of `params`).
fn measure(
    dev: &Device,
    args: &Args,
    x: &Var,
    r: &Tensor,
    f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<(f64, f64)> {
    let fwd = time_ms(dev, args.reps, args.budget_s, &mut || {
        f(x.as_tensor())?;
        Ok(())
    })?;
    let fwdbwd = time_ms(dev, args.reps, args.budget_s, &mut || {
        let loss = (f(x.as_tensor())? * r)?.sum_all()?;
        loss.backward()?;
        Ok(())
    })?;
    Ok((fwd, fwdbwd))
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    if args.batch == 0 || args.channels == 0 || args.sizes.is_empty() || args.sizes.contains(&0) {
        bail!("need positive --batch, --channels and --sizes");
    }
    let out = ensure_out_dir(&args.out)?;
    let (dev, b, c) = (&ctx.device, args.batch, args.channels);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
    let layer = Mfc::new(c, c, &MfcConfig::default(), vb.pp("mfc"))?;
    let matmul_layer = layer.clone().with_backend(Backend::Matmul);
    let w = Var::from_tensor(
        &(Tensor::randn(0f32, 1.0, (c, c, 3, 3), dev)? / (9.0 * c as f64).sqrt())?,
    )?;
    let mut rows = vec![];
    for &n in &args.sizes {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, n, n), dev)?)?;
        let r = Tensor::randn(0f32, 1.0, (b, c, n, n), dev)?;
        let nn = (n * n) as f64;
        let conv_flops = 2.0 * (b * c * c * 9) as f64 * nn;
        let mfc_flops = 2.0 * (b * c * c) as f64 * nn
            + (b * c) as f64 * (2.0 * 2.5 * nn * nn.log2() + 6.0 * (n * (n / 2 + 1)) as f64);
        let (fwd, fwdbwd) = measure(dev, &args, &x, &r, &|t| {
            fastconv::conv2d(t, w.as_tensor(), 1, 1, 1)
        })?;
        tracing::info!("n={n} conv3x3: fwd {fwd:.2} ms, fwd+bwd {fwdbwd:.2} ms");
        rows.push(Row {
            layer: "conv3x3",
            size: n,
            fwd_ms: fwd,
            fwdbwd_ms: fwdbwd,
            flops: conv_flops,
        });
        let (fwd, fwdbwd) = measure(dev, &args, &x, &r, &|t| layer.forward(t))?;
        tracing::info!("n={n} mfc: fwd {fwd:.2} ms, fwd+bwd {fwdbwd:.2} ms");
        rows.push(Row {
            layer: "mfc",
            size: n,
            fwd_ms: fwd,
            fwdbwd_ms: fwdbwd,
            flops: mfc_flops,
        });
        if args.matmul {
            let (fwd, fwdbwd) = measure(dev, &args, &x, &r, &|t| matmul_layer.forward(t))?;
            tracing::info!("n={n} mfc_matmul: fwd {fwd:.2} ms, fwd+bwd {fwdbwd:.2} ms");
            // Twelve real [n, n] x [n, n/2+1] matmuls per plane replace the two FFTs.
            let dft_flops = (b * c) as f64 * 24.0 * nn * (n / 2 + 1) as f64;
            let flops = 2.0 * (b * c * c) as f64 * nn + dft_flops;
            rows.push(Row {
                layer: "mfc_matmul",
                size: n,
                fwd_ms: fwd,
                fwdbwd_ms: fwdbwd,
                flops,
            });
        }
    }
    let mut csv = String::from("layer,size,fwd_ms,fwdbwd_ms,flops\n");
    for r in &rows {
        writeln!(
            csv,
            "{},{},{:.3},{:.3},{:.4e}",
            r.layer, r.size, r.fwd_ms, r.fwdbwd_ms, r.flops
        )?;
    }
    std::fs::write(out.join("results.csv"), &csv)?;
    let mut md = format!(
        "# MFC vs 3x3 convolution ({} -> {} channels, batch {b}, device {:?})\n\n\
         | n | layer | fwd ms | fwd+bwd ms | fwd GFLOP | fwd ratio vs conv | fwd+bwd ratio vs conv |\n|---|---|---|---|---|---|---|\n",
        c, c, dev.location()
    );
    for n in &args.sizes {
        let conv = rows.iter().find(|r| r.size == *n && r.layer == "conv3x3");
        for r in rows.iter().filter(|r| r.size == *n) {
            let (rf, rb) = conv.map_or((f64::NAN, f64::NAN), |c| {
                (r.fwd_ms / c.fwd_ms, r.fwdbwd_ms / c.fwdbwd_ms)
            });
            writeln!(
                md,
                "| {n} | {} | {:.2} | {:.2} | {:.2} | {rf:.2} | {rb:.2} |",
                r.layer,
                r.fwd_ms,
                r.fwdbwd_ms,
                r.flops / 1e9
            )?;
        }
    }
    std::fs::write(out.join("results.md"), &md)?;
    println!("{md}");
    tracing::info!("wrote {}/results.csv and results.md", out.display());
    Ok(())
}
