//! `cargo xtask reproduce table5`: test error at fixed #WU budgets (001 Table 5), single-scale
//! (batch N0) against multiscale and full-multiscale (coarsening), denoising with the UNet.
//! Every run is trained to its own budget (its learning-rate schedule ends there) from the
//! same initial weights and scored on the same degraded test images.

use crate::plot::{line_plot, Axes, Series};
use crate::reproduce::{fmt_wu, marker, mean, Common};
use crate::reproduce_runs::{compare, summary, test_set, train_and_score, Finished, Preset, Progress, RunSpec};
use anyhow::{Context as _, Result};
use std::fmt::Write as _;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// #WU budgets (comma separated; default: the protocol's).
    #[arg(long, value_delimiter = ',')]
    pub budgets: Vec<f64>,
    /// A seconds-long preset for the tests.
    #[arg(long, hide = true)]
    pub smoke: bool,
}

/// 001 Table 5 as printed: (#WU budget, single-scale MSE, multiscale MSE).
pub const PAPER: [(f64, f64, f64); 8] = [
    (10.0, 0.1000, 0.0444),
    (20.0, 0.0514, 0.0179),
    (30.0, 0.0354, 0.0231),
    (40.0, 0.0277, 0.0122),
    (60.0, 0.0204, 0.0191),
    (70.0, 0.0178, 0.0133),
    (80.0, 0.0159, 0.0114),
    (90.0, 0.0151, 0.0101),
];

const STRATEGIES: [&str; 3] = ["single-practical", "multiscale", "full-multiscale"];

/// Default budgets of each preset.
fn budgets(preset: &Preset) -> Vec<f64> {
    match preset.name {
        "smoke" => vec![6.0, 12.0],
        "quick" => vec![100.0, 200.0, 400.0, 800.0],
        _ => PAPER.iter().map(|p| p.0 * 1000.0).collect(),
    }
}

/// The most iterations of `label` whose planned #WU stays within `budget` (at least 1).
fn iterations_for(label: &str, preset: &Preset, budget: f64) -> Result<usize> {
    let wu = |i| RunSpec::denoise("unet", label, preset.levels, preset.n0, i, String::new()).planned_wu(preset);
    let (mut lo, mut hi) = (1usize, 2usize);
    while wu(hi)? <= budget {
        (lo, hi) = (hi, hi * 2);
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if wu(mid)? <= budget {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

pub fn run(args: Args, ctx: &crate::common::Context) -> Result<()> {
    let preset = Preset::of(args.common.protocol(), args.smoke);
    let dir = args.common.out_dir("table5")?;
    let mut progress = Progress::new(&dir)?;
    println!("{}", preset.scale_factors());
    let budgets = if args.budgets.is_empty() { budgets(&preset) } else { args.budgets.clone() };
    let test = test_set(crate::config::Task::Denoise, &preset, args.common.seed, &ctx.device)?;
    let mut rows: Vec<(f64, Vec<Finished>)> = Vec::new();
    for &budget in &budgets {
        let mut runs = Vec::new();
        for label in STRATEGIES {
            let it = iterations_for(label, &preset, budget)?;
            let spec = RunSpec::denoise("unet", label, preset.levels, preset.n0, it, format!("b{budget}"));
            progress.line(&format!("budget {budget} #WU: training {} ({it} iterations)", spec.dir_name()));
            let f = train_and_score(&spec, &preset, args.common.seed, &dir, &test, &ctx.device)?;
            progress.line(&summary(&f));
            runs.push(f);
        }
        rows.push((budget, runs));
    }
    write_results(&dir, &preset, &rows)?;
    progress.line(&format!("done in {:.1} s; results in {}", progress.elapsed_s(), dir.display()));
    Ok(())
}

/// `results.csv` (`budget,strategy,wu,wall_s,metric,value,p_value`, p against single-scale at
/// the same budget), `results.md` and `mse_vs_wu.png`.
fn write_results(dir: &std::path::Path, preset: &Preset, rows: &[(f64, Vec<Finished>)]) -> Result<()> {
    let mut csv = String::from("budget,strategy,wu,wall_s,metric,value,p_value\n");
    let mut md = format!(
        "# 001 Table 5, reproduced ({} protocol): denoising, UNet, test MSE at fixed #WU budgets\n\n{}\n\
         Each run trains to its own budget (the cosine schedule ends there), from the same initial weights; `*`/`**`: paired t-test against single-scale at the same budget not significant / significant at 5%. Paper budgets are printed as in 001 (units as there).\n\n\
         | budget | #WU single | single-scale (N0) | #WU MS | multiscale | #WU FMG | full-multiscale | paper budget | paper single | paper multiscale |\n|---|---|---|---|---|---|---|---|---|---|\n",
        preset.name,
        preset.scale_factors()
    );
    let mut series: Vec<Series> = STRATEGIES.iter().map(|s| Series { name: s.to_string(), points: vec![] }).collect();
    for (k, (budget, runs)) in rows.iter().enumerate() {
        write!(md, "| {} |", fmt_wu(*budget))?;
        for (i, f) in runs.iter().enumerate() {
            let r = &f.record;
            let t = if i == 0 { None } else { compare(r, &runs[0].record) };
            writeln!(
                csv,
                "{budget},{},{:.3},{:.2},{},{:.6},{}",
                r.strategy,
                r.wu,
                r.wall_s,
                r.metric.name(),
                r.mean(),
                t.map_or(String::new(), |t| format!("{:.6}", t.p_value))
            )?;
            write!(md, " {} | {:.4}{} |", fmt_wu(r.wu), r.mean(), marker(t.map(|t| t.p_value)))?;
            series[i].points.push((r.wu, r.mean()));
        }
        match PAPER.get(k) {
            Some(p) => writeln!(md, " {} | {:.4} | {:.4} |", p.0, p.1, p.2)?,
            None => writeln!(md, " | | |")?,
        }
    }
    let wins = rows.iter().filter(|(_, r)| r[1].record.mean() < r[0].record.mean()).count();
    let fmg_wins = rows.iter().filter(|(_, r)| r[2].record.mean() < r[0].record.mean()).count();
    writeln!(
        md,
        "\nMultiscale beats single-scale at {wins} of {} budgets, full-multiscale at {fmg_wins} (mean test MSE; single-scale mean over budgets {:.4}).",
        rows.len(),
        mean(&rows.iter().map(|(_, r)| r[0].record.mean()).collect::<Vec<_>>())
    )?;
    std::fs::write(dir.join("results.csv"), csv).context("results.csv")?;
    std::fs::write(dir.join("results.md"), md).context("results.md")?;
    let axes = Axes { title: "test MSE at fixed #WU budgets (denoising, UNet)", x_label: "#WU", y_label: "test MSE", log_y: true };
    line_plot(&dir.join("mse_vs_wu.png"), &axes, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_spent_and_every_row_is_written() {
        let preset = Preset::smoke();
        for label in STRATEGIES {
            let it = iterations_for(label, &preset, 12.0).unwrap();
            let wu = |i| RunSpec::denoise("unet", label, preset.levels, preset.n0, i, String::new()).planned_wu(&preset).unwrap();
            assert!(wu(it) <= 12.0 && wu(it + 1) > 12.0, "{label}: {it}");
        }
        let out = std::env::temp_dir().join(format!("xtask-table5-{}", std::process::id()));
        std::fs::remove_dir_all(&out).ok();
        let args = Args { common: Common { quick: false, full: false, out: Some(out.clone()), seed: 0 }, budgets: vec![], smoke: true };
        run(args, &crate::common::Context { device: candle_core::Device::Cpu }).unwrap();
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");
        assert!(out.join("mse_vs_wu.png").exists());
        std::fs::remove_dir_all(&out).ok();
    }
}
