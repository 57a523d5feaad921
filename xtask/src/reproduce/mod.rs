//! `cargo xtask reproduce NAME`: the experiments of 001 (SPEC section 7), one file each
//! (`reproduce_table2.rs`, ...). This module holds what they share: the protocol flags, the
//! record of one trained and scored run, `results.csv`, and the comparison statistics.

pub mod blur;
pub mod coarsen_crop;
pub mod example1;
pub mod labelled;
pub mod mgnet;
pub mod mnist;
pub mod runs;
pub mod table1;
pub mod table2;
pub mod table5;
pub mod table6;

use crate::common::Context;
use anyhow::{Context as _, Result};
use data::Metric;
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
    Table1(crate::reproduce::table1::Args),
    /// 001 Table 2: every task x strategy x subsampling, with the three single-scale baselines.
    Table2(crate::reproduce::table2::Args),
    /// 001 Table 5: test error at fixed #WU budgets, single-scale against multiscale (and the
    /// recipes), per task and model, with the ranking's stability across budgets.
    Table5(crate::reproduce::table5::Args),
    /// 001 Table 6: multiscale and full-multiscale with L = 2, 3, 4 levels.
    Table6(crate::reproduce::table6::Args),
    /// 001 Example 1 / Figure 2: gradient differences between meshes vs noise, 3x3 conv vs MFC.
    Example1(crate::reproduce::example1::Args),
    /// 001 Appendix A.2: telescoping gradient error for coarsening, cropping and both, vs h and L.
    #[command(name = "coarsen-vs-crop")]
    CoarsenVsCrop(crate::reproduce::coarsen_crop::Args),
    /// 002 section 5 / 003 Tables 4.1-4.2: 2-level classifier training and coarse classification.
    #[command(name = "mnist-multilevel")]
    MnistMultilevel(crate::reproduce::mnist::Args),
    /// 004 `MgNet[2,2,2,2]` classification: single-scale vs Full-Multiscale, ReLU vs Hat, #WU.
    Mgnet(crate::reproduce::mgnet::Args),
    /// 000 blur estimation (Figure 4, Table 3): stencil vs MFC, single-scale, MGE, Full-Multiscale.
    Blur(crate::reproduce::blur::Args),
}

/// Flags every experiment accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Minutes on a 2-core CPU: procedural training images, shipped photos for testing,
    /// small meshes and widths, L = 3 (the default).
    #[arg(long, conflicts_with_all = ["full", "standard"])]
    pub quick: bool,
    /// Between quick and full, about an hour on 2 CPU cores for `table2 --seeds 3 --tasks
    /// denoise,deblur`: the paper's mesh 64x64 and L = 4, narrow widths, trained until the
    /// validation loss has levelled off (docs/training.md, "The standard protocol").
    #[arg(long, conflicts_with = "full")]
    pub standard: bool,
    /// The paper's protocol (001 Tables 7-8), for a machine with a GPU.
    #[arg(long)]
    pub full: bool,
    /// Output folder (default `runs/NAME/<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Random seed of every run (data, initialisation, degradations, test patches).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Repeat the experiment with the seeds `seed, seed + 1, ..., seed + seeds - 1`, each in
    /// `OUT/seed-S/`; tables show mean ± sd over seeds and paired tests over seeds.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
}

impl Common {
    pub fn protocol(&self) -> Protocol {
        if self.full {
            Protocol::Full
        } else if self.standard {
            Protocol::Standard
        } else {
            Protocol::Quick
        }
    }

    /// The output folder, created.
    pub fn out_dir(&self, name: &str) -> Result<PathBuf> {
        crate::common::out_dir_or_default(self.out.as_deref(), name)
    }

    /// The seeds of the experiment; `--seeds 0` (or an overflowing range) is an error.
    pub fn seed_list(&self) -> Result<Vec<u64>> {
        anyhow::ensure!(
            self.seeds >= 1,
            "--seeds {}: at least one seed is needed",
            self.seeds
        );
        (0..self.seeds as u64)
            .map(|k| {
                self.seed.checked_add(k).with_context(|| {
                    format!(
                        "--seed {} --seeds {}: seeds overflow u64",
                        self.seed, self.seeds
                    )
                })
            })
            .collect()
    }
}

/// The folder of one seed's runs inside an experiment's folder: `DIR/seed-S`, created.
pub fn seed_dir(dir: &Path, seed: u64) -> Result<PathBuf> {
    crate::common::ensure_out_dir(&dir.join(format!("seed-{seed}")))
}

/// Identifies the code that produced a run: a hash of this executable's bytes (any change of
/// the code changes the binary), so finished runs are only reused by the same build.
pub fn code_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let bytes = std::env::current_exe()
            .and_then(std::fs::read)
            .unwrap_or_default();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        format!("{:016x}", h.finish())
    })
}

/// Size of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Seconds, for the tests (hidden `--smoke`).
    Smoke,
    /// Minutes on 2 CPU cores (`--quick`, the default).
    Quick,
    /// About an hour on 2 CPU cores, trained to a plateau (`--standard`).
    Standard,
    /// The paper's protocol (`--full`), for a machine with a GPU.
    Full,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smoke => "smoke",
            Protocol::Quick => "quick",
            Protocol::Standard => "standard",
            Protocol::Full => "full",
        }
    }
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let cpu_only = match &args.experiment {
        Experiment::Example1(_) => Some("example1"),
        Experiment::CoarsenVsCrop(_) => Some("coarsen-vs-crop"),
        Experiment::MnistMultilevel(_) => Some("mnist-multilevel"),
        Experiment::Mgnet(_) => Some("mgnet"),
        Experiment::Blur(_) => Some("blur"),
        _ => None,
    };
    if let Some(name) = cpu_only.filter(|_| !ctx.device.is_cpu()) {
        anyhow::bail!(
            "reproduce {name} runs on the CPU only (--device {:?} is not supported by this experiment; table1, table2, table5 and table6 accept it)",
            ctx.device
        );
    }
    match args.experiment {
        Experiment::Table1(a) => crate::reproduce::table1::run(a, ctx),
        Experiment::Table2(a) => crate::reproduce::table2::run(a, ctx),
        Experiment::Table5(a) => crate::reproduce::table5::run(a, ctx),
        Experiment::Table6(a) => crate::reproduce::table6::run(a, ctx),
        Experiment::Example1(a) => crate::reproduce::example1::run(a),
        Experiment::CoarsenVsCrop(a) => crate::reproduce::coarsen_crop::run(a),
        Experiment::MnistMultilevel(a) => crate::reproduce::mnist::run(a),
        Experiment::Mgnet(a) => crate::reproduce::mgnet::run(a),
        Experiment::Blur(a) => crate::reproduce::blur::run(a),
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
    /// Seed of the run (data, initialisation, test patches).
    pub seed: u64,
    /// Wall time of the training steps alone (validation and checkpoints excluded).
    pub train_s: f64,
    /// Of `train_s`, the seconds spent drawing training batches (the rest is the model's).
    pub data_s: f64,
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

/// The mean of `v`; NaN for no values (an empty column is never read as 0).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Sample mean and standard deviation (`n - 1` in the denominator; 0 for one value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = mean(v);
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// `results.csv`: `seed,task,model,strategy,subsampling,wu,wall_s,train_s,data_s,metric,value,p_value`
/// (one row per run and seed; `p_value` is the per-patch paired test against the baseline).
pub fn write_csv(path: &Path, records: &[Record]) -> Result<()> {
    let mut s = String::from(
        "seed,task,model,strategy,subsampling,wu,wall_s,train_s,data_s,metric,value,p_value\n",
    );
    for r in records {
        let p = r.p_value.map(|p| format!("{p:.6}")).unwrap_or_default();
        writeln!(
            s,
            "{},{},{},{},{},{:.3},{:.4},{:.4},{:.4},{},{:.6},{}",
            r.seed,
            r.task,
            r.model,
            r.strategy,
            r.subsampling,
            r.wu,
            r.wall_s,
            r.train_s,
            r.data_s,
            r.metric.name(),
            r.mean(),
            p
        )?;
    }
    std::fs::write(path, s).with_context(|| format!("cannot write {}", path.display()))
}

/// The runs of one table cell over seeds (same task, model, strategy and subsampling), by seed.
pub fn over_seeds<'a>(
    records: &'a [Record],
    task: &str,
    model: &str,
    strategy: &str,
    subsampling: &str,
) -> Vec<&'a Record> {
    let mut v: Vec<&Record> = records
        .iter()
        .filter(|r| {
            r.task == task
                && r.model == model
                && r.strategy == strategy
                && r.subsampling == subsampling
        })
        .collect();
    v.sort_by_key(|r| r.seed);
    v
}

/// A strategy against a baseline over seeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedComparison {
    /// Paired t-test over seeds of the mean test metrics (pairs matched by seed; >= 2 seeds).
    pub seeds: Option<data::TTest>,
    /// Paired t-test over every test patch of every seed (patches of one image are correlated,
    /// so this overstates significance: a secondary figure).
    pub patches: Option<data::TTest>,
}

impl SeedComparison {
    /// The test behind the table's marker: over seeds when there are two or more, else over
    /// patches.
    pub fn primary(&self) -> Option<data::TTest> {
        self.seeds.or(self.patches)
    }
}

/// Compares `runs` with `base`, matching their seeds.
pub fn compare_over_seeds(runs: &[&Record], base: &[&Record]) -> SeedComparison {
    let pairs: Vec<(&Record, &Record)> = runs
        .iter()
        .filter_map(|r| base.iter().find(|b| b.seed == r.seed).map(|b| (*r, *b)))
        .collect();
    let (a, b): (Vec<f64>, Vec<f64>) = pairs.iter().map(|(r, b)| (r.mean(), b.mean())).unzip();
    let patches_a: Vec<f64> = pairs
        .iter()
        .flat_map(|p| p.0.per_image.iter().copied())
        .collect();
    let patches_b: Vec<f64> = pairs
        .iter()
        .flat_map(|p| p.1.per_image.iter().copied())
        .collect();
    SeedComparison {
        seeds: data::paired_t_test(&a, &b).ok(),
        patches: data::paired_t_test(&patches_a, &patches_b).ok(),
    }
}

/// `mean ± sd` over seeds of the runs' mean test metrics (the mean alone for one seed).
pub fn seed_cell(runs: &[&Record]) -> String {
    let (m, sd) = mean_sd(&runs.iter().map(|r| r.mean()).collect::<Vec<_>>());
    if runs.len() > 1 {
        format!("{m:.4} ± {sd:.4}")
    } else {
        format!("{m:.4}")
    }
}

/// A p-value cell (`-` when there is no test).
pub fn p_cell(t: Option<data::TTest>) -> String {
    t.map_or("-".into(), |t| format!("{:.3}", t.p_value))
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
            seed: 3,
            train_s: 10.25,
            data_s: 2.5,
            per_image: vec![0.1, 0.3],
            p_value: Some(0.2),
        };
        let path = std::env::temp_dir().join(format!("xtask-results-{}.csv", std::process::id()));
        write_csv(&path, &[r.clone(), Record { p_value: None, ..r }]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines[0],
            "seed,task,model,strategy,subsampling,wu,wall_s,train_s,data_s,metric,value,p_value"
        );
        assert_eq!(
            lines[1],
            "3,denoise,unet,multiscale,coarsen,74000.000,12.5000,10.2500,2.5000,mse,0.200000,0.200000"
        );
        assert!(lines[2].ends_with(",mse,0.200000,"));
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn mean_sd_matches_the_textbook_figures() {
        let (m, s) = mean_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(m, 5.0);
        assert!((s - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd(&[0.5]), (0.5, 0.0));
    }

    #[test]
    fn seeds_are_consecutive_and_zero_seeds_is_an_error() {
        let common = |seed, seeds| Common {
            quick: true,
            standard: false,
            full: false,
            out: None,
            seed,
            seeds,
        };
        assert_eq!(common(5, 3).seed_list().unwrap(), [5, 6, 7]);
        assert!(format!("{:#}", common(5, 0).seed_list().unwrap_err()).contains("--seeds 0"));
        assert!(common(u64::MAX, 2).seed_list().is_err());
        assert_eq!(code_version(), code_version());
        assert_eq!(code_version().len(), 16);
    }

    #[test]
    fn seed_comparison_pairs_by_seed_and_keeps_patches_secondary() {
        let rec = |strategy: &str, seed, v: Vec<f64>| Record {
            task: "denoise".into(),
            model: "unet".into(),
            strategy: strategy.into(),
            subsampling: "-".into(),
            wu: 1.0,
            wall_s: 1.0,
            metric: Metric::Mse,
            seed,
            train_s: 1.0,
            data_s: 0.0,
            per_image: v,
            p_value: None,
        };
        let records = vec![
            rec("a", 2, vec![0.30, 0.32]),
            rec("a", 1, vec![0.20, 0.22]),
            rec("a", 3, vec![0.11, 0.13]),
            rec("b", 1, vec![0.10, 0.12]),
            rec("b", 2, vec![0.31, 0.33]),
            rec("b", 3, vec![0.20, 0.22]),
        ];
        let a = over_seeds(&records, "denoise", "unet", "a", "-");
        let b = over_seeds(&records, "denoise", "unet", "b", "-");
        assert_eq!(a.iter().map(|r| r.seed).collect::<Vec<_>>(), [1, 2, 3]);
        let c = compare_over_seeds(&a, &b);
        // Differences by seed: +0.10, -0.01, -0.09: no consistent effect.
        let seeds = c.seeds.unwrap();
        assert!(
            (seeds.mean_diff - 0.0).abs() < 1e-12 && seeds.p_value > 0.9,
            "{seeds:?}"
        );
        assert_eq!(c.primary().unwrap().p_value, seeds.p_value);
        assert_eq!(c.patches.unwrap().df, 5.0);
        assert_eq!(seed_cell(&a), "0.2133 ± 0.0950");
        assert_eq!(seed_cell(&a[..1]), "0.2100");
        // One seed: the marker falls back to the per-patch test.
        let one = compare_over_seeds(&a[..1], &b);
        assert!(one.seeds.is_none() && one.primary().is_some());
    }

    #[test]
    fn wu_and_markers_print_like_the_paper() {
        assert_eq!(fmt_wu(480_000.0), "480k");
        assert_eq!(fmt_wu(74_000.0), "74k");
        assert_eq!(fmt_wu(4_625.0), "4.6k");
        assert_eq!(fmt_wu(90.0), "90");
        assert_eq!(
            (marker(Some(0.01)), marker(Some(0.3)), marker(None)),
            ("**", "*", "")
        );
    }
}
