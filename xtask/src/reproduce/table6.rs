//! `cargo xtask reproduce table6`: multiscale and full-multiscale with L = 2, 3, 4 levels
//! (001 Table 6, denoising, coarsening), UNet and ResNet, from the same initial weights per
//! model and scored on the same degraded test images.

use crate::reproduce::runs::{avg, summary, test_set, train_and_score, Preset, Progress, RunSpec};
use crate::reproduce::{fmt_wu, seed_cell, seed_dir, Common, Protocol, Record};
use anyhow::{Context as _, Result};
use data::Task;
use std::fmt::Write as _;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// A seconds-long preset for the tests.
    #[arg(long, hide = true)]
    pub smoke: bool,
}

/// 001 Table 6 as printed: (strategy, levels, #WU, UNet MSE, ResNet MSE).
pub const PAPER: [(&str, usize, &str, f64, f64); 6] = [
    ("multiscale", 4, "74k", 0.1975, 0.1653),
    ("full-multiscale", 4, "28.7k", 0.1567, 0.1658),
    ("multiscale", 3, "68k", 0.2010, 0.1741),
    ("full-multiscale", 3, "19.5k", 0.1644, 0.1703),
    ("multiscale", 2, "56k", 0.2641, 0.2081),
    ("full-multiscale", 2, "11k", 0.1895, 0.1730),
];

const MODELS: [&str; 2] = ["unet", "resnet"];

/// The preset of Table 6: the protocol's, with fewer iterations for `--quick` (12 runs).
fn preset(common: &Common, smoke: bool) -> Preset {
    let mut p = Preset::of(common.protocol(), smoke);
    if p.protocol == Protocol::Quick {
        p.iterations = 120;
    }
    p
}

/// The deepest hierarchy of the preset (smoke meshes of 16x16 allow L = 3 at most).
fn max_levels(preset: &Preset) -> usize {
    if preset.protocol == Protocol::Smoke {
        3
    } else {
        4
    }
}

/// The runs of Table 6 in training order. Multiscale runs `preset.iterations` whatever L;
/// in 001 Table 6 the finest full-multiscale stage always runs `I_fine = I / 2^(L_max - 1)`
/// iterations (250 of 2000), so the coarsest (halving schedule) runs `I_fine 2^(L-1)`: the only
/// reading that gives the printed 28.7k / 19.5k / 11k #WU.
fn specs(preset: &Preset) -> Result<Vec<RunSpec>> {
    let deepest = max_levels(preset);
    let finest = (preset.iterations >> (deepest - 1)).max(1);
    let mut out = Vec::new();
    for (strategy, levels, ..) in PAPER.iter().filter(|p| p.1 <= deepest) {
        let iterations = if *strategy == "full-multiscale" {
            finest << (levels - 1)
        } else {
            preset.iterations
        };
        for model in MODELS {
            out.push(RunSpec::denoise(
                model,
                strategy,
                *levels,
                preset.n0,
                iterations,
                format!("L{levels}"),
            )?);
        }
    }
    Ok(out)
}

pub fn run(args: Args, ctx: &crate::common::Context) -> Result<()> {
    let preset = preset(&args.common, args.smoke);
    let seeds = args.common.seed_list()?;
    let dir = args.common.out_dir("table6")?;
    let mut progress = Progress::new(&dir)?;
    let levels = (2..=max_levels(&preset))
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let protocol = preset.scale_factors_with_levels(&levels, "2, 3, 4");
    println!("{protocol}");
    let mut done: Vec<(usize, Record)> = Vec::new();
    let mut histories = Vec::new();
    for &seed in &seeds {
        let seed_dir = seed_dir(&dir, seed)?;
        let test = test_set(Task::Denoise, &preset, seed, &ctx.device)?;
        let mut curves = Vec::new();
        for spec in specs(&preset)? {
            progress.line(&format!(
                "seed {seed}: training {} ({} iterations)",
                spec.dir_name(),
                spec.iterations
            ));
            let f = train_and_score(&spec, &preset, seed, &seed_dir, &test, &ctx.device)?;
            progress.line(&summary(&f));
            histories.push((seed, spec.dir_name(), f.history.clone()));
            curves.push((
                format!("{} {} L={}", spec.model, spec.label, spec.levels),
                f.history,
            ));
            done.push((spec.levels, f.record));
        }
        let pictures = if seed == seeds[0] {
            dir.clone()
        } else {
            seed_dir
        };
        crate::reproduce::runs::plot_runs(&pictures, "denoise", &curves)?;
    }
    let mut csv = String::from("seed,levels,model,strategy,wu,wall_s,train_s,metric,value\n");
    let mut md = format!(
        "# 001 Table 6, reproduced ({} protocol, seeds {}): denoising, coarsening, L = {levels}\n\n{}\n\
         Test MSE: mean ± sd over seeds. The finest full-multiscale stage runs the same number of iterations for every L (001 Table 6: 250), the coarsest `2^(L-1)` times as many.\n\n\
         | Training strategy | # of levels | #WU paper | #WU ours | train s UNet | UNet ours | UNet paper | train s ResNet | ResNet ours | ResNet paper |\n|---|---|---|---|---|---|---|---|---|---|\n",
        preset.name(),
        seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        protocol
    );
    for (strategy, levels, wu, unet, resnet) in PAPER {
        let runs = |m: &str| -> Vec<&Record> {
            done.iter()
                .filter(|(l, r)| *l == levels && r.strategy == strategy && r.model == m)
                .map(|(_, r)| r)
                .collect()
        };
        let (u, r) = (runs("unet"), runs("resnet"));
        let ours = |v: &[&Record]| {
            if v.is_empty() {
                " | ".to_string()
            } else {
                format!("{:.1} | {}", avg(v, |r| r.train_s), seed_cell(v))
            }
        };
        let our_wu = if u.is_empty() {
            String::new()
        } else {
            fmt_wu(avg(&u, |r| r.wu))
        };
        writeln!(
            md,
            "| {strategy} | {levels} | {wu} | {our_wu} | {} | {unet:.4} | {} | {resnet:.4} |",
            ours(&u),
            ours(&r)
        )?;
    }
    for (levels, r) in &done {
        writeln!(
            csv,
            "{},{levels},{},{},{:.3},{:.2},{:.2},{},{:.6}",
            r.seed,
            r.model,
            r.strategy,
            r.wu,
            r.wall_s,
            r.train_s,
            r.metric.name(),
            r.mean()
        )?;
    }
    std::fs::write(dir.join("results.csv"), csv).context("results.csv")?;
    std::fs::write(dir.join("results.md"), md).context("results.md")?;
    crate::reproduce::runs::append_variance_note(&dir, &histories)?;
    progress.line(&format!(
        "done in {:.1} s; results in {}",
        progress.elapsed_s(),
        dir.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_protocol_plans_the_papers_work_units() {
        let full = Preset::full();
        let planned: Vec<(String, usize, usize, f64)> = specs(&full)
            .unwrap()
            .iter()
            .filter(|s| s.model == "unet")
            .map(|s| {
                (
                    s.label.clone(),
                    s.levels,
                    s.iterations,
                    s.planned_wu(&full).unwrap(),
                )
            })
            .collect();
        let expect = [
            ("multiscale", 4, 2000, 74000.0),
            ("full-multiscale", 4, 2000, 28750.0),
            ("multiscale", 3, 2000, 68000.0),
            ("full-multiscale", 3, 1000, 19500.0),
            ("multiscale", 2, 2000, 56000.0),
            ("full-multiscale", 2, 500, 11000.0),
        ];
        assert_eq!(planned.len(), expect.len());
        for ((label, l, it, wu), (el, ell, eit, ewu)) in planned.iter().zip(expect) {
            assert_eq!((label.as_str(), *l, *it, *wu), (el, ell, eit, ewu));
        }
        // The paper's printed #WU column (rounded to three digits) agrees with the plan.
        for ((_, _, _, wu), paper) in planned.iter().zip(PAPER) {
            let printed: f64 = paper.2.trim_end_matches('k').parse::<f64>().unwrap() * 1e3;
            assert!((wu - printed).abs() / printed < 5e-3, "{wu} vs {}", paper.2);
        }
    }

    #[test]
    fn quick_protocol_gives_every_full_multiscale_run_the_same_finest_stage() {
        let quick = preset(
            &Common {
                quick: true,
                standard: false,
                full: false,
                out: None,
                seed: 0,
                seeds: 1,
            },
            false,
        );
        for s in specs(&quick)
            .unwrap()
            .iter()
            .filter(|s| s.label == "full-multiscale")
        {
            assert_eq!(s.iterations >> (s.levels - 1), 15, "{}", s.dir_name());
        }
        // Fewer levels now spend less, as in the paper (the old protocol spent more).
        let wu: Vec<f64> = specs(&quick)
            .unwrap()
            .iter()
            .filter(|s| s.label == "full-multiscale" && s.model == "unet")
            .map(|s| s.planned_wu(&quick).unwrap())
            .collect();
        assert!(wu.windows(2).all(|w| w[0] > w[1]), "{wu:?}");
    }

    #[test]
    fn smoke_preset_writes_a_row_per_level_strategy_and_model() {
        let out = std::env::temp_dir().join(format!("xtask-table6-{}", std::process::id()));
        std::fs::remove_dir_all(&out).ok();
        let args = Args {
            common: Common {
                quick: false,
                standard: false,
                full: false,
                out: Some(out.clone()),
                seed: 0,
                seeds: 2,
            },
            smoke: true,
        };
        run(args, &crate::common::test_context()).unwrap();
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        // Smoke meshes (16x16) allow L = 2 and 3: 2 levels x 2 strategies x 2 models x 2 seeds.
        assert_eq!(csv.lines().count(), 1 + 16, "{csv}");
        assert_eq!(
            csv.lines().filter(|l| l.starts_with("1,")).count(),
            8,
            "{csv}"
        );
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| multiscale") || l.starts_with("| full-multiscale"))
            .collect();
        assert_eq!(rows.len(), 6);
        // Rows we ran show mean ± sd over the two seeds.
        assert_eq!(
            rows.iter()
                .filter(|l| l.matches(" ± ").count() == 2)
                .count(),
            4,
            "{md}"
        );
        assert!(out
            .join("seed-1/denoise-unet-multiscale-coarsen-L2/final.safetensors")
            .exists());
        assert!(std::fs::read_to_string(out.join("variance.csv"))
            .unwrap()
            .starts_with("seed,run,iteration,wu,term,ratio\n"));
        assert!(md.contains("Per-term variance ratios"), "{md}");
        // The header states the levels run, not table2's single L.
        assert!(md.contains("levels L = 2, 3 (paper 2, 3, 4)"), "{md}");
        std::fs::remove_dir_all(&out).ok();
    }
}
