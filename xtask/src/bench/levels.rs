//! `cargo xtask bench levels --out DIR`: wall time of one UNet training step (forward, loss,
//! backward, Adam update) per mesh, all meshes measured side by side in one run (round robin,
//! best of `reps`), with the per-level ratios `time(n) / time(n/2)` (ideal 4: a level-(l+1)
//! application costs 1/4 WU, 001 Definition 1).
//!
//! Writes `results.csv` (`size,batch,fwd_ms,fwdbwd_ms,adam_ms,step_ms,step_ratio`) and
//! `results.md`, with the load average of the machine at the start and the end.

use crate::common::{ensure_out_dir, Context};
use anyhow::{Context as _, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::{ConvKind, Model, ModelConfig, UnetConfig};
use optim::Adam;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder for results.csv and results.md.
    #[arg(long)]
    out: PathBuf,
    /// Mesh sizes n (images n x n), finest first, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "128,64,32,16,8")]
    sizes: Vec<usize>,
    /// UNet widths per level (001 Table 7: 32,64,128).
    #[arg(long, value_delimiter = ',', default_value = "32,64,128")]
    channels: Vec<usize>,
    /// Batch size (the same at every mesh).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Rounds over all meshes (the minimum per mesh is reported), after one warm-up round.
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

/// The authors' UNet (001 Table 7) with `channels` widths, noise-conditioned, 3 -> 3 channels.
pub(crate) fn unet(channels: &[usize], device: &Device) -> Result<(Box<dyn Model>, VarMap)> {
    let cfg = ModelConfig::Unet(UnetConfig {
        channels: Some(channels.to_vec()),
        conv: ConvKind::Standard,
        ..UnetConfig::default()
    });
    let varmap = VarMap::new();
    let model = models::build(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    Ok((model, varmap))
}

/// `/proc/loadavg`'s 1-minute load average (NaN where unavailable).
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// A denoising batch at mesh `n`: noisy input, clean target and noise level `t` (`[b]`).
pub(crate) fn denoising_batch(
    b: usize,
    n: usize,
    device: &Device,
) -> Result<(Tensor, Tensor, Tensor)> {
    let clean = Tensor::rand(0f32, 1f32, (b, 3, n, n), device)?;
    let t = Tensor::rand(0f32, 1f32, b, device)?;
    let noise = Tensor::randn(0f32, 1f32, (b, 3, n, n), device)?;
    let tb = t.reshape((b, 1, 1, 1))?;
    let input = (clean.broadcast_mul(&tb)? + noise.broadcast_mul(&(1.0 - &tb)?)?)?;
    Ok((input, clean, t))
}

/// Mean squared error (the denoising loss, SPEC section 0).
pub(crate) fn mse(pred: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    (pred - target)?.sqr()?.mean_all()
}

/// Seconds `f` takes.
pub(crate) fn seconds(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64())
}

#[derive(Clone, Copy)]
struct Times {
    fwd: f64,
    fwdbwd: f64,
    adam: f64,
    step: f64,
}

impl Times {
    const INF: Times = Times {
        fwd: f64::INFINITY,
        fwdbwd: f64::INFINITY,
        adam: f64::INFINITY,
        step: f64::INFINITY,
    };
    fn min(self, o: Times) -> Times {
        Times {
            fwd: self.fwd.min(o.fwd),
            fwdbwd: self.fwdbwd.min(o.fwdbwd),
            adam: self.adam.min(o.adam),
            step: self.step.min(o.step),
        }
    }
}

/// One round at mesh `n`: forward+loss, forward+loss+backward, the Adam update alone, and a
/// whole training step.
fn round(model: &dyn Model, adam: &mut Adam, batch: &(Tensor, Tensor, Tensor)) -> Result<Times> {
    let (x, y, t) = batch;
    let fwd = seconds(|| {
        mse(&model.forward(x, Some(t))?, y)?;
        Ok(())
    })?;
    let mut grads = None;
    let fwdbwd = seconds(|| {
        grads = Some(mse(&model.forward(x, Some(t))?, y)?.backward()?);
        Ok(())
    })?;
    let grads = grads.context("no gradient")?;
    let adam_s = seconds(|| Ok(adam.step(&grads, 1e-6)?))?;
    let step = seconds(|| {
        let g = mse(&model.forward(x, Some(t))?, y)?.backward()?;
        Ok(adam.step(&g, 1e-6)?)
    })?;
    Ok(Times {
        fwd,
        fwdbwd,
        adam: adam_s,
        step,
    })
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let out = ensure_out_dir(&args.out)?;
    let dev = &ctx.device;
    let (model, varmap) = unet(&args.channels, dev)?;
    let mut adam = Adam::from_varmap(&varmap)?;
    let n_params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    let n_tensors = varmap.all_vars().len();
    let batches = args
        .sizes
        .iter()
        .map(|&n| denoising_batch(args.batch, n, dev))
        .collect::<Result<Vec<_>>>()?;
    let load0 = load_average();
    let mut best = vec![Times::INF; args.sizes.len()];
    for rep in 0..=args.reps {
        for (i, b) in batches.iter().enumerate() {
            // As the trainer runs its loop: the pool's other workers kept awake.
            let t = train::threads::warm(|| round(model.as_ref(), &mut adam, b))?;
            if rep > 0 {
                best[i] = best[i].min(t);
            }
        }
        tracing::info!(
            "round {rep}/{} done (load {:.2})",
            args.reps,
            load_average()
        );
    }
    let load1 = load_average();

    let ms = |s: f64| s * 1e3;
    let mut csv = String::from("size,batch,fwd_ms,fwdbwd_ms,adam_ms,step_ms,step_ratio\n");
    let mut md = format!(
        "# UNet training step per mesh (widths {:?}, {} parameters in {} tensors, batch {})\n\n\
         Best of {} interleaved rounds. Load average (1 min) {load0:.2} at the start, {load1:.2} at the end (2 cores).\n\
         Ratios are time(n) / time(n/2) (ideal 4).\n\n\
         | n | fwd ms | fwd+bwd ms | Adam ms | step ms | step ratio | fwd ratio | fwd+bwd ratio |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        args.channels, n_params, n_tensors, args.batch, args.reps
    );
    for (i, &n) in args.sizes.iter().enumerate() {
        let t = best[i];
        let next = best.get(i + 1);
        let ratio = |f: fn(&Times) -> f64| {
            next.map(|c| format!("{:.2}", f(&t) / f(c)))
                .unwrap_or_else(|| "-".into())
        };
        let step_ratio = ratio(|t| t.step);
        writeln!(
            csv,
            "{n},{},{:.3},{:.3},{:.3},{:.3},{}",
            args.batch,
            ms(t.fwd),
            ms(t.fwdbwd),
            ms(t.adam),
            ms(t.step),
            step_ratio
        )?;
        writeln!(
            md,
            "| {n} | {:.2} | {:.2} | {:.2} | {:.2} | {step_ratio} | {} | {} |",
            ms(t.fwd),
            ms(t.fwdbwd),
            ms(t.adam),
            ms(t.step),
            ratio(|t| t.fwd),
            ratio(|t| t.fwdbwd)
        )?;
    }
    std::fs::write(out.join("results.csv"), &csv)?;
    std::fs::write(out.join("results.md"), &md)?;
    println!("{md}");
    Ok(())
}
