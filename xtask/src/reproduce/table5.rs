//! `cargo xtask reproduce table5`: test error at fixed #WU budgets (001 Table 5), single-scale
//! (batch N0) against multiscale and full-multiscale (coarsening), optionally with the
//! multiscale recipes, for each chosen task and model (001: denoising with the UNet). Every run
//! is trained to its own budget (its learning-rate schedule ends there) from the same initial
//! weights and scored on the same degraded test images; `results.md` adds how stable the
//! ranking of the strategies is from one budget to the next.

use crate::report::plot::{line_plot, Axes, Series};
use crate::reproduce::runs::{
    avg, compare, recipe_specs, summary, test_set, train_and_score, Preset, Progress, Recipe,
    RunSpec,
};
use crate::reproduce::table2::{display_model, models};
use crate::reproduce::{
    compare_over_seeds, fmt_wu, marker, mean_sd, seed_cell, seed_dir, Common, Protocol, Record,
};
use anyhow::{Context as _, Result};
use data::Task;
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
        default_value = "denoise",
        value_parser = crate::common::choice(Task::ALL, Task::name)
    )]
    pub tasks: Vec<Task>,
    /// Models to run (comma separated; default the first of each task's Table 2 pair: unet, or
    /// espcn for super-resolution). Each must belong to every chosen task's pair (unet/resnet,
    /// espcn/resnet for super-resolution).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Also train the multiscale recipes of `table2 --recipes` at every budget: multiscale with
    /// the noise-consistent restriction (denoising), multiscale and full-multiscale with
    /// adaptive batches, and single-practical, multiscale and full-multiscale with mesh-free
    /// convolutions (not for super-resolution).
    #[arg(long)]
    pub recipes: bool,
    /// #WU budgets (comma separated, sorted ascending; default: the protocol's, scaled for
    /// super-resolution), the same for every task.
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

/// A strategy row: strategy label and recipe on top.
type Row = (&'static str, Recipe);

/// The rows every task trains, in table order; the baseline first.
const STRATEGIES: [Row; 3] = [
    ("single-practical", Recipe::Plain),
    ("multiscale", Recipe::Plain),
    ("full-multiscale", Recipe::Plain),
];

/// The strategy label of `row` as in `results.csv` (`multiscale+mfc`, ...).
fn row_name(row: Row) -> String {
    format!("{}{}", row.0, row.1.suffix())
}

/// The rows of `task`: [`STRATEGIES`], then with `recipes` those of [`recipe_specs`].
fn rows(task: Task, recipes: bool) -> Vec<Row> {
    let mut rows = STRATEGIES.to_vec();
    if recipes {
        rows.extend(recipe_specs(task));
    }
    rows
}

/// Default budgets of each protocol for `task`: the protocol's list for denoising, deblurring
/// and inpainting; for super-resolution scaled by its single-practical run's #WU against
/// theirs (`sr_n0 sr_iterations / (n0 iterations)`) and rounded.
fn budgets(preset: &Preset, task: Task) -> Vec<f64> {
    let base = match preset.protocol {
        Protocol::Smoke => vec![6.0, 12.0],
        Protocol::Quick => vec![100.0, 200.0, 400.0, 800.0],
        Protocol::Standard => vec![500.0, 1000.0, 2000.0, 4000.0],
        Protocol::Full => PAPER.iter().map(|p| p.0 * 1000.0).collect(),
    };
    let work = |t| (preset.task_n0(t) * preset.task_iterations(t)) as f64;
    let scale = work(task) / work(Task::Denoise);
    base.into_iter()
        .map(|b| (b * scale).round().max(1.0))
        .collect()
}

/// The run of `row` for `task` and `model` with `iterations`, tagged `tag`.
fn spec(
    task: Task,
    model: &str,
    row: Row,
    preset: &Preset,
    iterations: usize,
    tag: String,
) -> Result<RunSpec> {
    RunSpec::new(task, model, row.0, row.1, preset, iterations, tag)
}

/// The most iterations of `row` (task `task`, model `model`) whose planned #WU stays within
/// `budget` (at least 1).
fn iterations_for(
    task: Task,
    model: &str,
    row: Row,
    preset: &Preset,
    budget: f64,
) -> Result<usize> {
    let wu = |i| spec(task, model, row, preset, i, String::new())?.planned_wu(preset);
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

/// What table5 trains for one task and model: its budgets and strategy rows.
#[derive(Debug, Clone)]
struct Pair {
    task: Task,
    model: &'static str,
    budgets: Vec<f64>,
    rows: Vec<Row>,
}

/// The (task, model) pairs of `args` with their budgets and rows, checked before any training:
/// every model belongs to every task's Table 2 pair, every budget is positive and affords one
/// iteration of every row.
fn plan(args: &Args, preset: &Preset) -> Result<Vec<Pair>> {
    let mut tasks: Vec<Task> = Vec::new();
    for &t in &args.tasks {
        if !tasks.contains(&t) {
            tasks.push(t);
        }
    }
    anyhow::ensure!(!tasks.is_empty(), "--tasks: no task given");
    let mut pairs = Vec::new();
    for task in tasks {
        let pair = models(task);
        let chosen: Vec<&'static str> = if args.models.is_empty() {
            vec![pair[0]]
        } else {
            let mut chosen = Vec::new();
            for m in &args.models {
                let m = pair.iter().copied().find(|p| p == m).with_context(|| {
                    format!(
                        "--models: {m:?} is not a model of {} (expected {}; run other tasks separately)",
                        task.name(),
                        pair.join(" or ")
                    )
                })?;
                if !chosen.contains(&m) {
                    chosen.push(m);
                }
            }
            chosen
        };
        let mut budgets = if args.budgets.is_empty() {
            budgets(preset, task)
        } else {
            args.budgets.clone()
        };
        anyhow::ensure!(
            budgets.iter().all(|b| b.is_finite() && *b > 0.0),
            "--budgets {budgets:?}: every budget must be a positive number of #WU"
        );
        // Neighbouring budgets are neighbours in size.
        budgets.sort_by(f64::total_cmp);
        budgets.dedup();
        let rows = rows(task, args.recipes);
        for model in chosen {
            for &budget in &budgets {
                for &row in &rows {
                    let one =
                        spec(task, model, row, preset, 1, String::new())?.planned_wu(preset)?;
                    anyhow::ensure!(
                        one <= budget,
                        "--budgets: {budget} #WU is less than one {} iteration of {} ({one} #WU)",
                        row_name(row),
                        task.name()
                    );
                }
            }
            pairs.push(Pair {
                task,
                model,
                budgets: budgets.clone(),
                rows: rows.clone(),
            });
        }
    }
    Ok(pairs)
}

pub fn run(args: Args, ctx: &crate::common::Context) -> Result<()> {
    let preset = Preset::of(args.common.protocol(), args.smoke);
    let seeds = args.common.seed_list()?;
    let pairs = plan(&args, &preset)?;
    let dir = args.common.out_dir("table5")?;
    let mut progress = Progress::new(&dir)?;
    println!("{}", preset.scale_factors());
    let total: usize = seeds.len()
        * pairs
            .iter()
            .map(|p| p.budgets.len() * p.rows.len())
            .sum::<usize>();
    let mut done: Vec<(f64, Record)> = Vec::new();
    let mut histories = Vec::new();
    for &seed in &seeds {
        let seed_dir = seed_dir(&dir, seed)?;
        let mut tasks: Vec<Task> = pairs.iter().map(|p| p.task).collect();
        tasks.dedup();
        for task in tasks {
            let test = test_set(task, &preset, seed, &ctx.device)?;
            for pair in pairs.iter().filter(|p| p.task == task) {
                for &budget in &pair.budgets {
                    for &row in &pair.rows {
                        let it = iterations_for(task, pair.model, row, &preset, budget)?;
                        let spec = spec(task, pair.model, row, &preset, it, format!("b{budget}"))?;
                        progress.line(&format!(
                            "[{}/{total}] seed {seed}, budget {budget} #WU: training {} ({it} iterations)",
                            done.len() + 1,
                            spec.dir_name()
                        ));
                        let f =
                            train_and_score(&spec, &preset, seed, &seed_dir, &test, &ctx.device)?;
                        progress.line(&summary(&f));
                        histories.push((seed, spec.dir_name(), f.history.clone()));
                        done.push((budget, f.record));
                    }
                }
                write_results(&dir, &preset, &seeds, &pairs, &done)?;
            }
        }
    }
    crate::reproduce::runs::append_variance_note(&dir, &histories)?;
    progress.line(&format!(
        "done: {} runs in {:.1} s; results in {}",
        done.len(),
        progress.elapsed_s(),
        dir.display()
    ));
    Ok(())
}

/// The runs of `pair` for `row` at `budget`, by seed.
fn runs_of<'a>(done: &'a [(f64, Record)], pair: &Pair, row: &str, budget: f64) -> Vec<&'a Record> {
    let mut v: Vec<&Record> = done
        .iter()
        .filter(|(b, r)| {
            *b == budget && r.task == pair.task.name() && r.model == pair.model && r.strategy == row
        })
        .map(|(_, r)| r)
        .collect();
    v.sort_by_key(|r| r.seed);
    v
}

/// `results.csv` (`seed,task,model,budget,strategy,wu,wall_s,train_s,metric,value,p_value`, p of
/// the per-patch test against single-practical of the same seed, task, model and budget),
/// `results.md` (per task and model: strategies x budgets, mean ± sd over seeds with markers
/// and the measured #WU, then the ranking at each budget and its flips) and one
/// `TASK-MODEL-mse_vs_wu.png` (test metric against #WU) per pair.
fn write_results(
    dir: &Path,
    preset: &Preset,
    seeds: &[u64],
    pairs: &[Pair],
    done: &[(f64, Record)],
) -> Result<()> {
    let mut csv =
        String::from("seed,task,model,budget,strategy,wu,wall_s,train_s,metric,value,p_value\n");
    let mut md = format!(
        "# 001 Table 5, reproduced ({} protocol, seeds {}): test metric at fixed #WU budgets\n\n{}\n\
         Each run trains to its own budget (its iterations are the most whose planned #WU fits; the learning-rate schedule ends there), from the same initial weights per seed and task-model pair, and is scored on the same degraded test images. Cells: test metric, mean ± sd over seeds, and the measured #WU (mean over seeds); `*`/`**`: paired two-sided t-test against single-practical at the same budget (over seeds when there are two or more, else over test patches) not significant / significant at 5%.\n\n",
        preset.name(),
        seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        preset.scale_factors()
    );
    let mut summaries = Vec::new();
    for pair in pairs {
        let base_name = row_name(STRATEGIES[0]);
        for &budget in &pair.budgets {
            let base = runs_of(done, pair, &base_name, budget);
            for &row in &pair.rows {
                let name = row_name(row);
                for r in runs_of(done, pair, &name, budget) {
                    let t = if name == base_name {
                        None
                    } else {
                        base.iter()
                            .find(|b| b.seed == r.seed)
                            .and_then(|b| compare(r, b))
                    };
                    writeln!(
                        csv,
                        "{},{},{},{budget},{},{:.3},{:.2},{:.2},{},{:.6},{}",
                        r.seed,
                        r.task,
                        r.model,
                        r.strategy,
                        r.wu,
                        r.wall_s,
                        r.train_s,
                        r.metric.name(),
                        r.mean(),
                        t.map_or(String::new(), |t| format!("{:.6}", t.p_value))
                    )?;
                }
            }
        }
        if pair
            .budgets
            .iter()
            .all(|&b| runs_of(done, pair, &base_name, b).is_empty())
        {
            continue;
        }
        let (section, line) = markdown_pair(pair, done)?;
        md.push_str(&section);
        summaries.push(line);
        plot_pair(dir, pair, done)?;
    }
    writeln!(md, "## Ranking stability\n")?;
    for line in summaries {
        writeln!(md, "- {line}")?;
    }
    if seeds.len() < 2 {
        writeln!(
            md,
            "\nOne seed: there is no seed-to-seed sd, so every swap counts as larger than one sd."
        )?;
    }
    crate::common::write_atomic(&dir.join("results.csv"), csv.as_bytes())?;
    crate::common::write_atomic(&dir.join("results.md"), md.as_bytes())
}

/// The `results.md` section of one task-model pair (the table, the paper's Table 5 for
/// denoising with the UNet, the rankings) and its ranking summary line.
fn markdown_pair(pair: &Pair, done: &[(f64, Record)]) -> Result<(String, String)> {
    let metric = pair.task.metric();
    let (arrow, better) = if metric.higher_is_better() {
        ("↑", "higher")
    } else {
        ("↓", "lower")
    };
    let title = format!("{}, {}", pair.task.name(), display_model(pair.model));
    let mut s = String::new();
    writeln!(
        s,
        "## {title} — test {} ({arrow}) at fixed #WU budgets\n",
        metric.name().to_uppercase()
    )?;
    write!(s, "| strategy |")?;
    for &b in &pair.budgets {
        write!(s, " {} #WU |", fmt_wu(b))?;
    }
    writeln!(s, "\n|---|{}", "---|".repeat(pair.budgets.len()))?;
    let base_name = row_name(STRATEGIES[0]);
    let names: Vec<String> = pair.rows.iter().map(|&r| row_name(r)).collect();
    let mut cells: Vec<Vec<Option<Cell>>> = Vec::new();
    for name in &names {
        write!(s, "| {name} |")?;
        let mut row_cells = Vec::new();
        for &budget in &pair.budgets {
            let rs = runs_of(done, pair, name, budget);
            if rs.is_empty() {
                write!(s, " |")?;
                row_cells.push(None);
                continue;
            }
            let m = if *name == base_name {
                ""
            } else {
                let base = runs_of(done, pair, &base_name, budget);
                marker(compare_over_seeds(&rs, &base).primary().map(|t| t.p_value))
            };
            write!(
                s,
                " {}{m} ({} #WU) |",
                seed_cell(&rs),
                fmt_wu(avg(&rs, |r| r.wu))
            )?;
            let (mean, sd) = mean_sd(&rs.iter().map(|r| r.mean()).collect::<Vec<_>>());
            row_cells.push(Some(Cell { mean, sd }));
        }
        writeln!(s)?;
        cells.push(row_cells);
    }
    writeln!(s)?;
    if pair.task == Task::Denoise && pair.model == "unet" {
        writeln!(s, "001 Table 5 (denoising, UNet; its budgets in its own units, beside ours in order):\n\n| our budget | single-practical | multiscale | paper budget | paper single-scale | paper multiscale |\n|---|---|---|---|---|---|")?;
        for k in 0..pair.budgets.len().max(PAPER.len()) {
            match pair.budgets.get(k) {
                Some(&b) => {
                    let cell = |i: usize| {
                        let rs = runs_of(done, pair, &names[i], b);
                        if rs.is_empty() {
                            String::new()
                        } else {
                            seed_cell(&rs)
                        }
                    };
                    write!(s, "| {} | {} | {} |", fmt_wu(b), cell(0), cell(1))?
                }
                None => write!(s, "| | | |")?,
            }
            match PAPER.get(k) {
                Some(p) => writeln!(s, " {} | {:.4} | {:.4} |", p.0, p.1, p.2)?,
                None => writeln!(s, " | | |")?,
            }
        }
        writeln!(s)?;
    }
    let ranking = Ranking::of(&cells, metric.higher_is_better());
    writeln!(
        s,
        "Ranking by mean test {} ({better} is better), best first:\n",
        metric.name().to_uppercase()
    )?;
    for (k, order) in ranking.orders.iter().enumerate() {
        let list: Vec<String> = order
            .iter()
            .map(|&i| {
                format!(
                    "{} {:.4}",
                    names[i],
                    cells[i][k].map_or(f64::NAN, |c| c.mean)
                )
            })
            .collect();
        writeln!(s, "- {} #WU: {}", fmt_wu(pair.budgets[k]), list.join(" > "))?;
    }
    writeln!(s, "\nBetween neighbouring budgets (a swap is larger than one sd when the two strategies' gap exceeds the mean seed-to-seed sd of both at both budgets):\n")?;
    for (k, swaps) in ranking.swaps.iter().enumerate() {
        write!(
            s,
            "- {} → {} #WU: ",
            fmt_wu(pair.budgets[k]),
            fmt_wu(pair.budgets[k + 1])
        )?;
        if swaps.is_empty() {
            writeln!(s, "identical")?;
            continue;
        }
        let list: Vec<String> = swaps
            .iter()
            .map(|w| {
                format!(
                    "{} / {} (gaps {:.4} then {:.4}, sd {:.4}: {})",
                    names[w.ahead],
                    names[w.behind],
                    w.gaps[0],
                    w.gaps[1],
                    w.sd,
                    if w.beyond_noise() {
                        "larger than one sd"
                    } else {
                        "within one sd"
                    }
                )
            })
            .collect();
        writeln!(s, "{} swapped: {}", swaps.len(), list.join("; "))?;
    }
    let line = format!("{title}: {}", ranking.summary());
    writeln!(s, "\n**{line}**\n")?;
    Ok((s, line))
}

/// `DIR/TASK-MODEL-mse_vs_wu.png`: the test metric against the measured #WU, one series per
/// strategy (mean over seeds).
fn plot_pair(dir: &Path, pair: &Pair, done: &[(f64, Record)]) -> Result<()> {
    let metric = pair.task.metric();
    let series: Vec<Series> = pair
        .rows
        .iter()
        .map(|&row| {
            let name = row_name(row);
            let points = pair
                .budgets
                .iter()
                .map(|&b| runs_of(done, pair, &name, b))
                .filter(|rs| !rs.is_empty())
                .map(|rs| (avg(&rs, |r| r.wu), avg(&rs, |r| r.mean())))
                .collect();
            Series { name, points }
        })
        .collect();
    let upper = metric.name().to_uppercase();
    let title = format!(
        "test {upper} at fixed #WU budgets ({}, {})",
        pair.task.name(),
        display_model(pair.model)
    );
    let y_label = format!("test {upper}");
    let axes = Axes {
        title: &title,
        x_label: "#WU",
        y_label: &y_label,
        log_y: !metric.higher_is_better(),
    };
    line_plot(
        &dir.join(format!("{}-{}-mse_vs_wu.png", pair.task.name(), pair.model)),
        &axes,
        &series,
    )
}

/// One strategy's test metric at one budget: mean and sd over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    pub mean: f64,
    pub sd: f64,
}

/// Two strategies whose order differs between neighbouring budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct Swap {
    /// Row ranked ahead of [`Swap::behind`] at the first budget, behind it at the second.
    pub ahead: usize,
    pub behind: usize,
    /// Absolute difference of their means at the first and at the second budget.
    pub gaps: [f64; 2],
    /// Seed-to-seed sd of the two: the mean of their four sds at the two budgets.
    pub sd: f64,
}

impl Swap {
    /// True when the swap is larger than one sd: the gap exceeds [`Swap::sd`] at both budgets
    /// (a reversal that noise alone does not explain).
    pub fn beyond_noise(&self) -> bool {
        self.gaps[0].min(self.gaps[1]) > self.sd
    }
}

/// The ranking of strategies at each budget and its changes between neighbouring budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// Per budget: the rows with a finite mean, best first (ties in row order).
    pub orders: Vec<Vec<usize>>,
    /// Per pair of neighbouring budgets `(k, k + 1)`: every pair of rows (present at both)
    /// whose order is reversed, in the first budget's order; empty when the ranking is
    /// identical (up to ties).
    pub swaps: Vec<Vec<Swap>>,
}

/// Means equal to about 6 significant digits (the test metrics' f32 precision): a tie, which
/// never counts as a swap.
fn tie(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
}

impl Ranking {
    /// Ranks `cells[row][budget]` (`None`: not run) by mean, best first: the highest when
    /// `higher_is_better` (SSIM), else the lowest (MSE). Two rows swap between neighbouring
    /// budgets when each is strictly ahead at one of them (ties, see [`tie`], are no swap).
    pub fn of(cells: &[Vec<Option<Cell>>], higher_is_better: bool) -> Self {
        let budgets = cells.iter().map(Vec::len).max().unwrap_or(0);
        let cell = |i: usize, k: usize| {
            cells[i]
                .get(k)
                .copied()
                .flatten()
                .filter(|c| c.mean.is_finite())
        };
        let orders: Vec<Vec<usize>> = (0..budgets)
            .map(|k| {
                let mut order: Vec<usize> =
                    (0..cells.len()).filter(|&i| cell(i, k).is_some()).collect();
                let key = |i: usize| {
                    let m = cell(i, k).map_or(f64::NAN, |c| c.mean);
                    if higher_is_better {
                        -m
                    } else {
                        m
                    }
                };
                order.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
                order
            })
            .collect();
        let swaps = (1..budgets)
            .map(|k| {
                let pos = |i: usize, k: usize| orders[k].iter().position(|&j| j == i);
                let mut swaps = Vec::new();
                for (x, &a) in orders[k - 1].iter().enumerate() {
                    for &b in &orders[k - 1][x + 1..] {
                        let (Some(pa), Some(pb)) = (pos(a, k), pos(b, k)) else {
                            continue;
                        };
                        let (a0, b0, a1, b1) = (
                            cell(a, k - 1).unwrap(),
                            cell(b, k - 1).unwrap(),
                            cell(a, k).unwrap(),
                            cell(b, k).unwrap(),
                        );
                        if pa < pb || tie(a0.mean, b0.mean) || tie(a1.mean, b1.mean) {
                            continue;
                        }
                        swaps.push(Swap {
                            ahead: a,
                            behind: b,
                            gaps: [(a0.mean - b0.mean).abs(), (a1.mean - b1.mean).abs()],
                            sd: (a0.sd + b0.sd + a1.sd + b1.sd) / 4.0,
                        });
                    }
                }
                swaps
            })
            .collect();
        Self { orders, swaps }
    }

    /// Neighbouring budget pairs whose ranking differs.
    pub fn flips(&self) -> usize {
        self.swaps.iter().filter(|s| !s.is_empty()).count()
    }

    /// Neighbouring budget pairs with at least one swap larger than one sd.
    pub fn flips_beyond_noise(&self) -> usize {
        self.swaps
            .iter()
            .filter(|s| s.iter().any(Swap::beyond_noise))
            .count()
    }

    /// "ranking flips between neighbouring budgets: K of M pairs (J of them larger than one sd)".
    pub fn summary(&self) -> String {
        format!(
            "ranking flips between neighbouring budgets: {} of {} pairs ({} of them larger than one sd)",
            self.flips(),
            self.swaps.len(),
            self.flips_beyond_noise()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(rows: &[&[(f64, f64)]]) -> Vec<Vec<Option<Cell>>> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .map(|&(mean, sd)| Some(Cell { mean, sd }))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn ranking_without_flips() {
        let c = cells(&[
            &[(0.30, 0.01), (0.20, 0.01), (0.10, 0.01)],
            &[(0.25, 0.01), (0.15, 0.01), (0.05, 0.01)],
        ]);
        let r = Ranking::of(&c, false);
        assert_eq!(r.orders, vec![vec![1, 0]; 3]);
        assert_eq!(r.swaps, vec![vec![], vec![]]);
        assert_eq!(
            r.summary(),
            "ranking flips between neighbouring budgets: 0 of 2 pairs (0 of them larger than one sd)"
        );
    }

    #[test]
    fn ranking_flip_within_noise() {
        // Row 0 ahead by 0.002 at the first budget, behind by 0.001 at the second; sd 0.01.
        let c = cells(&[
            &[(0.100, 0.01), (0.081, 0.01)],
            &[(0.102, 0.01), (0.080, 0.01)],
            &[(0.200, 0.01), (0.150, 0.01)],
        ]);
        let r = Ranking::of(&c, false);
        assert_eq!(r.orders, vec![vec![0, 1, 2], vec![1, 0, 2]]);
        assert_eq!(r.swaps[0].len(), 1);
        let w = &r.swaps[0][0];
        assert_eq!((w.ahead, w.behind), (0, 1));
        assert!((w.gaps[0] - 0.002).abs() < 1e-12 && (w.gaps[1] - 0.001).abs() < 1e-12);
        assert!((w.sd - 0.01).abs() < 1e-12 && !w.beyond_noise());
        assert_eq!((r.flips(), r.flips_beyond_noise()), (1, 0));
        assert!(r
            .summary()
            .ends_with("1 of 1 pairs (0 of them larger than one sd)"));
    }

    #[test]
    fn ranking_flip_beyond_noise() {
        // Gaps 0.05 and 0.04 against a mean sd of (0.01 + 0.02 + 0.01 + 0.02) / 4 = 0.015.
        let c = cells(&[
            &[(0.10, 0.01), (0.12, 0.01), (0.11, 0.01)],
            &[(0.15, 0.02), (0.08, 0.02), (0.07, 0.02)],
        ]);
        let r = Ranking::of(&c, false);
        assert_eq!(r.swaps[0].len(), 1);
        let w = &r.swaps[0][0];
        assert!((w.sd - 0.015).abs() < 1e-12 && w.beyond_noise(), "{w:?}");
        // The second pair of budgets keeps the order.
        assert!(r.swaps[1].is_empty());
        assert_eq!((r.flips(), r.flips_beyond_noise()), (1, 1));
        assert!(r
            .summary()
            .ends_with("1 of 2 pairs (1 of them larger than one sd)"));
    }

    #[test]
    fn ranking_follows_the_metric_direction_and_skips_missing_cells() {
        let c = cells(&[&[(0.80, 0.0), (0.90, 0.0)], &[(0.85, 0.0), (0.86, 0.0)]]);
        // SSIM: higher first; row 1 leads at the first budget, row 0 at the second.
        let ssim = Ranking::of(&c, true);
        assert_eq!(ssim.orders, vec![vec![1, 0], vec![0, 1]]);
        assert_eq!((ssim.swaps[0][0].ahead, ssim.swaps[0][0].behind), (1, 0));
        // sd 0 (one seed): every swap is larger than one sd.
        assert_eq!(ssim.flips_beyond_noise(), 1);
        // MSE on the same numbers: lower first.
        let mse = Ranking::of(&c, false);
        assert_eq!(mse.orders, vec![vec![0, 1], vec![1, 0]]);
        // A row missing at a budget is left out of that ranking and of its swaps.
        let mut gap = c.clone();
        gap[1][1] = None;
        let r = Ranking::of(&gap, true);
        assert_eq!(r.orders, vec![vec![1, 0], vec![0]]);
        assert_eq!(r.flips(), 0);
        // A tie at either budget (equal to f32 precision) is no swap.
        let tied = cells(&[&[(0.5, 0.0), (0.4, 0.0)], &[(0.5, 0.0), (0.4 - 1e-9, 0.0)]]);
        let r = Ranking::of(&tied, false);
        assert_eq!(r.orders[1], [1, 0]);
        assert_eq!(r.flips(), 0);
    }

    fn args(out: &Path, tasks: Vec<Task>, models: Vec<&str>, recipes: bool) -> Args {
        Args {
            common: Common {
                quick: false,
                standard: false,
                full: false,
                out: Some(out.to_path_buf()),
                seed: 0,
                seeds: 1,
            },
            tasks,
            models: models.into_iter().map(String::from).collect(),
            recipes,
            budgets: vec![],
            smoke: true,
        }
    }

    #[test]
    fn budgets_are_spent_for_every_task_and_row() {
        let preset = Preset::smoke();
        for task in Task::ALL {
            let model = models(task)[0];
            for row in rows(task, true) {
                let it = iterations_for(task, model, row, &preset, 12.0).unwrap();
                let wu = |i| {
                    spec(task, model, row, &preset, i, String::new())
                        .unwrap()
                        .planned_wu(&preset)
                        .unwrap()
                };
                assert!(
                    wu(it) <= 12.0 && wu(it + 1) > 12.0,
                    "{task} {}: {it}",
                    row_name(row)
                );
            }
        }
        // Super-resolution budgets follow its N0 and iterations.
        let full = Preset::full();
        assert_eq!(budgets(&full, Task::Denoise)[0], 10000.0);
        assert_eq!(budgets(&full, Task::Superres)[0], 625.0);
        assert_eq!(
            budgets(&Preset::quick(), Task::Inpaint),
            [100.0, 200.0, 400.0, 800.0]
        );
    }

    #[test]
    fn unknown_models_and_impossible_budgets_fail_before_training() {
        let out = std::env::temp_dir().join(format!("xtask-table5-err-{}", std::process::id()));
        std::fs::remove_dir_all(&out).ok();
        let ctx = crate::common::test_context();
        let e = format!(
            "{:#}",
            run(args(&out, vec![Task::Denoise], vec!["espcn"], false), &ctx).unwrap_err()
        );
        assert!(e.contains("\"espcn\" is not a model of denoise"), "{e}");
        let e = format!(
            "{:#}",
            run(
                args(
                    &out,
                    vec![Task::Denoise, Task::Superres],
                    vec!["unet"],
                    false
                ),
                &ctx
            )
            .unwrap_err()
        );
        assert!(e.contains("\"unet\" is not a model of superres"), "{e}");
        // A budget below one iteration of any row (here a recipe's) is refused.
        let mut a = args(&out, vec![Task::Deblur], vec![], true);
        a.budgets = vec![12.0, 0.01];
        let e = format!("{:#}", run(a, &ctx).unwrap_err());
        assert!(
            e.contains("0.01 #WU is less than one single-practical iteration of deblur"),
            "{e}"
        );
        let mut a = args(&out, vec![Task::Denoise], vec![], false);
        a.budgets = vec![-1.0];
        let e = format!("{:#}", run(a, &ctx).unwrap_err());
        assert!(e.contains("positive"), "{e}");
        // Nothing was created, let alone trained.
        assert!(!out.exists());
    }

    #[test]
    fn smoke_run_writes_every_row_cell_and_file() {
        let out = std::env::temp_dir().join(format!("xtask-table5-{}", std::process::id()));
        std::fs::remove_dir_all(&out).ok();
        let a = args(&out, vec![Task::Denoise, Task::Deblur], vec!["unet"], true);
        run(a, &crate::common::test_context()).unwrap();
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "seed,task,model,budget,strategy,wu,wall_s,train_s,metric,value,p_value"
        );
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        let mut expected = 0;
        for task in [Task::Denoise, Task::Deblur] {
            let rows = rows(task, true);
            assert_eq!(rows.len(), if task == Task::Denoise { 9 } else { 8 });
            let section = md
                .split("\n## ")
                .find(|s| s.starts_with(&format!("{}, UNet", task.name())))
                .unwrap_or_else(|| panic!("no {task} section: {md}"));
            assert!(
                section.contains("| strategy | 6 #WU | 12 #WU |"),
                "{section}"
            );
            for row in rows {
                let name = row_name(row);
                for budget in [6, 12] {
                    let prefix = format!("0,{},unet,{budget},{name},", task.name());
                    let line = lines
                        .iter()
                        .find(|l| l.starts_with(&prefix))
                        .unwrap_or_else(|| panic!("no {prefix} in {csv}"));
                    let cells: Vec<&str> = line.split(',').collect();
                    assert_eq!(cells.len(), 11, "{line}");
                    let wu: f64 = cells[5].parse().unwrap();
                    assert!(wu > 0.0, "{line}");
                    assert_eq!(cells[8], "mse", "{line}");
                    assert!(cells[9].parse::<f64>().unwrap().is_finite(), "{line}");
                    assert_eq!(cells[10].is_empty(), name == "single-practical", "{line}");
                    expected += 1;
                }
                // A table row with a cell (value and #WU) per budget.
                let table_row = section
                    .lines()
                    .find(|l| l.starts_with(&format!("| {name} |")))
                    .unwrap_or_else(|| panic!("no row {name}: {section}"));
                assert_eq!(table_row.matches(" #WU) |").count(), 2, "{table_row}");
            }
            assert!(section.contains("- 6 #WU: "), "{section}");
            assert!(section.contains("- 6 → 12 #WU: "), "{section}");
            assert!(
                section.contains(&format!(
                    "**{}, UNet: ranking flips between neighbouring budgets: ",
                    task.name()
                )),
                "{section}"
            );
            assert_eq!(
                section.contains("001 Table 5 (denoising, UNet"),
                task == Task::Denoise,
                "{section}"
            );
            assert!(out
                .join(format!("{}-unet-mse_vs_wu.png", task.name()))
                .exists());
        }
        assert_eq!(lines.len(), 1 + expected, "{csv}");
        assert_eq!(expected, 2 * (9 + 8));
        assert!(md.contains("## Ranking stability\n"), "{md}");
        assert!(md.contains("Per-term variance ratios"), "{md}");
        // The smoke batches (N0 = 1) measure no ratios, but every multiscale run is listed.
        assert!(out.join("variance.csv").exists());
        assert!(
            md.contains("| 0 | deblur-unet-full-multiscale+mfc-coarsen-b12 |"),
            "{md}"
        );
        assert!(out
            .join("seed-0/denoise-unet-multiscale+noise-consistent-coarsen-b6/final.safetensors")
            .exists());
        std::fs::remove_dir_all(&out).ok();
    }
}
