//! `cargo xtask reproduce NAME`: the experiments of 001 (SPEC section 7), one file each
//! (`reproduce_table2.rs`, ...). This module holds what they share: the protocol flags, the
//! record of one trained and scored run, `results.csv`, and the comparison statistics.

use crate::common::Context;
use crate::config::Metric;
use anyhow::{Context as _, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub experiment: Experiment,
}

#[derive(clap::Subcommand, Debug)]
pub enum Experiment {
    /// 001 Table 1: UNet loss-evaluation time per mesh, single-scale vs MGE wall time and #WU.
    Table1(crate::reproduce_table1::Args),
    /// 001 Table 2: every task x strategy x subsampling, with the three single-scale baselines.
    Table2(crate::reproduce_table2::Args),
    /// 001 Table 5: test error at fixed #WU budgets, single-scale against multiscale.
    Table5(crate::reproduce_table5::Args),
    /// 001 Table 6: multiscale and full-multiscale with L = 2, 3, 4 levels.
    Table6(crate::reproduce_table6::Args),
    /// 001 Example 1 / Figure 2: gradient differences between meshes vs noise, 3x3 conv vs MFC.
    Example1(crate::reproduce_example1::Args),
    /// 001 Appendix A.2: telescoping gradient error for coarsening, cropping and both, vs h and L.
    #[command(name = "coarsen-vs-crop")]
    CoarsenVsCrop(crate::reproduce_coarsen_crop::Args),
    /// 002 section 5 / 003 Tables 4.1-4.2: 2-level classifier training and coarse classification.
    #[command(name = "mnist-multilevel")]
    MnistMultilevel(crate::reproduce_mnist::Args),
    /// 004 MgNet[2,2,2,2] classification: single-scale vs Full-Multiscale, ReLU vs Hat, #WU.
    Mgnet(crate::reproduce_mgnet::Args),
    /// 000 blur estimation (Figure 4, Table 3): stencil vs MFC, single-scale, MGE, Full-Multiscale.
    Blur(crate::reproduce_blur::Args),
}

/// Flags every experiment accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Minutes on a 2-core CPU: procedural training images, shipped photos for testing,
    /// small meshes and widths, L = 3 (the default).
    #[arg(long, conflicts_with = "full")]
    pub quick: bool,
    /// The paper's protocol (001 Tables 7-8), for a machine with a GPU.
    #[arg(long)]
    pub full: bool,
    /// Output folder (default `runs/NAME/<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Random seed of every run (data, initialisation, degradations).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl Common {
    pub fn protocol(&self) -> Protocol {
        if self.full {
            Protocol::Full
        } else {
            Protocol::Quick
        }
    }

    /// The output folder, created.
    pub fn out_dir(&self, name: &str) -> Result<PathBuf> {
        crate::common::out_dir_or_default(self.out.as_deref(), name)
    }
}

/// Size of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Quick,
    Full,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    match args.experiment {
        Experiment::Table1(a) => crate::reproduce_table1::run(a, ctx),
        Experiment::Table2(a) => crate::reproduce_table2::run(a, ctx),
        Experiment::Table5(a) => crate::reproduce_table5::run(a, ctx),
        Experiment::Table6(a) => crate::reproduce_table6::run(a, ctx),
        Experiment::Example1(a) => crate::reproduce_example1::run(a),
        Experiment::CoarsenVsCrop(a) => crate::reproduce_coarsen_crop::run(a),
        Experiment::MnistMultilevel(a) => crate::reproduce_mnist::run(a),
        Experiment::Mgnet(a) => crate::reproduce_mgnet::run(a),
        Experiment::Blur(a) => crate::reproduce_blur::run(a),
    }
}

/// One trained and scored run: a row of `results.csv`.
#[derive(Debug, Clone)]
pub struct Record {
    pub task: String,
    pub model: String,
    /// `single-paper`, `single-practical`, `single-equal-wu`, `multiscale`, `full-multiscale`.
    pub strategy: String,
    /// `-` for single-scale, else `coarsen`, `crop` or `both`.
    pub subsampling: String,
    /// Work units spent (001 Definition 1), counted from what ran.
    pub wu: f64,
    pub wall_s: f64,
    pub metric: Metric,
    /// Test metric per test image (same images and degradations for every run of a task).
    pub per_image: Vec<f64>,
    /// Two-sided paired t-test p-value against the paper's single-scale baseline.
    pub p_value: Option<f64>,
}

impl Record {
    pub fn mean(&self) -> f64 {
        mean(&self.per_image)
    }
}

pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// `results.csv`: `task,model,strategy,subsampling,wu,wall_s,metric,value,p_value`.
pub fn write_csv(path: &Path, records: &[Record]) -> Result<()> {
    let mut s = String::from("task,model,strategy,subsampling,wu,wall_s,metric,value,p_value\n");
    for r in records {
        let p = r.p_value.map(|p| format!("{p:.6}")).unwrap_or_default();
        writeln!(
            s,
            "{},{},{},{},{:.3},{:.2},{},{:.6},{}",
            r.task,
            r.model,
            r.strategy,
            r.subsampling,
            r.wu,
            r.wall_s,
            r.metric.name(),
            r.mean(),
            p
        )?;
    }
    std::fs::write(path, s).with_context(|| format!("cannot write {}", path.display()))
}

/// Table 2 markers: `*` not significantly different from the baseline at 5%, `**` different.
pub fn marker(p: Option<f64>) -> &'static str {
    match p {
        Some(p) if p < 0.05 => "**",
        Some(_) => "*",
        None => "",
    }
}

/// `#WU` the way the paper prints it (480k, 74k, 4.6k, 90).
pub fn fmt_wu(wu: f64) -> String {
    let k = wu / 1e3;
    if wu >= 1e5 || (wu >= 1e3 && (k * 10.0).round() % 10.0 == 0.0) {
        format!("{k:.0}k")
    } else if wu >= 1e3 {
        format!("{k:.1}k")
    } else {
        format!("{wu:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_the_issue_columns_and_one_row_per_run() {
        let r = Record {
            task: "denoise".into(),
            model: "unet".into(),
            strategy: "multiscale".into(),
            subsampling: "coarsen".into(),
            wu: 74000.0,
            wall_s: 12.5,
            metric: Metric::Mse,
            per_image: vec![0.1, 0.3],
            p_value: Some(0.2),
        };
        let path = std::env::temp_dir().join(format!("xtask-results-{}.csv", std::process::id()));
        write_csv(&path, &[r.clone(), Record { p_value: None, ..r }]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "task,model,strategy,subsampling,wu,wall_s,metric,value,p_value");
        assert_eq!(lines[1], "denoise,unet,multiscale,coarsen,74000.000,12.50,mse,0.200000,0.200000");
        assert!(lines[2].ends_with(",mse,0.200000,"));
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn wu_and_markers_print_like_the_paper() {
        assert_eq!(fmt_wu(480_000.0), "480k");
        assert_eq!(fmt_wu(74_000.0), "74k");
        assert_eq!(fmt_wu(4_625.0), "4.6k");
        assert_eq!(fmt_wu(90.0), "90");
        assert_eq!((marker(Some(0.01)), marker(Some(0.3)), marker(None)), ("**", "*", ""));
    }
}
