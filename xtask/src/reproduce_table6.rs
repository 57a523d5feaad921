//! `cargo xtask reproduce table6`: multiscale and full-multiscale with L = 2, 3, 4 levels
//! (001 Table 6, denoising, coarsening), UNet and ResNet, from the same initial weights per
//! model and scored on the same degraded test images.

use crate::config::Task;
use crate::reproduce::{fmt_wu, Common};
use crate::reproduce_runs::{summary, test_set, train_and_score, Finished, Preset, Progress, RunSpec};
use anyhow::{Context as _, Result};
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
    if p.name == "quick" {
        p.iterations = 60;
    }
    p
}

pub fn run(args: Args, ctx: &crate::common::Context) -> Result<()> {
    let preset = preset(&args.common, args.smoke);
    let dir = args.common.out_dir("table6")?;
    let mut progress = Progress::new(&dir)?;
    println!("{}", preset.scale_factors());
    let test = test_set(Task::Denoise, &preset, args.common.seed, &ctx.device)?;
    let max_levels = if preset.name == "smoke" { 3 } else { 4 };
    let mut done: Vec<(usize, Finished)> = Vec::new();
    for (strategy, levels, ..) in PAPER.iter().filter(|p| p.1 <= max_levels) {
        for model in MODELS {
            let spec = RunSpec::denoise(model, strategy, *levels, preset.n0, preset.iterations, format!("L{levels}"));
            progress.line(&format!("training {} ({} iterations)", spec.dir_name(), spec.iterations));
            let f = train_and_score(&spec, &preset, args.common.seed, &dir, &test, &ctx.device)?;
            progress.line(&summary(&f));
            done.push((*levels, f));
        }
    }
    let mut csv = String::from("levels,model,strategy,wu,wall_s,metric,value\n");
    let mut md = format!(
        "# 001 Table 6, reproduced ({} protocol): denoising, coarsening, L = 2, 3, 4\n\n{}\n\
         | Training strategy | # of levels | #WU paper | #WU ours | UNet ours | UNet paper | ResNet ours | ResNet paper |\n|---|---|---|---|---|---|---|---|\n",
        preset.name,
        preset.scale_factors()
    );
    for (strategy, levels, wu, unet, resnet) in PAPER {
        let find = |m: &str| done.iter().find(|(l, f)| *l == levels && f.record.strategy == strategy && f.record.model == m);
        let (u, r) = (find("unet"), find("resnet"));
        let ours = |f: Option<&(usize, Finished)>| f.map_or(String::new(), |(_, f)| format!("{:.4}", f.record.mean()));
        let our_wu = u.or(r).map_or(String::new(), |(_, f)| fmt_wu(f.record.wu));
        writeln!(md, "| {strategy} | {levels} | {wu} | {our_wu} | {} | {unet:.4} | {} | {resnet:.4} |", ours(u), ours(r))?;
    }
    for (levels, f) in &done {
        let r = &f.record;
        writeln!(csv, "{levels},{},{},{:.3},{:.2},{},{:.6}", r.model, r.strategy, r.wu, r.wall_s, r.metric.name(), r.mean())?;
    }
    std::fs::write(dir.join("results.csv"), csv).context("results.csv")?;
    std::fs::write(dir.join("results.md"), md).context("results.md")?;
    let curves: Vec<(String, Vec<_>)> =
        done.iter().map(|(l, f)| (format!("{} {} L={l}", f.record.model, f.record.strategy), f.history.clone())).collect();
    crate::reproduce_runs::plot_runs(&dir, "denoise", &curves)?;
    progress.line(&format!("done in {:.1} s; results in {}", progress.elapsed_s(), dir.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_preset_writes_a_row_per_level_strategy_and_model() {
        let out = std::env::temp_dir().join(format!("xtask-table6-{}", std::process::id()));
        std::fs::remove_dir_all(&out).ok();
        let args = Args { common: Common { quick: false, full: false, out: Some(out.clone()), seed: 0 }, smoke: true };
        run(args, &crate::common::Context { device: candle_core::Device::Cpu }).unwrap();
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        // Smoke meshes (16x16) allow L = 2 and 3: 2 levels x 2 strategies x 2 models.
        assert_eq!(csv.lines().count(), 1 + 8, "{csv}");
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        assert_eq!(md.lines().filter(|l| l.starts_with("| multiscale") || l.starts_with("| full-multiscale")).count(), 6);
        std::fs::remove_dir_all(&out).ok();
    }
}
