//! `cargo xtask reproduce table2`: 001 Table 2 (every task x strategy x subsampling, with the
//! three single-scale baselines of SPEC section 7) and its `results.md`.

use crate::config::Task;
use crate::reproduce::{fmt_wu, marker, Common, Record};
use anyhow::Result;
use std::fmt::Write as _;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Tasks to run (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "denoise,deblur,inpaint,superres")]
    pub tasks: Vec<Task>,
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
        _ => ["unet", "resnet"],
    }
}

fn display_model(m: &str) -> &str {
    match m {
        "unet" => "UNet",
        "resnet" => "ResNet",
        "espcn" => "ESPCN",
        other => other,
    }
}

/// 001 Table 2, as printed (single-scale there is our `single-paper`).
pub fn paper(task: Task) -> [PaperRow; 5] {
    let row = |strategy, subsampling, wu, a: (f64, &'static str), b: (f64, &'static str)| PaperRow {
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

/// The `results.md` section of one task: our mean test metric (with the t-test marker against
/// `single-paper`) beside the paper's value, #WU and wall time, per model.
pub fn markdown_task(task: Task, records: &[Record]) -> Result<String> {
    let ms = models(task);
    let metric = task.metric();
    let arrow = if metric.higher_is_better() { "↑" } else { "↓" };
    let paper_rows = paper(task);
    let mut s = String::new();
    writeln!(s, "### {} — {} ({arrow})\n", task.name(), metric.name().to_uppercase())?;
    write!(s, "| Training strategy | Subsampling | #WU paper |")?;
    for m in ms {
        let m = display_model(m);
        write!(s, " #WU {m} | wall s {m} | {m} ours | {m} paper |")?;
    }
    writeln!(s)?;
    writeln!(s, "|{}", "---|".repeat(3 + 4 * ms.len()))?;
    for (strategy, sub) in OUR_ROWS {
        let paper_row = paper_rows.iter().find(|r| r.strategy == strategy && r.subsampling == sub);
        let found: Vec<Option<&Record>> = ms
            .iter()
            .map(|m| records.iter().find(|r| r.task == task.name() && &r.model == m && r.strategy == strategy && r.subsampling == sub))
            .collect();
        if paper_row.is_none() && found.iter().all(Option::is_none) {
            continue;
        }
        write!(s, "| {strategy} | {sub} | {} |", paper_row.map_or("", |r| r.wu))?;
        for (i, rec) in found.iter().enumerate() {
            match rec {
                Some(r) => write!(s, " {} | {:.1} | {:.4}{} |", fmt_wu(r.wu), r.wall_s, r.mean(), marker(r.p_value))?,
                None => write!(s, " | | |")?,
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

pub fn run(_args: Args, _ctx: &crate::common::Context) -> Result<()> {
    anyhow::bail!("reproduce table2 needs the training engine (mge/fmg), not wired yet")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Metric;

    #[test]
    fn table_lays_out_ours_beside_the_paper() {
        let rec = |strategy: &str, sub: &str, v: f64, p| Record {
            task: "denoise".into(),
            model: "unet".into(),
            strategy: strategy.into(),
            subsampling: sub.into(),
            wu: 1000.0,
            wall_s: 3.0,
            metric: Metric::Mse,
            per_image: vec![v],
            p_value: p,
        };
        let md = markdown_task(
            Task::Denoise,
            &[rec("single-paper", "-", 0.2, None), rec("multiscale", "coarsen", 0.25, Some(0.01))],
        )
        .unwrap();
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines[2].starts_with("| Training strategy | Subsampling | #WU paper | #WU UNet |"), "{md}");
        let ms = lines.iter().find(|l| l.starts_with("| multiscale |")).unwrap();
        assert!(ms.contains("| 1k | 3.0 | 0.2500** | 0.1417* |"), "{ms}");
        // Paper rows without our runs still show the paper's numbers.
        assert!(md.contains("| full-multiscale | crop | 28.7k |"), "{md}");
        // Every row has the same number of cells as the header.
        let cells = |l: &str| l.matches('|').count();
        assert!(lines[2..].iter().filter(|l| l.starts_with('|')).all(|l| cells(l) == cells(lines[2])), "{md}");
    }
}
