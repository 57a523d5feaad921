//! `cargo xtask reproduce table5`: test error at fixed #WU budgets (001 Table 5), single-scale
//! (batch N0) against multiscale and full-multiscale (coarsening), denoising with the UNet.
//! Every run is trained to its own budget (its learning-rate schedule ends there) from the
//! same initial weights and scored on the same degraded test images.

use crate::report::plot::{line_plot, Axes, Series};
use crate::reproduce::runs::{
    avg, compare, summary, test_set, train_and_score, Preset, Progress, RunSpec,
};
use crate::reproduce::{
    compare_over_seeds, fmt_wu, marker, mean, p_cell, seed_cell, seed_dir, Common, Protocol, Record,
};
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
    match preset.protocol {
        Protocol::Smoke => vec![6.0, 12.0],
        Protocol::Quick => vec![100.0, 200.0, 400.0, 800.0],
        Protocol::Standard => vec![500.0, 1000.0, 2000.0, 4000.0],
        Protocol::Full => PAPER.iter().map(|p| p.0 * 1000.0).collect(),
    }
}

/// The most iterations of `label` whose planned #WU stays within `budget` (at least 1).
fn iterations_for(label: &str, preset: &Preset, budget: f64) -> Result<usize> {
    let wu = |i| {
        RunSpec::denoise("unet", label, preset.levels, preset.n0, i, String::new())?
            .planned_wu(preset)
    };
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
    let seeds = args.common.seed_list()?;
    let dir = args.common.out_dir("table5")?;
    let mut progress = Progress::new(&dir)?;
    println!("{}", preset.scale_factors());
    let budgets = if args.budgets.is_empty() {
        budgets(&preset)
    } else {
        args.budgets.clone()
    };
    anyhow::ensure!(
        budgets.iter().all(|b| b.is_finite() && *b > 0.0),
        "--budgets {budgets:?}: every budget must be a positive number of #WU"
    );
    for &budget in &budgets {
        for label in STRATEGIES {
            let one = RunSpec::denoise("unet", label, preset.levels, preset.n0, 1, String::new())?
                .planned_wu(&preset)?;
            anyhow::ensure!(
                one <= budget,
                "--budgets: {budget} #WU is less than one {label} iteration ({one} #WU)"
            );
        }
    }
    let mut done: Vec<(f64, Record)> = Vec::new();
    let mut histories = Vec::new();
    for &seed in &seeds {
        let seed_dir = seed_dir(&dir, seed)?;
        let test = test_set(data::Task::Denoise, &preset, seed, &ctx.device)?;
        for &budget in &budgets {
            for label in STRATEGIES {
                let it = iterations_for(label, &preset, budget)?;
                let spec = RunSpec::denoise(
                    "unet",
                    label,
                    preset.levels,
                    preset.n0,
                    it,
                    format!("b{budget}"),
                )?;
                progress.line(&format!(
                    "seed {seed}, budget {budget} #WU: training {} ({it} iterations)",
                    spec.dir_name()
                ));
                let f = train_and_score(&spec, &preset, seed, &seed_dir, &test, &ctx.device)?;
                progress.line(&summary(&f));
                histories.push((seed, spec.dir_name(), f.history.clone()));
                done.push((budget, f.record));
            }
        }
        write_results(&dir, &preset, &seeds, &budgets, &done)?;
    }
    crate::reproduce::runs::append_variance_note(&dir, &histories)?;
    progress.line(&format!(
        "done in {:.1} s; results in {}",
        progress.elapsed_s(),
        dir.display()
    ));
    Ok(())
}

/// `results.csv` (`seed,budget,strategy,wu,wall_s,train_s,metric,value,p_value`, p of the
/// per-patch test against single-scale at the same budget and seed), `results.md` (mean ± sd
/// over seeds, markers from the paired test over seeds when there are two or more) and
/// `mse_vs_wu.png`.
fn write_results(
    dir: &std::path::Path,
    preset: &Preset,
    seeds: &[u64],
    budgets: &[f64],
    done: &[(f64, Record)],
) -> Result<()> {
    let mut csv = String::from("seed,budget,strategy,wu,wall_s,train_s,metric,value,p_value\n");
    let mut md = format!(
        "# 001 Table 5, reproduced ({} protocol, seeds {}): denoising, UNet, test MSE at fixed #WU budgets\n\n{}\n\
         Each run trains to its own budget (the cosine schedule ends there), from the same initial weights per seed; test MSE as mean ± sd over seeds; `*`/`**`: paired t-test against single-scale at the same budget (over seeds when there are two or more, else over test patches) not significant / significant at 5%. Paper budgets are printed as in 001 (units as there).\n\n\
         | budget | #WU single | single-scale (N0) | #WU MS | multiscale | p MS | #WU FMG | full-multiscale | p FMG | paper budget | paper single | paper multiscale |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        preset.name(),
        seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        preset.scale_factors()
    );
    let runs = |budget: f64, label: &str| -> Vec<&Record> {
        let mut v: Vec<&Record> = done
            .iter()
            .filter(|(b, r)| *b == budget && r.strategy == label)
            .map(|(_, r)| r)
            .collect();
        v.sort_by_key(|r| r.seed);
        v
    };
    let mut series: Vec<Series> = STRATEGIES
        .iter()
        .map(|s| Series {
            name: s.to_string(),
            points: vec![],
        })
        .collect();
    let (mut wins, mut fmg_wins, mut rows) = (0, 0, 0);
    for (k, &budget) in budgets.iter().enumerate() {
        let base = runs(budget, STRATEGIES[0]);
        if base.is_empty() {
            continue;
        }
        rows += 1;
        write!(md, "| {} |", fmt_wu(budget))?;
        for (i, label) in STRATEGIES.iter().enumerate() {
            let rs = runs(budget, label);
            if rs.is_empty() {
                write!(md, " | |{}", if i == 0 { "" } else { " |" })?;
                continue;
            }
            for r in &rs {
                let b = base.iter().find(|b| b.seed == r.seed);
                let t = if i == 0 {
                    None
                } else {
                    b.and_then(|b| compare(r, b))
                };
                writeln!(
                    csv,
                    "{},{budget},{},{:.3},{:.2},{:.2},{},{:.6},{}",
                    r.seed,
                    r.strategy,
                    r.wu,
                    r.wall_s,
                    r.train_s,
                    r.metric.name(),
                    r.mean(),
                    t.map_or(String::new(), |t| format!("{:.6}", t.p_value))
                )?;
            }
            if i == 0 {
                write!(md, " {} | {} |", fmt_wu(avg(&rs, |r| r.wu)), seed_cell(&rs))?;
            } else {
                let c = compare_over_seeds(&rs, &base).primary();
                write!(
                    md,
                    " {} | {}{} | {} |",
                    fmt_wu(avg(&rs, |r| r.wu)),
                    seed_cell(&rs),
                    marker(c.map(|t| t.p_value)),
                    p_cell(c)
                )?;
                let better = avg(&rs, |r| r.mean()) < avg(&base, |r| r.mean());
                if better && i == 1 {
                    wins += 1;
                } else if better {
                    fmg_wins += 1;
                }
            }
            series[i]
                .points
                .push((avg(&rs, |r| r.wu), avg(&rs, |r| r.mean())));
        }
        match PAPER.get(k) {
            Some(p) => writeln!(md, " {} | {:.4} | {:.4} |", p.0, p.1, p.2)?,
            None => writeln!(md, " | | |")?,
        }
    }
    writeln!(
        md,
        "\nMultiscale beats single-scale at {wins} of {rows} budgets, full-multiscale at {fmg_wins} (mean test MSE over seeds; single-scale mean over budgets {:.4}).",
        mean(&budgets.iter().map(|&b| avg(&runs(b, STRATEGIES[0]), |r| r.mean())).filter(|v| v.is_finite()).collect::<Vec<_>>())
    )?;
    std::fs::write(dir.join("results.csv"), csv).context("results.csv")?;
    std::fs::write(dir.join("results.md"), md).context("results.md")?;
    let axes = Axes {
        title: "test MSE at fixed #WU budgets (denoising, UNet)",
        x_label: "#WU",
        y_label: "test MSE",
        log_y: true,
    };
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
            let wu = |i| {
                RunSpec::denoise("unet", label, preset.levels, preset.n0, i, String::new())
                    .unwrap()
                    .planned_wu(&preset)
                    .unwrap()
            };
            assert!(wu(it) <= 12.0 && wu(it + 1) > 12.0, "{label}: {it}");
        }
        let out = std::env::temp_dir().join(format!("xtask-table5-{}", std::process::id()));
        std::fs::remove_dir_all(&out).ok();
        let args = Args {
            common: Common {
                quick: false,
                standard: false,
                full: false,
                out: Some(out.clone()),
                seed: 0,
                seeds: 1,
            },
            budgets: vec![],
            smoke: true,
        };
        run(args, &crate::common::test_context()).unwrap();
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");
        assert!(
            csv.starts_with("seed,budget,strategy,wu,wall_s,train_s,metric,value,p_value\n0,6,"),
            "{csv}"
        );
        assert!(out.join("mse_vs_wu.png").exists());
        // A budget below one iteration is refused before any training.
        let args = Args {
            common: Common {
                quick: false,
                standard: false,
                full: false,
                out: Some(out.clone()),
                seed: 0,
                seeds: 1,
            },
            budgets: vec![0.01],
            smoke: true,
        };
        let e = format!(
            "{:#}",
            run(args, &crate::common::test_context()).unwrap_err()
        );
        assert!(e.contains("less than one"), "{e}");
        std::fs::remove_dir_all(&out).ok();
    }
}
