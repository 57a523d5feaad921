//! `cargo xtask reproduce coarsen-vs-crop`: the telescoping-sum gradient error of 001 Appendix
//! A.2, `E(h, L) = mean_i sum_{l=0}^{L-2} ||g_i^(l) - g_i^(l+1)||` (per-sample discrepancies,
//! 001 eq. 10), for coarsening, cropping and both (`grids::subsample::next_level`), against the
//! finest mesh `h = 1/n` and the number of levels `L`, beside the bounds:
//!
//! - coarsening, eq. 36-37: `C (2^(L-1) - 1) h`, with `C` the largest observed
//!   `E / ((2^(L-1) - 1) h)` over the finest meshes (the Lipschitz constant is not computable);
//! - cropping, eq. 34: `2 (1 - m/N_h) M (L - 1)` with `m/N_h = 1/4` per step and `M` the largest
//!   per-pixel gradient norm met on any level.
//!
//! Model and loss: one 3x3 convolution, `mean((tanh(w * u) - y)^2)` (zero padding), on
//! Gaussian random fields (`data::GaussianRandomField`, spectrum `|k|^-4`, 4 modes per axis)
//! sampled at the pixel centres of each finest mesh `n` (input and target independent fields).

use crate::report::plot::{line_plot, Axes, Series};
use anyhow::{Context as _, Result};
use candle_core::{DType, Device, Tensor, Var};
use data::{GaussianRandomField, ImageSource};
use grids::subsample::next_level;
use grids::{Restriction, Subsampling};
use rand::{rngs::StdRng, SeedableRng};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder (default `runs/coarsen-vs-crop/<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Samples averaged per point.
    #[arg(long, default_value_t = 8)]
    pub samples: u64,
    /// Random seed of the fields, weights and crop windows.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

const MESHES: [usize; 4] = [32, 64, 128, 256];
const LEVELS: [usize; 3] = [2, 3, 4];

/// One row of `results.csv`.
struct Row {
    strategy: Subsampling,
    n: usize,
    levels: usize,
    error: f64,
    max_pixel_grad: f64,
}

fn loss_parts(u: &Tensor, y: &Tensor, w: &Var) -> Result<(Tensor, Tensor)> {
    let t = u.conv2d(w.as_tensor(), 1, 1, 1, 1)?.tanh()?;
    let loss = (&t - y)?.sqr()?.mean_all()?;
    Ok((t, loss))
}

/// Gradient of the loss for the 3x3 weights and the largest per-pixel gradient norm
/// `|2 (tanh a - y)(1 - tanh^2 a)| ||patch||`.
fn gradient(u: &Tensor, y: &Tensor, w: &Var) -> Result<(Vec<f64>, f64)> {
    let (t, loss) = loss_parts(u, y, w)?;
    let g = loss.backward()?;
    let grad = g
        .get(w.as_tensor())
        .context("no gradient")?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let dl = (((&t - y)? * 2.0)? * (1.0 - t.sqr()?)?)?.abs()?;
    let ones = Tensor::ones((1, 1, 3, 3), DType::F64, &Device::Cpu)?;
    let patch = u.sqr()?.conv2d(&ones, 1, 1, 1, 1)?.sqrt()?;
    let m = (dl * patch)?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
    Ok((grad, m))
}

/// Telescoping error of one sample and the largest per-pixel gradient norm on its levels.
fn telescoping(
    u: &Tensor,
    y: &Tensor,
    w: &Var,
    levels: usize,
    s: Subsampling,
    rng: &mut StdRng,
) -> Result<(f64, f64)> {
    let (mut u, mut y) = (u.clone(), y.clone());
    let (mut g, mut m) = gradient(&u, &y, w)?;
    let mut err = 0.0;
    for l in 0..levels - 1 {
        let next = next_level(&[u, y], l, levels, s, Restriction::Average, rng)?;
        (u, y) = (next[0].clone(), next[1].clone());
        let (gc, mc) = gradient(&u, &y, w)?;
        err += g
            .iter()
            .zip(&gc)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        m = m.max(mc);
        g = gc;
    }
    Ok((err, m))
}

fn measure(args: &Args) -> Result<Vec<Row>> {
    let w = Var::from_tensor(&Tensor::from_vec(
        vec![0.1, -0.3, 0.2, 0.4, 0.5, -0.2, -0.1, 0.3, 0.15],
        (1, 1, 3, 3),
        &Device::Cpu,
    )?)?;
    let (src_u, src_y) = (
        GaussianRandomField::new(args.seed, 4.0).with_max_frequency(4),
        GaussianRandomField::new(args.seed ^ 0xC0FFEE, 4.0).with_max_frequency(4),
    );
    let mut rows = vec![];
    for s in Subsampling::ALL {
        for &levels in &LEVELS {
            for &n in &MESHES {
                let mut rng =
                    StdRng::seed_from_u64(data::mix_seed(args.seed, (n * 16 + levels) as u64));
                let (mut err, mut m) = (0.0, 0.0f64);
                for i in 0..args.samples {
                    let img = |src: &GaussianRandomField| -> Result<Tensor> {
                        Ok(src.image(i, n)?.to_dtype(DType::F64)?.unsqueeze(0)?)
                    };
                    let (e, mi) =
                        telescoping(&img(&src_u)?, &img(&src_y)?, &w, levels, s, &mut rng)?;
                    err += e / args.samples as f64;
                    m = m.max(mi);
                }
                rows.push(Row {
                    strategy: s,
                    n,
                    levels,
                    error: err,
                    max_pixel_grad: m,
                });
            }
        }
    }
    Ok(rows)
}

/// `(2^(L-1) - 1) h`, the shape of the coarsening bound (001 eq. 36).
fn coarsen_shape(levels: usize, n: usize) -> f64 {
    ((1usize << (levels - 1)) - 1) as f64 / n as f64
}

/// The bound of a hierarchy: `C 2^l h` per coarsening step `l` (eq. 36) plus
/// `2 (1 - 1/4) M` per cropping step (eq. 34); the pure strategies give eqs. 36 and 34.
fn bound(s: Subsampling, levels: usize, n: usize, c: f64, m: f64) -> f64 {
    (0..levels - 1)
        .map(|l| {
            if s.coarsens(l, levels) {
                c * (1usize << l) as f64 / n as f64
            } else {
                1.5 * m
            }
        })
        .sum()
}

pub fn run(args: Args) -> Result<()> {
    let dir = crate::common::out_dir_or_default(args.out.as_deref(), "coarsen-vs-crop")?;
    let rows = measure(&args)?;
    let c = rows
        .iter()
        .filter(|r| r.strategy == Subsampling::Coarsen && r.n >= 128)
        .map(|r| r.error / coarsen_shape(r.levels, r.n))
        .fold(0.0, f64::max);
    let bound = |r: &Row| bound(r.strategy, r.levels, r.n, c, r.max_pixel_grad);
    let mut csv = String::from("strategy,n,h,levels,error,bound,max_pixel_grad\n");
    for r in &rows {
        writeln!(
            csv,
            "{},{},{:.6e},{},{:.6e},{:.6e},{:.6e}",
            r.strategy.name(),
            r.n,
            1.0 / r.n as f64,
            r.levels,
            r.error,
            bound(r),
            r.max_pixel_grad
        )?;
    }
    std::fs::write(dir.join("results.csv"), csv)?;

    let mut md = format!(
        "# 001 Appendix A.2: coarsening vs cropping, reproduced\n\n\
         Per-sample telescoping error `E = mean_i sum_l ||g_i^(l) - g_i^(l+1)||` of a 3x3 conv \
         loss on GRF images ({} samples per cell). Bounds: coarsening `C (2^(L-1) - 1) h` with \
         `C = {c:.3}` (largest observed ratio at n >= 128), cropping \
         `2 (1 - 1/4) M (L - 1)` (M = largest per-pixel gradient norm), both: the coarsening \
         bound for its coarsening steps plus `2 (1 - 1/4) M` per cropping step. Order: `E ~ h^p` fitted \
         over n = 64..256.\n\n\
         | strategy | L |{} order p |\n|---|---|{}---|\n",
        args.samples,
        MESHES.iter().map(|n| format!(" n={n}: E (bound) |")).collect::<String>(),
        "---|".repeat(MESHES.len())
    );
    for s in Subsampling::ALL {
        let mut series = vec![];
        for &levels in &LEVELS {
            let pts: Vec<&Row> = rows
                .iter()
                .filter(|r| r.strategy == s && r.levels == levels)
                .collect();
            write!(md, "| {} | {levels} |", s.name())?;
            for r in &pts {
                write!(md, " {:.3e} ({:.2e}) |", r.error, bound(r))?;
            }
            let order: Vec<(usize, f64)> = pts
                .iter()
                .filter(|r| r.n >= 64)
                .map(|r| (r.n, r.error))
                .collect();
            writeln!(
                md,
                " {:.2} |",
                crate::reproduce::example1::observed_order(&order)
            )?;
            series.push(Series {
                name: format!("{} L={levels}", s.name()),
                points: pts.iter().map(|r| ((r.n as f64).log2(), r.error)).collect(),
            });
            series.push(Series {
                name: format!("bound L={levels}"),
                points: pts
                    .iter()
                    .map(|r| ((r.n as f64).log2(), bound(r)))
                    .collect(),
            });
        }
        line_plot(
            &dir.join(format!("coarsen_vs_crop_{}.png", s.name())),
            &Axes {
                title: &format!("telescoping gradient error, {}", s.name()),
                x_label: "log2 n (finest mesh)",
                y_label: "E(h, L)",
                log_y: true,
            },
            &series,
        )?;
    }
    std::fs::write(dir.join("results.md"), &md)?;
    println!("{md}");
    println!("wrote {}", dir.display());
    Ok(())
}
