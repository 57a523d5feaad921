//! `cargo xtask reproduce mnist-multilevel`: 2-level training of the 2-layer CNN classifier
//! (002 section 5.1; 003 section 4, Tables 4.1-4.2) and coarse classification with the fine
//! network (002 section 5.2).
//!
//! Protocol. Images `u` (28x28) and `R u` (14x14, 2x2 average) from one random split of the
//! training file (train / validation). Per seed and per network (with and without 2x2 average
//! pooling): train at 14x14, then continue at 28x28 from (a) new random weights, (b) the coarse
//! stencils unchanged, (c) the coarse stencils prolonged by exact Galerkin (002 eq. 4.14); in (b)
//! and (c) the head is prolonged as `P w / 4` (003 section 3.1.3). Accuracies at the transfer,
//! after the first fine epoch ("Initial") and after the last ("ReTrain"). Then the fine network
//! of (a), trained on 28x28 only, classifies `R u` with (i) every stencil restricted by Galerkin
//! and the head by `4 R w`, (ii) the fine stencils unchanged and the head by `4 R w`.
//! Optimiser: Adam (lr 1e-3), cross-entropy, optional head smoothness penalty (003 section
//! 3.2.1) — the papers used Gauss-Newton (002) and SGD (003).

use crate::common::out_dir_or_default;
use crate::report::plot::{line_plot, Axes, Series};
use crate::reproduce::labelled::{percent_cell, shuffled_split, DataArgs, LabelledSource};
use crate::reproduce::mean_sd;
use anyhow::{bail, Context as _, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::classifier::{
    accuracy, cross_entropy, head_smoothness, prolong_classifier, restrict_classifier, Classifier,
    ClassifierConfig, StencilTransfer, HEAD_WEIGHT,
};
use optim::Adam;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Minutes on 2 cores: 6000 training and 2000 validation images, 2 coarse and 2 fine
    /// epochs, 2 seeds (without it the full protocol: 40000 / 20000, 20 / 10, 5 seeds).
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub data: DataArgs,
    /// Epochs at 14x14 (default 20, quick 2).
    #[arg(long)]
    pub coarse_epochs: Option<usize>,
    /// Epochs at 28x28 (default 10, quick 2).
    #[arg(long)]
    pub fine_epochs: Option<usize>,
    /// Channels of the two convolutions (003: 32, 64).
    #[arg(long, num_args = 2, default_values_t = vec![32, 64])]
    pub channels: Vec<usize>,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Weight `α` of the head smoothness penalty at 28x28 (003 section 3.2.1 uses 2^-5; the
    /// coarse network gets `4 α` as there). 0 switches it off.
    #[arg(long, default_value_t = 0.0)]
    pub alpha: f64,
}

/// Training accuracy is measured on at most this many training images (for time).
const TRAIN_EVAL: usize = 2000;

struct Split {
    fine: (Tensor, Tensor),
    coarse: (Tensor, Tensor),
}

struct Data {
    train: Split,
    val: Split,
    classes: usize,
    name: String,
}

/// Images `[N, 1, 28, 28]` in `[0, 1]` with their `u32` labels, and the restricted copies.
fn split(src: &LabelledSource, indices: &[u64], device: &Device) -> Result<Split> {
    let (c, h, w) = src.stored().shape();
    if c != 1 || h != 28 || w != 28 {
        bail!("expected 1x28x28 images, found {c}x{h}x{w}");
    }
    let mut pixels = Vec::with_capacity(indices.len() * h * w);
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        pixels.extend(src.stored().raw(i)?.iter().map(|&b| b as f32 / 255.0));
        labels.push(src.label(i)? as u32);
    }
    let x = Tensor::from_vec(pixels, (indices.len(), 1, h, w), device)?;
    let y = Tensor::from_vec(labels, indices.len(), device)?;
    let rx = grids::restrict(&x, grids::Restriction::Average)?;
    Ok(Split {
        fine: (x, y.clone()),
        coarse: (rx, y),
    })
}

fn load(spec: &[String], train: usize, val: usize, device: &Device) -> Result<Data> {
    let src = LabelledSource::open(spec)?;
    let (train_ids, val_ids) = shuffled_split(&src, train, val)?;
    Ok(Data {
        train: split(&src, &train_ids, device)?,
        val: split(&src, &val_ids, device)?,
        classes: src.classes(),
        name: src.name().to_string(),
    })
}

fn build(cfg: ClassifierConfig, varmap: &VarMap, device: &Device) -> Result<Classifier> {
    Ok(Classifier::new(
        cfg,
        VarBuilder::from_varmap(varmap, DType::F32, device),
    )?)
}

/// Accuracy of `net` on `(x, y)` (the first `limit` images), in batches.
fn evaluate(net: &Classifier, (x, y): &(Tensor, Tensor), limit: usize) -> Result<f64> {
    let n = x.dim(0)?.min(limit);
    let mut hits = 0.0;
    for start in (0..n).step_by(500) {
        let len = 500.min(n - start);
        let logits = net.forward(&x.narrow(0, start, len)?)?;
        hits += accuracy(&logits, &y.narrow(0, start, len)?)? * len as f64;
    }
    Ok(hits / n as f64)
}

/// (training, validation) accuracy.
fn scores(net: &Classifier, train: &Split, val: &Split, coarse: bool) -> Result<(f64, f64)> {
    let pick = |s: &Split| {
        if coarse {
            s.coarse.clone()
        } else {
            s.fine.clone()
        }
    };
    Ok((
        evaluate(net, &pick(train), TRAIN_EVAL)?,
        evaluate(net, &pick(val), usize::MAX)?,
    ))
}

struct Trainer<'a> {
    args: &'a Args,
    data: &'a Data,
    device: Device,
}

impl Trainer<'_> {
    /// Trains `varmap` for `epochs` epochs on the fine (or coarse) training images; returns the
    /// (train, val) accuracy before training and after every epoch.
    fn train(
        &self,
        cfg: ClassifierConfig,
        varmap: &VarMap,
        epochs: usize,
        seed: u64,
    ) -> Result<Vec<(f64, f64)>> {
        let coarse = cfg.size == 14;
        let net = build(cfg, varmap, &self.device)?;
        let (x, y) = if coarse {
            &self.data.train.coarse
        } else {
            &self.data.train.fine
        };
        let alpha = if coarse {
            4.0 * self.args.alpha
        } else {
            self.args.alpha
        };
        let mut adam = Adam::from_varmap(varmap)?;
        let head = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned VarMap lock"))?[HEAD_WEIGHT]
            .clone();
        let mut history = vec![scores(&net, &self.data.train, &self.data.val, coarse)?];
        let n = x.dim(0)?;
        for epoch in 0..epochs {
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.shuffle(&mut StdRng::seed_from_u64(data::mix_seed(
                seed,
                epoch as u64,
            )));
            // The pool's other workers kept awake through the epoch's steps, as the trainer does.
            train::threads::warm(|| -> Result<()> {
                for chunk in order.chunks(self.args.batch) {
                    let ids = Tensor::new(chunk, &self.device)?;
                    let logits = net.forward(&x.index_select(&ids, 0)?)?;
                    let mut loss = cross_entropy(&logits, &y.index_select(&ids, 0)?)?;
                    if alpha > 0.0 {
                        let penalty =
                            head_smoothness(head.as_tensor(), cfg.c2, cfg.feature_side())?;
                        loss = (loss + (penalty * alpha)?)?;
                    }
                    let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
                    if !value.is_finite() {
                        return Err(crate::reproduce::labelled::diverged(&format!(
                            "loss = {value} at {}x{} epoch {} (seed {seed})",
                            cfg.size,
                            cfg.size,
                            epoch + 1
                        )));
                    }
                    adam.step(&loss.backward()?, self.args.lr)?;
                }
                Ok(())
            })?;
            if let Some(name) = train::validation::non_finite_parameter(varmap)? {
                return Err(crate::reproduce::labelled::diverged(&format!(
                    "parameter {name} is not finite after {}x{} epoch {} (seed {seed})",
                    cfg.size,
                    cfg.size,
                    epoch + 1
                )));
            }
            history.push(scores(&net, &self.data.train, &self.data.val, coarse)?);
            tracing::info!(
                "  {}x{} epoch {}: train/val acc {:.4}/{:.4}",
                cfg.size,
                cfg.size,
                epoch + 1,
                history[epoch + 1].0,
                history[epoch + 1].1
            );
        }
        Ok(history)
    }
}

/// One row of `results.csv`.
struct Row {
    experiment: &'static str,
    pool: bool,
    variant: &'static str,
    seed: u64,
    epoch: Option<usize>,
    train_acc: Option<f64>,
    val_acc: f64,
}

const VARIANTS: [(&str, Option<StencilTransfer>); 3] = [
    ("new", None),
    ("transfer", Some(StencilTransfer::Unchanged)),
    ("multigrid", Some(StencilTransfer::Galerkin)),
];

/// 003 Tables 4.1 (no pooling) and 4.2 (pooling), MNIST: Initial train/val, ReTrain train/val.
fn paper_row(pool: bool, variant: &str) -> [f64; 4] {
    match (pool, variant) {
        (false, "new") => [88.4, 85.0, 96.4, 91.9],
        (false, "transfer") => [97.9, 93.5, 99.4, 94.6],
        (false, _) => [97.5, 62.9, 99.9, 63.6],
        (true, "new") => [91.1, 89.0, 97.0, 93.2],
        (true, "transfer") => [96.7, 91.5, 98.3, 92.8],
        (true, _) => [96.8, 84.1, 99.8, 88.0],
    }
}

pub fn run(args: Args) -> Result<()> {
    let q = args.quick;
    let seeds = args.data.seeds.unwrap_or(if q { 2 } else { 5 });
    let n_train = args.data.train.unwrap_or(if q { 6000 } else { 40000 });
    let n_val = args.data.val.unwrap_or(if q { 2000 } else { 20000 });
    let coarse_epochs = args.coarse_epochs.unwrap_or(if q { 2 } else { 20 });
    let fine_epochs = args.fine_epochs.unwrap_or(if q { 2 } else { 10 });
    if fine_epochs == 0 || seeds == 0 {
        bail!("need at least one fine epoch and one seed");
    }
    crate::reproduce::labelled::check_lr(args.lr)?;
    crate::reproduce::labelled::check_count("--batch", args.batch, crate::config::MAX_BATCH)?;
    crate::reproduce::labelled::check_count("--seeds", seeds as usize, 1000)?;
    crate::reproduce::labelled::check_count("--fine-epochs", fine_epochs, 10_000)?;
    if coarse_epochs > 10_000 {
        bail!("--coarse-epochs {coarse_epochs}: must be at most 10000");
    }
    for &c in &args.channels {
        crate::reproduce::labelled::check_count("--channels", c, 4096)?;
    }
    if !(args.alpha.is_finite() && args.alpha >= 0.0) {
        bail!("--alpha {}: must be a finite number >= 0", args.alpha);
    }
    let out = out_dir_or_default(args.data.out.as_deref(), "mnist-multilevel")?;
    let device = Device::Cpu;
    let data = load(&args.data.dataset, n_train, n_val, &device)?;
    let trainer = Trainer {
        args: &args,
        data: &data,
        device: device.clone(),
    };
    let start = Instant::now();
    let mut rows = Vec::new();
    for pool in [false, true] {
        let cfg = ClassifierConfig {
            c1: args.channels[0],
            c2: args.channels[1],
            pool,
            classes: data.classes,
            size: 14,
        };
        for seed in 0..seeds {
            tracing::info!("pool {pool}, seed {seed}: coarse training");
            let coarse = VarMap::new();
            build(cfg, &coarse, &device)?;
            models::init::seed_weights(&coarse, 1000 + seed)?;
            let hist = trainer.train(cfg, &coarse, coarse_epochs, 2000 + seed)?;
            let last = hist[hist.len() - 1];
            rows.push(Row {
                experiment: "coarse-training",
                pool,
                variant: "coarse",
                seed,
                epoch: Some(coarse_epochs),
                train_acc: Some(last.0),
                val_acc: last.1,
            });
            let fine_cfg = cfg.at_size(28);
            let mut new_net = None;
            for (variant, stencils) in VARIANTS {
                tracing::info!("pool {pool}, seed {seed}: fine training from {variant}");
                let vars = match stencils {
                    None => {
                        let v = VarMap::new();
                        build(fine_cfg, &v, &device)?;
                        models::init::seed_weights(&v, 3000 + seed)?;
                        v
                    }
                    Some(st) => prolong_classifier(&coarse, &cfg, st)?,
                };
                let hist = trainer.train(fine_cfg, &vars, fine_epochs, 4000 + seed)?;
                for (epoch, (tr, va)) in hist.iter().enumerate() {
                    rows.push(Row {
                        experiment: "coarse-to-fine",
                        pool,
                        variant,
                        seed,
                        epoch: Some(epoch),
                        train_acc: Some(*tr),
                        val_acc: *va,
                    });
                }
                if stencils.is_none() {
                    new_net = Some(vars);
                }
            }
            // 002 section 5.2: the fine-only network on coarse images.
            let fine_vars = new_net.context("no fine network")?;
            for (variant, st) in [
                ("galerkin", StencilTransfer::Galerkin),
                ("unchanged", StencilTransfer::Unchanged),
            ] {
                let vars = restrict_classifier(&fine_vars, &fine_cfg, st)?;
                let acc = evaluate(&build(cfg, &vars, &device)?, &data.val.coarse, usize::MAX)?;
                rows.push(Row {
                    experiment: "coarse-classification",
                    pool,
                    variant,
                    seed,
                    epoch: None,
                    train_acc: None,
                    val_acc: acc,
                });
            }
            tracing::info!("elapsed {:.0} s", start.elapsed().as_secs_f64());
        }
    }
    let wall = start.elapsed().as_secs_f64();
    write_csv(&out.join("results.csv"), &rows)?;
    let md = markdown(
        &rows,
        &data.name,
        &args,
        [seeds as usize, n_train, n_val, coarse_epochs, fine_epochs],
        wall,
    );
    std::fs::write(out.join("results.md"), &md)?;
    plot(&out.join("accuracy.png"), &rows, fine_epochs)?;
    println!("{md}");
    tracing::info!("wrote {}", out.display());
    Ok(())
}

fn write_csv(path: &Path, rows: &[Row]) -> Result<()> {
    let mut s = String::from("experiment,pool,variant,seed,epoch,train_acc,val_acc\n");
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for r in rows {
        let epoch = r.epoch.map(|e| e.to_string()).unwrap_or_default();
        writeln!(
            s,
            "{},{},{},{},{},{},{:.6}",
            r.experiment,
            r.pool,
            r.variant,
            r.seed,
            epoch,
            opt(r.train_acc),
            r.val_acc
        )?;
    }
    std::fs::write(path, s).with_context(|| format!("cannot write {}", path.display()))
}

fn select<'a>(
    rows: &'a [Row],
    experiment: &str,
    pool: bool,
    variant: &str,
    epoch: Option<usize>,
) -> Vec<&'a Row> {
    rows.iter()
        .filter(|r| {
            r.experiment == experiment && r.pool == pool && r.variant == variant && r.epoch == epoch
        })
        .collect()
}

fn markdown(
    rows: &[Row],
    dataset: &str,
    args: &Args,
    [seeds, n_train, n_val, ce, fe]: [usize; 5],
    wall: f64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# mnist-multilevel: 2-level training and coarse classification\n"
    );
    let _ = writeln!(
        s,
        "{dataset}; {n_train} training / {n_val} validation images (one random split of the training file); \
         CNN {}-{} channels; {ce} epochs at 14x14, {fe} at 28x28; Adam lr {}, batch {}, head smoothness α = {}; \
         {seeds} seeds, mean ± sd; training accuracy on the first {TRAIN_EVAL} training images; {wall:.0} s wall.\n",
        args.channels[0], args.channels[1], args.lr, args.batch, args.alpha
    );
    let _ = writeln!(s, "Papers: 003 Tables 4.1-4.2 are MNIST, 40000 coarse / 10000 fine training images, 20 + 10 epochs of SGD, 20 trials.\n");
    for pool in [false, true] {
        let table = if pool {
            "4.2 (with 2x2 average pooling)"
        } else {
            "4.1 (no pooling)"
        };
        let _ = writeln!(s, "## Coarse-to-fine, 003 Table {table}\n");
        let coarse = select(rows, "coarse-training", pool, "coarse", Some(ce));
        let _ = writeln!(
            s,
            "Coarse network after {ce} epochs at 14x14: validation {}\n",
            percent_cell(&coarse.iter().map(|r| r.val_acc).collect::<Vec<_>>())
        );
        let _ = writeln!(s, "| start | at transfer val | Initial train | Initial val | ReTrain train | ReTrain val | paper Initial train / val | paper ReTrain train / val |");
        let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- |");
        for (variant, _) in VARIANTS {
            let at = |e| select(rows, "coarse-to-fine", pool, variant, Some(e));
            let tr = |v: &[&Row]| v.iter().filter_map(|r| r.train_acc).collect::<Vec<_>>();
            let va = |v: &[&Row]| v.iter().map(|r| r.val_acc).collect::<Vec<_>>();
            let p = paper_row(pool, variant);
            let _ = writeln!(
                s,
                "| {variant} | {} | {} | {} | {} | {} | {:.1} / {:.1} | {:.1} / {:.1} |",
                percent_cell(&va(&at(0))),
                percent_cell(&tr(&at(1))),
                percent_cell(&va(&at(1))),
                percent_cell(&tr(&at(fe))),
                percent_cell(&va(&at(fe))),
                p[0],
                p[1],
                p[2],
                p[3]
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "## Coarse classification with the fine network, 002 section 5.2\n"
    );
    let _ = writeln!(s, "The network trained at 28x28 from new weights classifies the 14x14 validation images `R u`; head `4 R w` in both rows.\n");
    let _ = writeln!(
        s,
        "| stencils | no pooling | pooling | paper (MNIST, 2-layer CNN, least squares) |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- |");
    for (variant, label, paper) in [
        ("galerkin", "Galerkin-restricted", "84.1"),
        ("unchanged", "fine, unchanged", "81.8"),
    ] {
        let acc = |pool| {
            percent_cell(
                &select(rows, "coarse-classification", pool, variant, None)
                    .iter()
                    .map(|r| r.val_acc)
                    .collect::<Vec<_>>(),
            )
        };
        let _ = writeln!(s, "| {label} | {} | {} | {paper} |", acc(false), acc(true));
    }
    let fine = |pool| {
        percent_cell(
            &select(rows, "coarse-to-fine", pool, "new", Some(fe))
                .iter()
                .map(|r| r.val_acc)
                .collect::<Vec<_>>(),
        )
    };
    let coarse = |pool| {
        percent_cell(
            &select(rows, "coarse-training", pool, "coarse", Some(ce))
                .iter()
                .map(|r| r.val_acc)
                .collect::<Vec<_>>(),
        )
    };
    let _ = writeln!(
        s,
        "| reference: same network on 28x28 | {} | {} | 96.7 |",
        fine(false),
        fine(true)
    );
    let _ = writeln!(
        s,
        "| reference: network trained at 14x14 | {} | {} | 96.4 |",
        coarse(false),
        coarse(true)
    );
    s
}

fn plot(path: &Path, rows: &[Row], fine_epochs: usize) -> Result<()> {
    let mut series = Vec::new();
    for pool in [false, true] {
        for (variant, _) in VARIANTS {
            let points = (0..=fine_epochs)
                .map(|e| {
                    let v: Vec<f64> = select(rows, "coarse-to-fine", pool, variant, Some(e))
                        .iter()
                        .map(|r| 100.0 * r.val_acc)
                        .collect();
                    (e as f64, mean_sd(&v).0)
                })
                .collect();
            series.push(Series {
                name: format!("{variant}{}", if pool { " + pool" } else { "" }),
                points,
            });
        }
    }
    let axes = Axes {
        title: "Validation accuracy at 28x28 after coarse training",
        x_label: "fine epoch",
        y_label: "validation accuracy (%)",
        log_y: false,
    };
    line_plot(path, &axes, &series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    /// runs and smaller cases: `--batch 0` (a panic in `chunks`), `--lr 1e30`, `--lr -1` are
    /// refused before anything is read or written.
    #[test]
    fn out_of_range_flags_are_refused() {
        crate::reproduce::labelled::assert_flags_refused(
            "xtask-mnist-flags",
            &[
                ("--batch", "0"),
                ("--lr", "1e30"),
                ("--lr", "-1"),
                ("--lr", "inf"),
                ("--alpha", "NaN"),
                ("--batch", "100000000"),
            ],
            |argv| run(Cli::parse_from(argv).args),
        );
    }

    #[test]
    fn runs_on_small_idx_files_and_writes_the_tables() {
        let dir = std::env::temp_dir().join(format!("xtask-mnist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        crate::reproduce::labelled::write_test_idx(&dir, 48);
        let out = dir.join("out");
        let cli = Cli::parse_from([
            "x",
            "--dataset",
            "mnist-idx",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--seeds",
            "1",
            "--train",
            "32",
            "--val",
            "16",
            "--coarse-epochs",
            "1",
            "--fine-epochs",
            "1",
            "--channels",
            "2",
            "3",
            "--alpha",
            "0.03",
        ]);
        run(cli.args).unwrap();
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        // Per pooling setting: 1 coarse row, 3 variants x 2 epochs, 2 coarse-classification rows.
        assert_eq!(csv.lines().count(), 1 + 2 * (1 + 6 + 2));
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        assert!(md.contains("| multigrid |") && md.contains("84.1"));
        assert!(out.join("accuracy.png").is_file());
        let bad = Cli::parse_from([
            "x",
            "--dataset",
            "mnist-idx",
            "/nonexistent",
            "--train",
            "1",
        ]);
        assert!(run(bad.args).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
