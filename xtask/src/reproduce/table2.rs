//! `cargo xtask reproduce table2`: 001 Table 2 (every task x strategy x subsampling, with the
//! three single-scale baselines of SPEC section 7) and its `results.md`.

use crate::commands::eval::save_samples;
use crate::reproduce::runs::{
    avg, compare, plot_runs, recipe_specs, summary, test_set, train_and_score, Preset, Progress,
    Recipe, RunSpec,
};
use crate::reproduce::{
    compare_over_seeds, fmt_wu, marker, over_seeds, p_cell, seed_cell, seed_dir, write_csv, Common,
    Record, SeedComparison,
};
use anyhow::Result;
use candle_core::Tensor;
use data::Task;
use fmg::StrategyKind;
use std::fmt::Write as _;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Tasks to run (comma separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "denoise,deblur,inpaint,superres",
        value_parser = crate::common::choice(Task::ALL, Task::name)
    )]
    pub tasks: Vec<Task>,
    /// Models to run (comma separated; default both of each task's pair: unet/resnet, or
    /// espcn/resnet for super-resolution).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Also train the multiscale recipes (issue 15 item 9): multiscale with the
    /// noise-consistent restriction (denoising), multiscale and full-multiscale with adaptive
    /// MLMC-optimal batches, and single-scale, multiscale and full-multiscale with mesh-free
    /// convolutions (not for super-resolution).
    #[arg(long)]
    pub recipes: bool,
    /// A seconds-long preset for the tests.
    #[arg(long, hide = true)]
    pub smoke: bool,
}

/// One row of the paper's Table 2: strategy, subsampling, #WU and the two models' values
/// (with the paper's t-test marker).
pub struct PaperRow {
    pub strategy: &'static str,
    pub subsampling: &'static str,
    pub wu: &'static str,
    pub values: [(f64, &'static str); 2],
}

/// The two networks of Table 2 for `task` (ESPCN and ResNet for super-resolution).
pub fn models(task: Task) -> [&'static str; 2] {
    match task {
        Task::Superres => ["espcn", "resnet"],
        Task::Denoise | Task::Deblur | Task::Inpaint => ["unet", "resnet"],
    }
}

/// How the tables name `m` (`UNet`, `ResNet`, `ESPCN`; anything else as it is).
pub fn display_model(m: &str) -> &str {
    match m {
        "unet" => "UNet",
        "resnet" => "ResNet",
        "espcn" => "ESPCN",
        other => other,
    }
}

/// 001 Table 2, as printed (single-scale there is our `single-paper`).
pub fn paper(task: Task) -> [PaperRow; 5] {
    let row =
        |strategy, subsampling, wu, a: (f64, &'static str), b: (f64, &'static str)| PaperRow {
            strategy,
            subsampling,
            wu,
            values: [a, b],
        };
    let (sp, ms, fmg) = ("single-paper", "multiscale", "full-multiscale");
    match task {
        Task::Denoise => [
            row(sp, "-", "480k", (0.1472, ""), (0.0927, "")),
            row(ms, "coarsen", "74k", (0.1417, "*"), (0.0943, "*")),
            row(fmg, "coarsen", "28.7k", (0.1086, "**"), (0.0839, "**")),
            row(fmg, "crop", "28.7k", (0.2723, ""), (0.1599, "")),
            row(fmg, "both", "28.7k", (0.2632, ""), (0.1366, "")),
        ],
        Task::Deblur => [
            row(sp, "-", "480k", (0.1478, ""), (0.1117, "")),
            row(ms, "coarsen", "74k", (0.1420, "**"), (0.1156, "*")),
            row(fmg, "coarsen", "28.7k", (0.1515, "**"), (0.1480, "**")),
            row(fmg, "crop", "28.7k", (0.4010, ""), (0.1852, "")),
            row(fmg, "both", "28.7k", (0.3541, ""), (0.1849, "")),
        ],
        Task::Inpaint => [
            row(sp, "-", "480k", (0.9020, ""), (0.9079, "")),
            row(ms, "coarsen", "74k", (0.8927, "**"), (0.8920, "**")),
            row(fmg, "coarsen", "126k", (0.9112, "**"), (0.9060, "*")),
            row(fmg, "crop", "126k", (0.6383, ""), (0.8527, "")),
            row(fmg, "both", "126k", (0.6392, ""), (0.8464, "")),
        ],
        Task::Superres => [
            row(sp, "-", "30k", (0.8147, ""), (0.8294, "")),
            row(ms, "coarsen", "4.6k", (0.7952, "**"), (0.7982, "**")),
            row(fmg, "coarsen", "7.9k", (0.7945, "**"), (0.7929, "**")),
            row(fmg, "crop", "7.9k", (0.7590, ""), (0.7504, "")),
            row(fmg, "both", "7.9k", (0.7663, ""), (0.7617, "")),
        ],
    }
}

/// Rows of our table in the paper's order, the two other baselines after the paper's one.
const OUR_ROWS: [(&str, &str); 7] = [
    ("single-paper", "-"),
    ("single-practical", "-"),
    ("single-equal-wu", "-"),
    ("multiscale", "coarsen"),
    ("full-multiscale", "coarsen"),
    ("full-multiscale", "crop"),
    ("full-multiscale", "both"),
];

/// Every row the table of `task` may show, in order: the paper's strategies, then the recipes
/// that apply to `task` ([`recipe_specs`]; their strategy label carries the recipe's suffix).
fn all_rows(task: Task) -> Vec<(String, &'static str)> {
    let mut rows: Vec<(String, &str)> = OUR_ROWS
        .iter()
        .map(|(s, sub)| (s.to_string(), *sub))
        .collect();
    for (strategy, recipe) in recipe_specs(task) {
        let sub = if strategy.starts_with("single") {
            "-"
        } else {
            "coarsen"
        };
        rows.push((format!("{strategy}{}", recipe.suffix()), sub));
    }
    rows
}

/// The baseline of the markers and per-patch p-values of `task`: `single-paper` when it ran,
/// else `single-equal-wu` (the standard protocol leaves out `single-paper`).
fn reference(task: Task, records: &[Record]) -> &'static str {
    match records
        .iter()
        .any(|r| r.task == task.name() && r.strategy == "single-paper")
    {
        true => "single-paper",
        false => "single-equal-wu",
    }
}

/// The `results.md` section of one task: our test metric (mean ± sd over seeds, with the
/// marker of the paired test against [`reference()`]: over seeds with two or more, else over
/// patches) beside the paper's value, #WU and training time (validation excluded), per model.
pub fn markdown_task(task: Task, records: &[Record]) -> Result<String> {
    let ms = models(task);
    let metric = task.metric();
    let arrow = if metric.higher_is_better() {
        "↑"
    } else {
        "↓"
    };
    let paper_rows = paper(task);
    let reference = reference(task, records);
    let mut s = String::new();
    writeln!(
        s,
        "### {} — {} ({arrow}; markers against `{reference}`)\n",
        task.name(),
        metric.name().to_uppercase()
    )?;
    write!(s, "| Training strategy | Subsampling | #WU paper |")?;
    for m in ms {
        let m = display_model(m);
        write!(
            s,
            " #WU {m} | train s {m} | {m} ours | p seeds {m} | p patches {m} | {m} paper |"
        )?;
    }
    writeln!(s)?;
    writeln!(s, "|{}", "---|".repeat(3 + 6 * ms.len()))?;
    for (strategy, sub) in all_rows(task) {
        let (strategy, sub) = (strategy.as_str(), sub);
        let paper_row = paper_rows
            .iter()
            .find(|r| r.strategy == strategy && r.subsampling == sub);
        let found: Vec<Vec<&Record>> = ms
            .iter()
            .map(|m| over_seeds(records, task.name(), m, strategy, sub))
            .collect();
        if paper_row.is_none() && found.iter().all(Vec::is_empty) {
            continue;
        }
        write!(
            s,
            "| {strategy} | {sub} | {} |",
            paper_row.map_or("", |r| r.wu)
        )?;
        for (i, runs) in found.iter().enumerate() {
            if runs.is_empty() {
                write!(s, " | | | | |")?;
            } else {
                let base = over_seeds(records, task.name(), ms[i], reference, "-");
                let c = if strategy == reference {
                    SeedComparison::default()
                } else {
                    compare_over_seeds(runs, &base)
                };
                write!(
                    s,
                    " {} | {:.1} | {}{} | {} | {} |",
                    fmt_wu(avg(runs, |r| r.wu)),
                    avg(runs, |r| r.train_s),
                    seed_cell(runs),
                    marker(c.primary().map(|t| t.p_value)),
                    p_cell(c.seeds),
                    p_cell(c.patches)
                )?;
            }
            match paper_row {
                Some(p) => write!(s, " {:.4}{} |", p.values[i].0, p.values[i].1)?,
                None => write!(s, " |")?,
            }
        }
        writeln!(s)?;
    }
    writeln!(s)?;
    Ok(s)
}

/// The runs of Table 2 for one task and model, in training order (full-multiscale with
/// coarsening first: `single-equal-wu` spends its measured #WU), then the recipes when asked.
fn specs(task: Task, model: &str, preset: &Preset, recipes: bool) -> Result<Vec<RunSpec>> {
    let iterations = preset.task_iterations(task);
    let spec = |label: &str, subsampling: &str, strategy, single_batch| RunSpec {
        task,
        model: model.into(),
        label: label.into(),
        subsampling: subsampling.into(),
        strategy,
        levels: preset.levels,
        single_batch,
        iterations,
        tag: String::new(),
        recipe: Recipe::Plain,
    };
    let n0 = preset.task_n0(task);
    let paper_batch = (0..preset.levels).map(|l| n0 << l).sum();
    let mut runs = vec![
        spec(
            "full-multiscale",
            "coarsen",
            StrategyKind::FullMultiscale,
            None,
        ),
        spec(
            "full-multiscale",
            "crop",
            StrategyKind::FullMultiscale,
            None,
        ),
        spec(
            "full-multiscale",
            "both",
            StrategyKind::FullMultiscale,
            None,
        ),
        spec("multiscale", "coarsen", StrategyKind::Multiscale, None),
        spec("single-paper", "-", StrategyKind::Single, Some(paper_batch)),
        spec("single-practical", "-", StrategyKind::Single, Some(n0)),
        spec("single-equal-wu", "-", StrategyKind::Single, Some(n0)),
    ];
    if preset.core_strategies_only {
        runs.retain(|r| {
            r.label != "single-paper" && r.subsampling != "crop" && r.subsampling != "both"
        });
    }
    if recipes {
        for (strategy, recipe) in recipe_specs(task) {
            runs.push(RunSpec::new(
                task,
                model,
                strategy,
                recipe,
                preset,
                iterations,
                String::new(),
            )?);
        }
    }
    Ok(runs)
}

pub fn run(args: Args, ctx: &crate::common::Context) -> Result<()> {
    let preset = Preset::of(args.common.protocol(), args.smoke);
    let seeds = args.common.seed_list()?;
    let dir = args.common.out_dir("table2")?;
    let mut progress = Progress::new(&dir)?;
    println!("{}", preset.scale_factors());
    let mut records = Vec::new();
    let pairs: Vec<(Task, &str)> = args
        .tasks
        .iter()
        .flat_map(|&t| {
            models(t)
                .into_iter()
                .filter(|m| args.models.is_empty() || args.models.iter().any(|x| x == m))
                .map(move |m| (t, m))
        })
        .collect();
    let mut total = 0;
    for (t, m) in &pairs {
        total += specs(*t, m, &preset, args.recipes)?.len() * seeds.len();
    }
    let mut histories = Vec::new();
    for &seed in &seeds {
        let seed_dir = seed_dir(&dir, seed)?;
        for &task in &args.tasks {
            let test = test_set(task, &preset, seed, &ctx.device)?;
            for (_, model) in pairs.iter().filter(|(t, _)| *t == task) {
                let mut outputs = Vec::new();
                let mut runs = Vec::new();
                for mut spec in specs(task, model, &preset, args.recipes)? {
                    if spec.label == "single-equal-wu" {
                        let fmg = records.iter().rev().find(|r: &&Record| {
                            r.seed == seed
                                && r.task == task.name()
                                && r.model == *model
                                && r.strategy == "full-multiscale"
                                && r.subsampling == "coarsen"
                        });
                        let wu = fmg.map_or(0.0, |r| r.wu);
                        spec.iterations =
                            ((wu / preset.task_n0(task) as f64).round() as usize).max(1);
                    }
                    progress.line(&format!(
                        "[{}/{total}] seed {seed}: training {} ({} iterations)",
                        records.len() + 1,
                        spec.dir_name(),
                        spec.iterations
                    ));
                    let f = train_and_score(&spec, &preset, seed, &seed_dir, &test, &ctx.device)?;
                    progress.line(&summary(&f));
                    histories.push((seed, spec.dir_name(), f.history.clone()));
                    outputs.push((spec.label.clone(), spec.subsampling.clone(), f.prediction));
                    runs.push((
                        format!("{} {}", spec.label, spec.subsampling).replace(" -", ""),
                        f.history,
                    ));
                    records.push(f.record);
                }
                // Pictures of the first seed beside the tables, of the others in their folders.
                let pictures = if seed == seeds[0] {
                    dir.clone()
                } else {
                    seed_dir.clone()
                };
                plot_runs(&pictures, &format!("{}-{model}", task.name()), &runs)?;
                // Sample grid columns in the table's order: input, each strategy, target.
                let order: Vec<(String, Tensor)> = OUR_ROWS
                    .iter()
                    .filter_map(|(s, sub)| {
                        outputs
                            .iter()
                            .find(|o| o.0 == *s && o.1 == *sub)
                            .map(|o| (format!("{s} {sub}").replace(" -", ""), o.2.clone()))
                    })
                    .collect();
                save_samples(
                    &pictures.join(format!("samples-{}-{model}.png", task.name())),
                    &test,
                    &order,
                )?;
            }
            finish(&dir, &preset, &seeds, &mut records, &progress)?;
        }
    }
    crate::reproduce::runs::append_variance_note(&dir, &histories)?;
    progress.line(&format!(
        "done: {} runs in {:.1} s; results in {}",
        records.len(),
        progress.elapsed_s(),
        dir.display()
    ));
    Ok(())
}

/// Fill in the per-patch p-values against the [`reference()`] baseline of the same seed and
/// (re)write `results.csv` and `results.md`.
fn finish(
    dir: &Path,
    preset: &Preset,
    seeds: &[u64],
    records: &mut [Record],
    progress: &Progress,
) -> Result<()> {
    let bases: Vec<Record> = records
        .iter()
        .filter(|r| {
            let task = r.task.parse::<Task>().ok();
            task.is_some_and(|t| r.strategy == reference(t, records))
        })
        .cloned()
        .collect();
    for r in records.iter_mut() {
        if let Some(b) = bases.iter().find(|b| {
            b.seed == r.seed && b.task == r.task && b.model == r.model && b.strategy != r.strategy
        }) {
            r.p_value = compare(r, b).map(|t| t.p_value);
        }
    }
    write_csv(&dir.join("results.csv"), records)?;
    let mut md = format!(
        "# 001 Table 2, reproduced ({} protocol, seeds {})\n\n{}\nTest metric on identical degraded test images for every strategy of a seed: mean ± sd over seeds. `*` = not significantly different from `single-paper` (from `single-equal-wu` where `single-paper` did not run), `**` = different (paired two-sided t-test at 5% over seeds when there are two or more, else over test patches; `p patches` pools every patch of every seed and overstates significance, since patches of one photo are correlated). #WU counted from what ran; `train s` is the training time alone (validation and checkpoints excluded; {:.0} s of wall time so far for the whole experiment, other jobs on the machine inflate it).\n\n",
        preset.name(),
        seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        preset.scale_factors(),
        progress.elapsed_s()
    );
    for task in Task::ALL {
        if records.iter().any(|r| r.task == task.name()) {
            md.push_str(&markdown_task(task, records)?);
            md.push_str(&markdown_ratios(task, records)?);
        }
    }
    std::fs::write(dir.join("results.md"), md)?;
    Ok(())
}

/// Per run: test metric difference to each baseline (mean over seeds) with Cohen's d_z and p
/// of the primary test, and the #WU and training-time ratios run / baseline (the latter also
/// without the time spent drawing batches).
fn markdown_ratios(task: Task, records: &[Record]) -> Result<String> {
    let mut s = String::new();
    writeln!(s, "Against each single-scale baseline ({}): #WU ratio, training-time ratio (validation excluded; in brackets without the time spent drawing batches, the model's share), mean difference of the metric (run - baseline), Cohen's d_z and p of the paired test (over seeds when there are two or more).\n", task.name())?;
    writeln!(
        s,
        "| model | run | vs single-paper | vs single-practical | vs single-equal-wu |"
    )?;
    writeln!(s, "|---|---|---|---|---|")?;
    for model in models(task) {
        for (strategy, sub) in all_rows(task).iter().filter(|(st, _)| st != "single-paper") {
            let (strategy, sub) = (strategy.as_str(), *sub);
            let runs = over_seeds(records, task.name(), model, strategy, sub);
            if runs.is_empty() {
                continue;
            }
            write!(s, "| {model} | {strategy} {sub} |")?;
            for base in ["single-paper", "single-practical", "single-equal-wu"] {
                let b = over_seeds(records, task.name(), model, base, "-");
                if b.is_empty() || base == strategy {
                    write!(s, " |")?;
                    continue;
                }
                let t = compare_over_seeds(&runs, &b).primary();
                write!(
                    s,
                    " WU x{:.3}, time x{:.2} (model x{:.2}), Δ {:+.4}, d {}, p {} |",
                    avg(&runs, |r| r.wu) / avg(&b, |r| r.wu),
                    avg(&runs, |r| r.train_s) / avg(&b, |r| r.train_s),
                    avg(&runs, |r| r.train_s - r.data_s) / avg(&b, |r| r.train_s - r.data_s),
                    avg(&runs, |r| r.mean()) - avg(&b, |r| r.mean()),
                    t.map_or("-".into(), |t| format!("{:+.2}", t.effect_size)),
                    p_cell(t),
                )?;
            }
            writeln!(s)?;
        }
    }
    writeln!(s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use data::Metric;

    #[test]
    fn table_lays_out_ours_beside_the_paper() {
        let rec = |strategy: &str, sub: &str, seed: u64, v: f64| Record {
            task: "denoise".into(),
            model: "unet".into(),
            strategy: strategy.into(),
            subsampling: sub.into(),
            wu: 1000.0,
            wall_s: 3.5,
            metric: Metric::Mse,
            seed,
            train_s: 3.0,
            data_s: 0.0,
            per_image: vec![v - 0.01, v, v + 0.01],
            p_value: None,
        };
        let mut records = Vec::new();
        for (seed, diff) in [(0, 0.05), (1, 0.06), (2, 0.055)] {
            records.push(rec("single-paper", "-", seed, 0.2));
            records.push(rec("multiscale", "coarsen", seed, 0.2 + diff));
        }
        let md = markdown_task(Task::Denoise, &records).unwrap();
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines[2].starts_with("| Training strategy | Subsampling | #WU paper | #WU UNet | train s UNet | UNet ours | p seeds UNet |"), "{md}");
        let ms = lines
            .iter()
            .find(|l| l.starts_with("| multiscale |"))
            .unwrap();
        // Differences over seeds 0.05, 0.06, 0.055: t = 19.05, df 2, p = 0.0027.
        assert!(
            ms.contains("| 1k | 3.0 | 0.2550 ± 0.0050** | 0.003 |"),
            "{ms}"
        );
        assert!(ms.ends_with("| 0.1417* | | | | | | 0.0943* |"), "{ms}");
        let sp = lines
            .iter()
            .find(|l| l.starts_with("| single-paper |"))
            .unwrap();
        assert!(sp.contains("| 0.2000 ± 0.0000 | - | - |"), "{sp}");
        // Paper rows without our runs still show the paper's numbers.
        assert!(md.contains("| full-multiscale | crop | 28.7k |"), "{md}");
        // Every row has the same number of cells as the header.
        let cells = |l: &str| l.matches('|').count();
        assert!(
            lines[2..]
                .iter()
                .filter(|l| l.starts_with('|'))
                .all(|l| cells(l) == cells(lines[2])),
            "{md}"
        );
    }

    #[test]
    fn ratios_give_the_models_share_of_the_time_beside_the_whole() {
        let rec = |strategy: &str, sub: &str, train_s: f64, data_s: f64| Record {
            task: "denoise".into(),
            model: "unet".into(),
            strategy: strategy.into(),
            subsampling: sub.into(),
            wu: 100.0,
            wall_s: 5.0,
            metric: Metric::Mse,
            seed: 0,
            train_s,
            data_s,
            per_image: vec![0.1, 0.2, 0.3],
            p_value: None,
        };
        let records = [
            rec("single-equal-wu", "-", 2.0, 0.5),
            rec("full-multiscale", "coarsen", 3.0, 1.5),
        ];
        let md = markdown_ratios(Task::Denoise, &records).unwrap();
        // Time 3.0 / 2.0; less drawing batches, 1.5 / 1.5.
        assert!(md.contains("WU x1.000, time x1.50 (model x1.00)"), "{md}");
    }

    #[test]
    fn without_single_paper_the_markers_are_against_single_equal_wu() {
        let rec = |strategy: &str, sub: &str, seed: u64, v: f64| Record {
            task: "deblur".into(),
            model: "resnet".into(),
            strategy: strategy.into(),
            subsampling: sub.into(),
            wu: 100.0,
            wall_s: 1.0,
            metric: Metric::Mse,
            seed,
            train_s: 1.0,
            data_s: 0.0,
            per_image: vec![v - 0.01, v, v + 0.01],
            p_value: None,
        };
        let mut records = Vec::new();
        for (seed, diff) in [(0, 0.05), (1, 0.06), (2, 0.055)] {
            records.push(rec("single-equal-wu", "-", seed, 0.2));
            records.push(rec("full-multiscale", "coarsen", seed, 0.2 + diff));
        }
        let md = markdown_task(Task::Deblur, &records).unwrap();
        assert!(md.contains("markers against `single-equal-wu`"), "{md}");
        let fmg = md
            .lines()
            .find(|l| l.starts_with("| full-multiscale | coarsen |"))
            .unwrap();
        assert!(fmg.contains("| 0.2550 ± 0.0050** | 0.003 |"), "{fmg}");
        let base = md
            .lines()
            .find(|l| l.starts_with("| single-equal-wu |"))
            .unwrap();
        assert!(base.contains("| 0.2000 ± 0.0000 | - | - |"), "{base}");
    }

    #[test]
    fn standard_protocol_trains_the_core_strategies_at_the_papers_mesh() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            common: Common,
        }
        let cli = Cli::try_parse_from(["t", "--standard"]).unwrap();
        assert_eq!(cli.common.protocol(), crate::reproduce::Protocol::Standard);
        for clash in [
            ["t", "--standard", "--full"],
            ["t", "--standard", "--quick"],
        ] {
            assert!(Cli::try_parse_from(clash).is_err(), "{clash:?}");
        }
        let standard = Preset::of(cli.common.protocol(), false);
        let printed = standard.scale_factors();
        assert!(printed.contains("protocol `standard`"), "{printed}");
        assert!(
            printed.contains("mesh 64x64 (paper 64x64, x1.00); levels L = 4 (paper 4)"),
            "{printed}"
        );
        for task in [Task::Denoise, Task::Deblur] {
            let labels: Vec<String> = specs(task, "unet", &standard, false)
                .unwrap()
                .iter()
                .map(|s| format!("{} {}", s.label, s.subsampling))
                .collect();
            assert_eq!(
                labels,
                [
                    "full-multiscale coarsen",
                    "multiscale coarsen",
                    "single-practical -",
                    "single-equal-wu -"
                ]
            );
        }
        // The quick protocol keeps all seven.
        assert_eq!(
            specs(Task::Deblur, "unet", &Preset::quick(), false)
                .unwrap()
                .len(),
            7
        );
    }

    #[test]
    fn full_protocol_prints_and_plans_the_papers_super_resolution_batches() {
        let full = Preset::full();
        assert!(
            full.scale_factors()
                .contains("super-resolution N0 = 8 (paper 8, x1.000)"),
            "{}",
            full.scale_factors()
        );
        let wu = |label: &str, sub: &str, task| {
            let s = specs(task, "espcn", &full, false)
                .unwrap()
                .into_iter()
                .find(|s| s.label == label && s.subsampling == sub)
                .unwrap();
            s.planned_wu(&full).unwrap()
        };
        // 001 Table 2, super-resolution: 30k / 4.6k / 7.9k (N0 = 8, 250 iterations, equal stages).
        assert_eq!(wu("single-paper", "-", Task::Superres), 30000.0);
        assert_eq!(wu("multiscale", "coarsen", Task::Superres), 4625.0);
        assert_eq!(wu("full-multiscale", "coarsen", Task::Superres), 7875.0);
        assert_eq!(wu("single-practical", "-", Task::Superres), 2000.0);
        // Denoising keeps N0 = 16: 480k / 74k / 28.7k.
        assert_eq!(wu("single-paper", "-", Task::Denoise), 480000.0);
        assert_eq!(wu("multiscale", "coarsen", Task::Denoise), 74000.0);
        assert_eq!(wu("full-multiscale", "coarsen", Task::Denoise), 28750.0);
    }

    #[test]
    fn recipes_add_their_rows() {
        let out = std::env::temp_dir().join(format!("xtask-table2-recipes-{}", std::process::id()));
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
            tasks: vec![Task::Denoise],
            models: vec!["resnet".into()],
            recipes: true,
            smoke: true,
        };
        run(args, &crate::common::test_context()).unwrap();
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 7 + 6, "{csv}");
        for row in [
            "multiscale+noise-consistent,coarsen",
            "multiscale+adaptive,coarsen",
            "full-multiscale+adaptive,coarsen",
            "single-practical+mfc,-",
            "multiscale+mfc,coarsen",
            "full-multiscale+mfc,coarsen",
        ] {
            assert!(
                csv.contains(&format!(",denoise,resnet,{row},")),
                "{row}: {csv}"
            );
        }
        let cfg = std::fs::read_to_string(
            out.join("seed-0/denoise-resnet-multiscale+mfc-coarsen/config.toml"),
        )
        .unwrap();
        assert!(cfg.contains("conv = \"mfc\""), "{cfg}");
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        assert!(md.contains("| multiscale+adaptive | coarsen |"), "{md}");
        std::fs::remove_dir_all(&out).ok();
    }

    #[test]
    fn smoke_preset_writes_every_row_and_reuses_finished_runs() {
        let out = std::env::temp_dir().join(format!("xtask-table2-{}", std::process::id()));
        std::fs::remove_dir_all(&out).ok();
        let args = || Args {
            common: Common {
                quick: false,
                standard: false,
                full: false,
                out: Some(out.clone()),
                seed: 0,
                seeds: 1,
            },
            tasks: Task::ALL.to_vec(),
            models: vec![],
            recipes: false,
            smoke: true,
        };
        let ctx = crate::common::test_context();
        run(args(), &ctx).unwrap();
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "seed,task,model,strategy,subsampling,wu,wall_s,train_s,data_s,metric,value,p_value"
        );
        assert_eq!(lines.len(), 1 + 4 * 2 * 7, "{csv}");
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        for task in Task::ALL {
            for m in models(task) {
                for (strategy, sub) in OUR_ROWS {
                    let row = format!("0,{},{m},{strategy},{sub},", task.name());
                    let line = lines
                        .iter()
                        .find(|l| l.starts_with(&row))
                        .unwrap_or_else(|| panic!("no {row} in {csv}"));
                    let cells: Vec<&str> = line.split(',').collect();
                    assert_eq!(cells.len(), 12, "{line}");
                    assert!(
                        cells[5].parse::<f64>().unwrap() > 0.0
                            && cells[10].parse::<f64>().unwrap().is_finite(),
                        "{line}"
                    );
                    let (wall, train, data): (f64, f64, f64) = (
                        cells[6].parse().unwrap(),
                        cells[7].parse().unwrap(),
                        cells[8].parse().unwrap(),
                    );
                    assert!(train > 0.0 && train <= wall, "{line}");
                    assert!((0.0..=train).contains(&data), "{line}");
                    // p-values against single-paper on every other row.
                    assert_eq!(cells[11].is_empty(), strategy == "single-paper", "{line}");
                    let run = RunSpec {
                        task,
                        model: m.into(),
                        label: strategy.into(),
                        subsampling: sub.into(),
                        strategy: StrategyKind::Single,
                        levels: 2,
                        single_batch: None,
                        iterations: 1,
                        tag: String::new(),
                        recipe: Recipe::Plain,
                    };
                    assert!(
                        out.join("seed-0")
                            .join(run.dir_name())
                            .join("final.safetensors")
                            .exists(),
                        "{}",
                        run.dir_name()
                    );
                }
                assert!(out
                    .join(format!("samples-{}-{m}.png", task.name()))
                    .exists());
                assert!(out
                    .join(format!("{}-{m}-val_loss_vs_wu.png", task.name()))
                    .exists());
                assert!(out
                    .join(format!("{}-{m}-val_loss_vs_time.png", task.name()))
                    .exists());
            }
            assert!(md.contains(&format!("### {}", task.name())), "{md}");
        }
        assert_eq!(md.matches("| full-multiscale | both |").count(), 4, "{md}");
        // A rerun reuses every finished run: the same numbers.
        run(args(), &ctx).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("results.csv")).unwrap(),
            csv
        );
        // A run finished under another specification is trained again, not mixed in.
        let outcome = out.join("seed-0/denoise-unet-multiscale-coarsen/outcome.json");
        let text = std::fs::read_to_string(&outcome).unwrap();
        let stale: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut stale = stale.as_object().unwrap().clone();
        stale.insert("spec".into(), "code 0\nseed 7".into());
        std::fs::write(&outcome, serde_json::to_string(&stale).unwrap()).unwrap();
        run(
            Args {
                tasks: vec![Task::Denoise],
                models: vec!["unet".into()],
                ..args()
            },
            &ctx,
        )
        .unwrap();
        let again: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&outcome).unwrap()).unwrap();
        assert!(
            again["spec"]
                .as_str()
                .unwrap()
                .contains(crate::reproduce::code_version()),
            "{again}"
        );
        std::fs::remove_dir_all(&out).ok();
    }
}
