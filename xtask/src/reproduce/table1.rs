//! `cargo xtask reproduce table1 [--quick] --out DIR` (001 Table 1): wall time of one loss
//! evaluation of the UNet per mesh (forward only, and forward+backward), and the total time of
//! single-scale against MGE over a set of images, beside the paper's figures, with the
//! efficiency `(single time / MGE time) / (single #WU / MGE #WU)` (1 = wall time follows #WU).
//!
//! MGE over `images` images with finest mesh `n` (001 Table 1 caption): batch 16 at the finest
//! level, 32, 64, ... at the coarser ones, and the remaining images at the coarsest mesh (the
//! last size), one [`mge::Estimator`] iteration; single-scale: the same number of images at
//! mesh `n` in batches of 16. #WU are counted by [`mge::Accountant`] from what ran.

use crate::bench::levels::{denoising_batch, load_average, mse, seconds, unet};
use crate::common::Context;
use crate::reproduce::Common;
use anyhow::{bail, Context as _, Result};
use candle_core::{Device, Tensor};
use data::Degraded;
use grids::{Restriction, Subsampling};
use mge::{Accountant, Estimator, GradientMode, LevelPlan, Sampler};
use models::Model;
use std::fmt::Write as _;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Timed rounds of the per-mesh measurements (minimum reported), after a warm-up round.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
}

/// 001 Table 1, per mesh 256..16: seconds per single-image loss evaluation, single-scale and
/// MGE seconds over 512 images (MGE: finest mesh n, coarsest 16), MGE loss evaluations.
const PAPER_MESH: [usize; 5] = [256, 128, 64, 32, 16];
const PAPER_PER_IMAGE_S: [f64; 5] = [3.338, 1.502, 0.956, 0.662, 0.458];
const PAPER_SINGLE_S: [f64; 5] = [1709.06, 769.02, 489.47, 338.94, 234.50];
const PAPER_MGE_S: [f64; 4] = [527.58, 345.98, 274.24, 245.09];
const PAPER_MGE_EVALS: [usize; 4] = [752, 624, 560, 528];
/// Batch of the finest MGE term and of single-scale (001 Table 1 caption).
const BATCH: usize = 16;

fn paper<T: Copy>(table: &[T], n: usize) -> Option<T> {
    PAPER_MESH
        .iter()
        .position(|&m| m == n)
        .and_then(|i| table.get(i).copied())
}

/// The experiment's size.
struct Setup {
    sizes: Vec<usize>,
    images: usize,
    widths: Vec<Vec<usize>>,
}

impl Setup {
    fn new(common: &Common) -> Self {
        match common.protocol() {
            crate::reproduce::Protocol::Full => Setup {
                sizes: PAPER_MESH.to_vec(),
                images: 512,
                widths: vec![vec![32, 64, 128]],
            },
            crate::reproduce::Protocol::Standard => Setup {
                sizes: vec![256, 128, 64, 32],
                images: 256,
                widths: vec![vec![32, 64, 128]],
            },
            crate::reproduce::Protocol::Quick | crate::reproduce::Protocol::Smoke => Setup {
                sizes: vec![128, 64, 32, 16],
                images: 128,
                widths: vec![vec![32, 64, 128], vec![8, 16, 32]],
            },
        }
    }
}

/// Hands out consecutive slices of a pre-generated finest-mesh denoising set (so the timing
/// holds no data generation).
struct Slices {
    input: Tensor,
    target: Tensor,
    t: Tensor,
    next: usize,
}

impl Slices {
    fn new(images: usize, n: usize, device: &Device) -> Result<Self> {
        let (input, target, t) = denoising_batch(images, n, device)?;
        Ok(Slices {
            input,
            target,
            t,
            next: 0,
        })
    }
}

impl Sampler for Slices {
    fn draw(&mut self, count: usize) -> mge::Result<Degraded> {
        let take = |x: &Tensor| x.narrow(0, self.next, count);
        let d = Degraded {
            input: take(&self.input)?,
            target: take(&self.target)?,
            t: Some(take(&self.t)?),
            noise: None,
            clean_input: None,
            mask: None,
        };
        self.next += count;
        Ok(d)
    }
}

/// MGE batches over `images` images and `levels` levels: 16, 32, ... and the rest last.
fn mge_batches(images: usize, levels: usize) -> Result<Vec<usize>> {
    let mut b: Vec<usize> = (0..levels - 1).map(|l| BATCH << l).collect();
    let used: usize = b.iter().sum();
    if used >= images {
        bail!("{images} images cannot fill MGE batches {b:?} plus a coarsest term");
    }
    b.push(images - used);
    Ok(b)
}

struct Total {
    widths: String,
    n: usize,
    strategy: &'static str,
    evaluations: usize,
    wu: f64,
    time_s: f64,
}

/// Single-scale: `images` images at mesh n, batches of 16, forward+backward each.
fn single(model: &dyn Model, images: usize, n: usize, dev: &Device) -> Result<(f64, f64)> {
    let mut s = Slices::new(images, n, dev)?;
    let mut acct = Accountant::new();
    let time = seconds(|| {
        while s.next < images {
            let count = BATCH.min(images - s.next);
            let d = s.draw(count)?;
            mse(&model.forward(&d.input, d.t.as_ref())?, &d.target)?.backward()?;
            acct.record(count, (n, n), (n, n))?;
        }
        Ok(())
    })?;
    Ok((time, acct.total().to_f64()))
}

/// One MGE iteration over `images` images, finest mesh n, `levels` levels.
fn multiscale(
    model: &dyn Model,
    images: usize,
    n: usize,
    levels: usize,
    fused: bool,
    dev: &Device,
) -> Result<(f64, f64)> {
    let plan = LevelPlan {
        levels,
        first_level: 0,
        batch: mge_batches(images, levels)?,
        subsampling: Subsampling::Coarsen,
        restriction: Restriction::Average,
        noise_consistent: false,
    };
    let mut est = Estimator::new(plan, GradientMode::Total, 0)?;
    est.set_fused_levels(fused);
    let mut s = Slices::new(images, n, dev)?;
    let mut acct = Accountant::new();
    let f = |x: &Tensor, t: Option<&Tensor>| model.forward(x, t);
    let time = seconds(|| {
        est.loss(&f, &mse, &mut s, 0, &mut acct)?.total.backward()?;
        Ok(())
    })?;
    Ok((time, acct.total().to_f64()))
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let out = args.common.out_dir("table1")?;
    let setup = Setup::new(&args.common);
    let dev = &ctx.device;
    let coarsest = *setup.sizes.last().context("no sizes")?;
    let load0 = load_average();
    let mut csv = String::from(
        "kind,widths,n,strategy,images,evaluations,wu,fwd_s,fwdbwd_s,time_s,paper_s,load\n",
    );
    let mut md = format!("# 001 Table 1: UNet loss evaluation per mesh, single-scale vs MGE\n\nLoad average (1 min) at the start: {load0:.2} (2 cores).\n\n");
    for widths in &setup.widths {
        let (model, _varmap) = unet(widths, dev)?;
        let wname = widths
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("-");
        tracing::info!("UNet {wname}: per-image loss evaluation");
        // Per mesh, one image: interleaved rounds, best of `reps`.
        let batches = setup
            .sizes
            .iter()
            .map(|&n| denoising_batch(1, n, dev))
            .collect::<Result<Vec<_>>>()?;
        let mut best = vec![(f64::INFINITY, f64::INFINITY); batches.len()];
        for rep in 0..=args.reps {
            for (i, (x, y, t)) in batches.iter().enumerate() {
                let fwd = seconds(|| {
                    mse(&model.forward(x, Some(t))?, y)?;
                    Ok(())
                })?;
                let fb = seconds(|| {
                    mse(&model.forward(x, Some(t))?, y)?.backward()?;
                    Ok(())
                })?;
                if rep > 0 {
                    best[i] = (best[i].0.min(fwd), best[i].1.min(fb));
                }
            }
        }
        let load = load_average();
        writeln!(md, "## UNet widths {wname}\n\nOne image per loss evaluation, best of {} rounds (load {load:.2}). Ratio: time(n) / time(n/2), ideal 4.\n", args.reps)?;
        md.push_str("| n | fwd s | fwd+bwd s | fwd+bwd ratio | paper s | paper ratio |\n|---:|---:|---:|---:|---:|---:|\n");
        for (i, &n) in setup.sizes.iter().enumerate() {
            let (fwd, fb) = best[i];
            let p = paper(&PAPER_PER_IMAGE_S, n);
            let ratio = best
                .get(i + 1)
                .map(|c| format!("{:.2}", fb / c.1))
                .unwrap_or_else(|| "-".into());
            let pratio = match (p, paper(&PAPER_PER_IMAGE_S, n / 2)) {
                (Some(a), Some(b)) => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            let ps = p.map(|v| format!("{v}")).unwrap_or_default();
            writeln!(
                csv,
                "per-image,{wname},{n},-,1,1,,{fwd:.6},{fb:.6},,{ps},{load:.2}"
            )?;
            writeln!(
                md,
                "| {n} | {fwd:.4} | {fb:.4} | {ratio} | {} | {pratio} |",
                if ps.is_empty() { "-" } else { &ps }
            )?;
        }

        // Totals over `images` images: single-scale at every mesh, MGE from every mesh to the coarsest.
        let mut totals = Vec::new();
        for (i, &n) in setup.sizes.iter().enumerate() {
            tracing::info!("UNet {wname}: {} images at {n}^2", setup.images);
            let (time_s, wu) = single(model.as_ref(), setup.images, n, dev)?;
            totals.push(Total {
                widths: wname.clone(),
                n,
                strategy: "single",
                evaluations: setup.images,
                wu,
                time_s,
            });
            let levels = setup.sizes.len() - i;
            if levels > 1 {
                let evaluations = setup.images
                    + mge_batches(setup.images, levels)?[..levels - 1]
                        .iter()
                        .sum::<usize>();
                for (fused, strategy) in [(false, "mge"), (true, "mge-fused")] {
                    let (time_s, wu) =
                        multiscale(model.as_ref(), setup.images, n, levels, fused, dev)?;
                    totals.push(Total {
                        widths: wname.clone(),
                        n,
                        strategy,
                        evaluations,
                        wu,
                        time_s,
                    });
                }
            }
        }
        let load = load_average();
        writeln!(
            md,
            "\nTotal over {} images (single-scale: batches of {BATCH} at mesh n; MGE: finest mesh n down to {coarsest}, batches {BATCH}, {}, ... and the rest at {coarsest}; load {load:.2}). \
             Paper: 512 images, coarsest 16. Efficiency = (single time / MGE time) / (single #WU / MGE #WU).\n",
            setup.images,
            2 * BATCH
        )?;
        md.push_str("| n | strategy | evaluations | #WU | time s | time ratio | #WU ratio | efficiency | paper evaluations | paper time s | paper efficiency |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for t in &totals {
            let s = totals
                .iter()
                .find(|s| s.n == t.n && s.strategy == "single")
                .context("single row")?;
            let (tr, wr) = (s.time_s / t.time_s, s.wu / t.wu);
            let (pe, pt, peff) = match t.strategy {
                "single" => (
                    paper(&[512; 5], t.n).map(|v| v.to_string()),
                    paper(&PAPER_SINGLE_S, t.n),
                    None,
                ),
                _ => {
                    let pt = paper(&PAPER_MGE_S, t.n);
                    let pw = paper_mge_wu_ratio(t.n);
                    let peff = match (pt, paper(&PAPER_SINGLE_S, t.n), pw) {
                        (Some(m), Some(s), Some(w)) => Some(s / m / w),
                        _ => None,
                    };
                    (
                        paper(&PAPER_MGE_EVALS, t.n).map(|v| v.to_string()),
                        pt,
                        peff,
                    )
                }
            };
            let ps = pt.map(|v| format!("{v}")).unwrap_or_default();
            writeln!(
                csv,
                "total,{},{},{},{},{},{:.4},,,{:.4},{ps},{load:.2}",
                t.widths, t.n, t.strategy, setup.images, t.evaluations, t.wu, t.time_s
            )?;
            let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
            writeln!(
                md,
                "| {} | {} | {} | {:.3} | {:.3} | {tr:.2} | {wr:.2} | {:.2} | {} | {} | {} |",
                t.n,
                t.strategy,
                t.evaluations,
                t.wu,
                t.time_s,
                tr / wr,
                dash(pe),
                dash(pt.map(|v| v.to_string())),
                dash(peff.map(|v| format!("{v:.2}")))
            )?;
        }
        md.push('\n');
    }
    std::fs::write(out.join("results.csv"), &csv)?;
    std::fs::write(out.join("results.md"), &md)?;
    println!("{md}");
    tracing::info!("wrote {}", out.display());
    Ok(())
}

/// The paper's #WU ratio single / MGE over 512 images with finest mesh n and coarsest 16
/// (e.g. 512 / 38.5625 = 13.3 at 256^2), from the closed form of the same plan.
fn paper_mge_wu_ratio(n: usize) -> Option<f64> {
    let levels = PAPER_MESH
        .iter()
        .position(|&m| m == n)
        .map(|i| PAPER_MESH.len() - i)?;
    let batch = mge_batches(512, levels).ok()?;
    let wu = mge::workunits::plan_wu_per_iter(&batch, 0).ok()?.to_f64();
    Some(512.0 / wu)
}
