//! `cargo xtask train` (one model from a TOML config) and `cargo xtask eval` (score a
//! checkpoint on a folder of images).
//!
//! Training composes the crates: `data` (images, degradations) -> `mge` (the estimator, #WU)
//! -> `fmg` (stages, cosine learning rate, early stopping) with the resumable `optim::Adam`
//! or a second-order `optim` optimizer (`[train.optimizer]`). Progress, checkpoints,
//! validation, the loss history and its plots live here.

use crate::common::Context;
use crate::config::{Allocation, SourceKind, TrainConfig};
use crate::report::plot::{line_plot, Axes, Series};
use anyhow::{bail, Context as _, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use data::{Degraded, Loader, SharedSource};
use fmg::StrategyKind;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{rngs::StdRng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use train::checkpoint;
pub use train::HistoryPoint;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training configuration (see `configs/`).
    #[arg(long)]
    pub config: PathBuf,
    /// Overrides `train.strategy` of the config.
    #[arg(long, value_parser = crate::common::choice(StrategyKind::ALL, StrategyKind::name))]
    pub strategy: Option<StrategyKind>,
    /// Continue from the last checkpoint in `--out` (with the configuration it was started with).
    #[arg(long)]
    pub resume: bool,
    /// Start afresh in a `--out` that already holds a run, deleting its checkpoints, weights,
    /// history and plots (without it such a folder is refused).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Output folder: checkpoints, `train.log`, `history.csv`, plots, `final.safetensors`.
    #[arg(long)]
    pub out: PathBuf,
    // --- issue 18: distributed training (xtask/src/distributed.rs) ---
    #[command(flatten)]
    pub distributed: crate::distributed::Args,
}

/// What a finished run returns.
pub struct RunOutcome {
    pub history: Vec<HistoryPoint>,
    pub wu: f64,
    pub wall_s: f64,
    /// Training steps alone (validation and checkpoints excluded).
    pub train_s: f64,
    pub final_checkpoint: PathBuf,
    /// Last per-term variance ratios `V_l / V_fine` (empty for single-scale).
    pub variance_ratios: Vec<Option<f64>>,
}

/// The config's `[model]` table as a `models::ModelConfig`.
pub fn model_config(cfg: &TrainConfig, origin: &Path) -> Result<models::ModelConfig> {
    toml::Value::Table(cfg.model.clone())
        .try_into()
        .map_err(|e| anyhow::anyhow!("{}: [model]: {e}", origin.display()))
}

/// Training and validation image sources of the config. Procedural sources serve both (the
/// validation stream uses another seed, so its images are never drawn in training); a folder
/// holds `data.validation_images` of its photos out of training
/// ([`data::PhotoFolder::split_validation`], seeded by `train.seed`).
pub fn sources(cfg: &TrainConfig) -> Result<(SharedSource, SharedSource)> {
    let d = &cfg.data;
    let seed = cfg.train.seed;
    let c = d.channels;
    let procedural: SharedSource = match d.source {
        SourceKind::DeadLeaves => Arc::new(data::DeadLeaves::new(seed).with_channels(c)),
        SourceKind::Grf => {
            Arc::new(data::GaussianRandomField::new(seed, d.grf_beta).with_channels(c))
        }
        SourceKind::Markov => Arc::new(data::MarkovField::new(seed).with_channels(c)),
        SourceKind::Folder => {
            let dir = d
                .dir
                .as_ref()
                .context("data.dir is required for data.source = \"folder\"")?;
            let (train, validation) = photos(dir, c)?
                .split_validation(d.validation_images, seed)
                .with_context(|| format!("data.validation_images = {}", d.validation_images))?;
            return Ok((Arc::new(train), Arc::new(validation)));
        }
    };
    Ok((procedural.clone(), procedural))
}

/// A folder of photos with `channels` channels (grey when 1).
pub fn photos(dir: &Path, channels: usize) -> Result<data::PhotoFolder> {
    Ok(data::PhotoFolder::open(dir)
        .with_context(|| format!("image folder {}", dir.display()))?
        .grayscale(channels == 1))
}

/// The training loss of `cfg` ([`train::loss_fn`]: MSE, or SSIM with a physical window).
fn loss_fn(cfg: &TrainConfig) -> Box<mge::LossFn<'static>> {
    train::loss_fn(
        cfg.train.loss,
        cfg.data.size,
        cfg.levels(),
        cfg.train.subsampling,
    )
}

/// A fixed validation batch drawn from the validation source of [`sources`] (a stream the
/// training stream never reaches), degraded once with a fixed seed.
fn validation_set(cfg: &TrainConfig, source: SharedSource, device: &Device) -> Result<Degraded> {
    const VALIDATION_SALT: u64 = 0x7A11_DA7E_0000_0001;
    let mut loader = Loader::new(
        source,
        cfg.data.size,
        cfg.train.seed ^ VALIDATION_SALT,
        cfg.data.threads,
    );
    let clean = loader.next_batch(cfg.data.validation_images, device)?;
    let mut rng = StdRng::seed_from_u64(data::mix_seed(cfg.train.seed, VALIDATION_SALT));
    Ok(cfg
        .task
        .degradation(cfg.data.blur_sigma)
        .apply(&clean, &mut rng)?)
}

fn fmt_ratios(r: &[Option<f64>]) -> String {
    r.iter()
        .map(|v| v.map_or("-".into(), |v| format!("{v:.2}")))
        .collect::<Vec<_>>()
        .join("/")
}

/// Save model weights and config with the models crate's checkpoint format.
fn save_model(path: &Path, cfg: &models::ModelConfig, varmap: &VarMap) -> Result<()> {
    models::checkpoint::save(path, cfg, varmap, &Default::default())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Write a fresh initialisation of `cfg`'s model to `path` (for [`Start::Init`]).
pub fn save_initial(cfg: &TrainConfig, origin: &Path, path: &Path, device: &Device) -> Result<()> {
    let model_cfg = model_config(cfg, origin)?;
    let varmap = VarMap::new();
    models::build(
        &model_cfg,
        models::init::seeded_var_builder(&varmap, cfg.train.seed, DType::F32, device),
    )
    .with_context(|| format!("{}: [model]", origin.display()))?;
    save_model(path, &model_cfg, &varmap)
}

/// Where a run's parameters come from.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// A fresh initialisation seeded by `train.seed` ([`models::init::seeded_var_builder`]).
    Fresh,
    /// The last checkpoint in the output folder (fresh when there is none).
    Resume,
    /// The weights of a `models::checkpoint` file of the same configuration, so that runs
    /// compared with each other start from identical parameters.
    Init(&'a Path),
}

/// Train `cfg` with `strategy` into `out`, starting as `start` says.
pub fn train_run(
    cfg: &TrainConfig,
    origin: &Path,
    strategy: StrategyKind,
    out: &Path,
    start: Start,
    device: &Device,
) -> Result<RunOutcome> {
    let mut used = cfg.clone();
    used.train.strategy = strategy;
    let used_toml = used.to_toml()?;
    let model_cfg = model_config(cfg, origin)?;
    let varmap = VarMap::new();
    let model = models::build(
        &model_cfg,
        models::init::seeded_var_builder(&varmap, cfg.train.seed, DType::F32, device),
    )
    .with_context(|| format!("{}: [model]", origin.display()))?;
    if let Start::Init(path) = start {
        models::checkpoint::load_into(path, &model_cfg, &varmap)
            .with_context(|| format!("initial weights {}", path.display()))?;
    }
    let t = &cfg.train;
    let levels = cfg.levels();
    let coarsest = cfg.data.size >> (levels - 1);
    let factor = model.downsampling_factor();
    if !coarsest.is_multiple_of(factor) {
        bail!(
            "{}: data.size = {}: the coarsest mesh ({coarsest}) must be a multiple of the model's down-sampling factor {factor}",
            origin.display(),
            cfg.data.size
        );
    }
    let plan = mge::LevelPlan {
        levels,
        first_level: 0,
        batch: cfg.level_batches(),
        subsampling: t.subsampling,
        restriction: t.restriction,
        noise_consistent: t.noise_consistent,
    };
    let (fstrategy, iters) = cfg.train.fmg_strategy(strategy);
    let stages = fmg::stages(fstrategy, &plan, iters)?;
    let driver_cfg = fmg::DriverConfig {
        hot_start: t.hot_start,
        validate_every: t.validate_every,
        patience: t.early_stopping_patience,
        min_delta: 0.0,
        stats_every: if strategy == StrategyKind::Single {
            0
        } else {
            t.stats_every
        },
        adaptive: (t.allocation == Allocation::Adaptive).then_some(t.stats_every.max(1)),
        seed: t.seed,
        // Per-sample models (group/layer norm) give the same gradient fused; MgNet's
        // batch norm would see a different batch.
        fused_levels: model_cfg.normalises_per_sample(),
        ..t.lr_schedule.driver_config(t.lr)
    };
    // issue 18: split every iteration over the MPI ranks when `--distributed` is given.
    let driver = fmg::Driver::new(stages, driver_cfg)?.with_parallel(crate::distributed::current());
    let total_iters = driver.total_iters();
    check_memory(
        cfg,
        origin,
        strategy,
        crate::resources::ModelFootprint::of(&varmap)?,
        false,
    )?;
    let (source, validation_source) = sources(cfg)?;
    let validation = validation_set(cfg, validation_source, device)?;
    let sampler = mge::LoaderSampler::new(
        Loader::new(source, cfg.data.size, t.seed, cfg.data.threads).with_prefetch(true),
        cfg.task.degradation(cfg.data.blur_sigma),
        t.seed,
        device.clone(),
    );
    cfg.check_optimizer(origin, strategy)?;
    let loss = loss_fn(cfg);
    let forward = |x: &Tensor, tt: Option<&Tensor>| model.forward(x, tt);
    let bar = ProgressBar::new(total_iters);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:25} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("{} {}", cfg.task.name(), strategy.name()));
    let mut trainer = train::Trainer::new(&forward, &varmap, loss.as_ref(), sampler, driver)
        .with_optimizer(match t.optimizer.second_order() {
            None => train::OptimizerKind::Adam,
            Some(c) => train::OptimizerKind::SecondOrder(c),
        })
        .with_validation(validation)
        .with_checkpoints(out, t.checkpoint_every as u64)?
        .with_hot_start_restriction(plan.restriction)
        .with_model_config(model_cfg.clone())
        .with_record(used_toml.clone())
        .on_progress(|p| {
            show_progress(&bar, p);
            Ok(())
        });
    // After the folder's lock is taken (with_checkpoints): a refused run writes no log there.
    let _log = crate::common::RunLog::open(&out.join("train.log"))?;
    if t.levels_auto {
        tracing::info!(
            levels,
            coarsest,
            factor,
            "train.levels not given: chose L = {levels} by 001 section 4's guideline (coarsest mesh {coarsest}x{coarsest} >= {m}x{m}, divisible by the model's down-sampling factor {factor})",
            m = crate::config::MIN_COARSEST_MESH
        );
    }
    let mut finished = false;
    if matches!(start, Start::Resume) {
        match trainer.resume()? {
            Some(r) => {
                match &r.record {
                    Some(recorded) => {
                        let differ = config_differences(recorded, &used_toml)?;
                        if !differ.is_empty() {
                            bail!(
                                "--resume: the checkpoint {} was trained with another configuration: {} differ{} ({}); resume with the run's own config ({}) and strategy, or train into another --out",
                                r.dir.display(),
                                differ.iter().map(|(k, _, _)| k.as_str()).collect::<Vec<_>>().join(", "),
                                if differ.len() == 1 { "s" } else { "" },
                                differ.iter().map(|(k, a, b)| format!("{k}: checkpoint {a}, given {b}")).collect::<Vec<_>>().join("; "),
                                out.join("config.toml").display()
                            );
                        }
                    }
                    None => tracing::warn!(
                        "checkpoint {} records no configuration: it cannot be checked against {}",
                        r.dir.display(),
                        origin.display()
                    ),
                }
                finished = r.finished;
                bar.set_position(r.iterations_done);
                tracing::info!(
                    "resuming {} from iteration {} (checkpoint {})",
                    out.display(),
                    r.iterations_done,
                    r.dir.display()
                );
            }
            None => tracing::warn!(
                "--resume: no checkpoint in {}, starting from scratch",
                out.display()
            ),
        }
    }
    if finished && out.join("final.safetensors").exists() {
        bail!(
            "{}: the run already finished ({total_iters} iterations; final.safetensors is written): nothing to resume (--overwrite trains it again)",
            out.display()
        );
    }
    // issue 18: every rank starts from rank 0's parameters (fresh or resumed).
    crate::distributed::sync_vars(&optim::sorted_vars(&varmap)?)?;
    std::fs::write(out.join("config.toml"), &used_toml)
        .with_context(|| format!("cannot write {}", out.join("config.toml").display()))?;
    if finished {
        tracing::info!(
            "{}: training had finished; writing the final outputs",
            out.display()
        );
    }
    let r = trainer.run();
    bar.finish();
    let r = r?;
    let final_checkpoint = out.join("final.safetensors");
    save_model(&final_checkpoint, &model_cfg, &varmap)?;
    write_history(&out.join("history.csv"), &r.history)?;
    plot_history(out, &[(strategy.name().to_string(), r.history.clone())])?;
    Ok(RunOutcome {
        wu: r.wu,
        wall_s: r.wall_s,
        train_s: r.train_s,
        history: r.history,
        final_checkpoint,
        variance_ratios: r.variance_ratios,
    })
}

/// The progress bar's line for one iteration (and a `tracing` event where it validated).
fn show_progress(bar: &ProgressBar, p: &train::Progress) {
    let rec = p.record;
    let ratios = fmt_ratios(p.variance_ratios);
    let mut step = String::new();
    if let Some(r) = &rec.second_order {
        let (name, value) = match (r.radius, r.damping) {
            (Some(radius), _) => ("radius", radius),
            (_, damping) => ("damping", damping.unwrap_or(f64::NAN)),
        };
        tracing::debug!(
            iteration = rec.iteration,
            accepted = r.accepted,
            ratio = r.ratio,
            name,
            value,
            loss_before = r.loss_before,
            loss_after = r.loss_after,
            cg_iterations = r.cg_iterations,
            forward_passes = r.forward_passes,
            "second-order step"
        );
        step = format!(
            " {} rho {:.2} {name} {value:.1e}",
            if r.accepted { "accepted" } else { "rejected" },
            r.ratio
        );
    }
    bar.set_position(rec.iteration + 1);
    bar.set_message(format!(
        "stage {}/{} (mesh 2^{}h) loss {:.4e} #WU {:.0} ({:.1} WU/s){step}{}{}",
        rec.stage + 1,
        p.stages,
        rec.level,
        rec.loss,
        p.point.wu,
        rec.wu.to_f64() / rec.step_s.max(1e-9),
        if ratios.is_empty() {
            String::new()
        } else {
            format!(" var ratios {ratios}")
        },
        rec.val_loss
            .map_or(String::new(), |v| format!(" val {v:.4e}")),
    ));
    if let Some(v) = rec.val_loss {
        tracing::info!(iteration = rec.iteration, stage = rec.stage, loss = rec.loss, val_loss = v, wu = p.point.wu, wall_s = p.point.wall_s, ratios = %ratios, "validation");
    }
}

/// The keys whose values differ between two configuration TOML texts, with both values
/// (`data.threads`, `data.test_dir` and `data.test_images` do not change training and are
/// not compared).
pub fn config_differences(recorded: &str, given: &str) -> Result<Vec<(String, String, String)>> {
    fn flatten(
        prefix: &str,
        v: &toml::Value,
        out: &mut std::collections::BTreeMap<String, String>,
    ) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let parse = |text: &str| -> Result<std::collections::BTreeMap<String, String>> {
        let table: toml::Table =
            toml::from_str(text).context("recorded configuration does not parse")?;
        let mut flat = std::collections::BTreeMap::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for k in ["data.threads", "data.test_dir", "data.test_images"] {
            flat.remove(k);
        }
        Ok(flat)
    };
    let (a, b) = (parse(recorded)?, parse(given)?);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let absent = || "(absent)".to_string();
    Ok(keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            (
                k.clone(),
                a.get(k).cloned().unwrap_or_else(absent),
                b.get(k).cloned().unwrap_or_else(absent),
            )
        })
        .collect())
}

/// `history.csv` ([`train::history::write_csv`]).
pub fn write_history(path: &Path, h: &[HistoryPoint]) -> Result<()> {
    Ok(train::history::write_csv(path, h)?)
}

/// `val_loss_vs_wu.png` and `val_loss_vs_time.png` in `dir`, one curve per named history.
pub fn plot_history(dir: &Path, runs: &[(String, Vec<HistoryPoint>)]) -> Result<()> {
    for (file, x_label, x) in [
        (
            "val_loss_vs_wu.png",
            "#WU",
            (|p: &HistoryPoint| p.wu) as fn(&HistoryPoint) -> f64,
        ),
        (
            "val_loss_vs_time.png",
            "training time (s, validation excluded)",
            |p: &HistoryPoint| p.train_s,
        ),
    ] {
        let series: Vec<Series> = runs
            .iter()
            .map(|(name, h)| Series {
                name: name.clone(),
                points: h
                    .iter()
                    .filter_map(|p| p.val_loss.map(|v| (x(p), v)))
                    .collect(),
            })
            .collect();
        if series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        let axes = Axes {
            title: "validation loss",
            x_label,
            y_label: "validation loss",
            log_y: true,
        };
        line_plot(&dir.join(file), &axes, &series)?;
    }
    Ok(())
}

/// Refuse to start afresh in a folder holding a run unless `overwrite` (which deletes it).
pub fn check_fresh_out(out: &Path, resume: bool, overwrite: bool) -> Result<()> {
    if resume {
        return Ok(());
    }
    if let Some(found) = checkpoint::existing_run(out) {
        if !overwrite {
            bail!(
                "{} already holds a training run ({} exists): continue it with --resume, choose another --out, or pass --overwrite to delete it and start afresh",
                out.display(),
                found.display()
            );
        }
        // Deleting under the lock: not while another run writes there.
        let _lock = checkpoint::RunLock::acquire(out)?;
        tracing::warn!("--overwrite: deleting the run in {}", out.display());
        checkpoint::clear_run(out)?;
    }
    Ok(())
}

/// The test images of `data.test_dir` (the first `data.test_images` photos, whole, at
/// `data.size`), degraded once for the config's task.
pub fn config_test_set(cfg: &TrainConfig, device: &Device) -> Result<train::TestSet> {
    let d = &cfg.data;
    if !d.test_dir.is_dir() {
        bail!(
            "data.test_dir = {:?}: not a folder (the test images scored at the end of training)",
            d.test_dir.display().to_string()
        );
    }
    let spec = train::TestSpec {
        channels: d.channels,
        limit: Some(d.test_images),
        blur_sigma: d.blur_sigma,
        seed: cfg.train.seed,
        ..train::TestSpec::new(cfg.task, d.size)
    };
    train::TestSet::load(&d.test_dir, &spec, device).context("data.test_dir")
}

/// Refuse a run of `cfg` with `strategy` whose memory estimate (training batches, validation
/// and, with `test`, the test images) exceeds the machine's available memory.
pub fn check_memory(
    cfg: &TrainConfig,
    origin: &Path,
    strategy: StrategyKind,
    footprint: crate::resources::ModelFootprint,
    test: bool,
) -> Result<()> {
    let d = &cfg.data;
    let batches = match cfg.train.fmg_strategy(strategy).0 {
        fmg::Strategy::Single { batch } => vec![batch],
        fmg::Strategy::Multiscale | fmg::Strategy::FullMultiscale { .. } => cfg.level_batches(),
    };
    let mut bytes = crate::resources::training_bytes(
        footprint,
        d.size as u64,
        d.channels as u64,
        &batches,
        d.validation_images as u64,
    );
    if test {
        bytes = bytes.saturating_add(crate::resources::evaluation_bytes(
            footprint,
            d.size as u64,
            d.channels as u64,
            d.test_images as u64,
            16,
        ));
    }
    crate::resources::check_fits(
        &format!("training {} ({})", origin.display(), strategy.name()),
        bytes,
        crate::resources::available_memory(),
        "reduce data.size, train.n0 (or train.batch, train.single_batch), data.validation_images or data.test_images",
    )
}

pub fn run_train(mut a: TrainArgs, ctx: &Context) -> Result<()> {
    // issue 18: one MPI session per `--distributed` run; rank r > 0 writes into out/ranks/r.
    let split = match a.distributed.distributed {
        Some(split) => Some(split),
        None => TrainConfig::load(&a.config)?.train.distributed,
    };
    let session = crate::distributed::Session::start(split)?;
    let result = session.check_ranks(&a.out, a.resume).and_then(|()| {
        let out = a.out.clone();
        a.out = session.out_dir(&out);
        run_train_on(a, ctx, &session, &out)
    });
    session.end(result)
}

/// `train` on this process (a rank of a distributed run, or alone); `run_out` is rank 0's
/// `--out`.
fn run_train_on(
    a: TrainArgs,
    ctx: &Context,
    session: &crate::distributed::Session,
    run_out: &Path,
) -> Result<()> {
    let mut cfg = TrainConfig::load(&a.config)?;
    let strategy = a.strategy.unwrap_or(cfg.train.strategy);
    crate::distributed::adjust_config(&mut cfg, &a.config, strategy)?;
    let start = if a.resume {
        Start::Resume
    } else {
        Start::Fresh
    };
    check_fresh_out(&a.out, a.resume, a.overwrite)?;
    session.record_ranks(run_out, a.resume)?;
    let varmap = VarMap::new();
    models::build(
        &model_config(&cfg, &a.config)?,
        VarBuilder::from_varmap(&varmap, DType::F32, &ctx.device),
    )
    .with_context(|| format!("{}: [model]", a.config.display()))?;
    check_memory(
        &cfg,
        &a.config,
        strategy,
        crate::resources::ModelFootprint::of(&varmap)?,
        true,
    )?;
    drop(varmap);
    // Loaded (and checked) before training, scored after it.
    let test = config_test_set(&cfg, &ctx.device)?;
    let r = train_run(&cfg, &a.config, strategy, &a.out, start, &ctx.device)?;
    let scores = crate::commands::eval::score_checkpoint(
        &r.final_checkpoint,
        &test,
        &a.out.join("test"),
        &ctx.device,
    )?;
    if session.rank() != 0 {
        return Ok(());
    }
    let last_val = r.history.iter().rev().find_map(|p| p.val_loss);
    println!(
        "{} {}: {} iterations, #WU {:.1}, wall {:.1} s (training {:.1} s, of it drawing batches \
         {:.1} s), final validation loss {}, checkpoint {}",
        cfg.task.name(),
        strategy.name(),
        r.history.last().map_or(0, |p| p.iteration + 1),
        r.wu,
        r.wall_s,
        r.train_s,
        r.history.last().map_or(0.0, |p| p.data_s),
        last_val.map_or("-".into(), |v| format!("{v:.5e}")),
        r.final_checkpoint.display()
    );
    if !r.variance_ratios.is_empty() {
        println!(
            "last per-term variance ratios V_l / V_fine: {}",
            fmt_ratios(&r.variance_ratios)
        );
    }
    println!(
        "test ({} images of {}): mean mse {:.6e} psnr {:.3} dB ssim {:.4}, per image in {}",
        test.len(),
        cfg.data.test_dir.display(),
        crate::reproduce::mean(&scores.mse),
        crate::reproduce::mean(&scores.psnr),
        crate::reproduce::mean(&scores.ssim),
        a.out.join("test/results.csv").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::with_optimizer;

    const TINY: &str = r#"
task = "denoise"
[model]
kind = "unet"
channels = [4, 8, 8]
[data]
source = "dead-leaves"
size = 16
validation_images = 4
[train]
levels = 2
n0 = 2
iterations = 12
lr = 2e-3
checkpoint_every = 6
validate_every = 3
stats_every = 0
"#;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-train-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&d).ok();
        d
    }

    #[test]
    fn resume_reproduces_the_uninterrupted_run() {
        let origin = Path::new("tiny.toml");
        let text = TINY.replace("checkpoint_every = 6", "checkpoint_every = 5");
        // Adam (moments in optim.safetensors) and CG-Steihaug (radius in the trainer state).
        for text in [
            text.clone(),
            with_optimizer(&text, "kind = \"steihaug\"\ncg_max_iters = 3"),
        ] {
            resume_reproduces(&TrainConfig::parse(&text, origin).unwrap());
        }
    }

    fn resume_reproduces(cfg: &TrainConfig) {
        let (origin, cfg) = (Path::new("tiny.toml"), cfg.clone());
        let (full, part) = (tmp("full"), tmp("part"));
        let a = train_run(
            &cfg,
            origin,
            StrategyKind::FullMultiscale,
            &full,
            Start::Fresh,
            &Device::Cpu,
        )
        .unwrap();
        // Stages of 12 and 6 iterations, checkpoints every 5: an interrupted run whose last
        // checkpoint is the one after 15 iterations (inside the second stage).
        let (ck, name) = (checkpoint::checkpoints_dir(&part), "step-00000015");
        std::fs::create_dir_all(ck.join(name)).unwrap();
        for f in std::fs::read_dir(checkpoint::checkpoints_dir(&full).join(name)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, ck.join(name).join(f.file_name().unwrap())).unwrap();
        }
        std::fs::write(ck.join("LATEST"), name).unwrap();
        let b = train_run(
            &cfg,
            origin,
            StrategyKind::FullMultiscale,
            &part,
            Start::Resume,
            &Device::Cpu,
        )
        .unwrap();
        let curve = |h: &[HistoryPoint]| {
            h.iter()
                .map(|p| (p.iteration, p.loss, p.wu, p.val_loss))
                .collect::<Vec<_>>()
        };
        assert_eq!(a.history.len(), 18);
        assert_eq!(curve(&a.history), curve(&b.history));
        // A damaged checkpoint is a clear error, not a silent restart.
        std::fs::write(ck.join(name).join("model.safetensors"), b"garbage").unwrap();
        std::fs::write(ck.join("LATEST"), name).unwrap();
        let e = train_run(
            &cfg,
            origin,
            StrategyKind::FullMultiscale,
            &part,
            Start::Resume,
            &Device::Cpu,
        )
        .err()
        .unwrap();
        assert!(format!("{e:#}").contains("corrupted"), "{e:#}");
        std::fs::remove_dir_all(&full).ok();
        std::fs::remove_dir_all(&part).ok();
    }

    #[test]
    fn history_records_the_variance_ratios_where_measured() {
        let origin = Path::new("tiny.toml");
        let cfg = TrainConfig::parse(&TINY.replace("stats_every = 0", "stats_every = 4"), origin)
            .unwrap();
        let out = tmp("variance");
        let r = train_run(
            &cfg,
            origin,
            StrategyKind::Multiscale,
            &out,
            Start::Fresh,
            &Device::Cpu,
        )
        .unwrap();
        let measured: Vec<&HistoryPoint> =
            r.history.iter().filter(|p| p.variance.is_some()).collect();
        assert_eq!(
            measured.iter().map(|p| p.iteration).collect::<Vec<_>>(),
            [0, 4, 8]
        );
        for p in measured {
            let v = p.variance.as_ref().unwrap();
            assert_eq!(v.len(), 2);
            assert!(
                v.iter()
                    .all(|r| r.is_some_and(|r| r.is_finite() && r > 0.0)),
                "{v:?}"
            );
            assert!(p.stats_step_s.is_some_and(|s| s > 0.0));
        }
        assert!(
            r.train_s > 0.0 && r.train_s <= r.wall_s,
            "{} vs {}",
            r.train_s,
            r.wall_s
        );
        std::fs::remove_dir_all(&out).ok();
    }

    #[test]
    fn folder_source_keeps_validation_photos_out_of_training() {
        let dir = data::photos_dir();
        let text = TINY.replace(
            "source = \"dead-leaves\"",
            &format!("source = \"folder\"\ndir = {dir:?}"),
        );
        let cfg = TrainConfig::parse(&text, Path::new("tiny.toml")).unwrap();
        let (train, validation) = sources(&cfg).unwrap();
        let n = data::ImageSource::len(&data::PhotoFolder::open(&dir).unwrap()).unwrap();
        assert_eq!((train.len(), validation.len()), (Some(n - 4), Some(4)));
        let too_many = TrainConfig::parse(
            &text.replace("validation_images = 4", &format!("validation_images = {n}")),
            Path::new("tiny.toml"),
        )
        .unwrap();
        let e = format!("{:#}", sources(&too_many).err().unwrap());
        assert!(
            e.contains("data.validation_images") && e.contains("photos"),
            "{e}"
        );
    }

    #[test]
    fn seed_fixes_the_initial_weights_and_the_whole_run() {
        let origin = Path::new("tiny.toml");
        let cfg = |seed: u64| {
            let text = TINY.replace("iterations = 12", &format!("iterations = 3\nseed = {seed}"));
            TrainConfig::parse(&text, origin).unwrap()
        };
        let weights = |path: &Path| {
            let (_, varmap, _) = models::checkpoint::load(path, &Device::Cpu).unwrap();
            let vars = varmap.data().lock().unwrap();
            let mut named: Vec<(String, Vec<f32>)> = vars
                .iter()
                .map(|(n, v)| {
                    (
                        n.clone(),
                        v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
                    )
                })
                .collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            named
        };
        let dir = tmp("seeds");
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (
            dir.join("a.safetensors"),
            dir.join("b.safetensors"),
            dir.join("c.safetensors"),
        );
        save_initial(&cfg(5), origin, &a, &Device::Cpu).unwrap();
        save_initial(&cfg(5), origin, &b, &Device::Cpu).unwrap();
        save_initial(&cfg(6), origin, &c, &Device::Cpu).unwrap();
        assert!(
            weights(&a) == weights(&b),
            "same seed, other initial weights"
        );
        assert!(
            weights(&a) != weights(&c),
            "other seed, same initial weights"
        );
        // Two fresh runs with one seed give the same curve; another seed another one.
        let run = |seed: u64, name: &str| {
            let r = train_run(
                &cfg(seed),
                origin,
                StrategyKind::Multiscale,
                &dir.join(name),
                Start::Fresh,
                &Device::Cpu,
            )
            .unwrap();
            r.history
                .iter()
                .map(|p| (p.loss, p.val_loss))
                .collect::<Vec<_>>()
        };
        let (x, y, z) = (run(5, "x"), run(5, "y"), run(6, "z"));
        assert_eq!(x, y);
        assert_ne!(x, z);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn every_strategy_lowers_the_validation_loss() {
        let origin = Path::new("tiny.toml");
        let cfg = TrainConfig::parse(&TINY.replace("iterations = 12", "iterations = 24"), origin)
            .unwrap();
        for s in [
            StrategyKind::Single,
            StrategyKind::Multiscale,
            StrategyKind::FullMultiscale,
        ] {
            let out = tmp(s.name());
            let r = train_run(&cfg, origin, s, &out, Start::Fresh, &Device::Cpu).unwrap();
            let v: Vec<f64> = r.history.iter().filter_map(|p| p.val_loss).collect();
            assert!(
                v.last().unwrap() < v.first().unwrap(),
                "{}: {v:?}",
                s.name()
            );
            assert!(
                out.join("final.safetensors").exists() && out.join("val_loss_vs_wu.png").exists()
            );
            std::fs::remove_dir_all(&out).ok();
        }
    }

    /// Validation loss of the weights in `init` (a [`save_initial`] file of `cfg`).
    fn initial_validation_loss(cfg: &TrainConfig, init: &Path) -> f64 {
        let (model_cfg, varmap, _) = models::checkpoint::load(init, &Device::Cpu).unwrap();
        let model = models::build(
            &model_cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let val = validation_set(cfg, sources(cfg).unwrap().1, &Device::Cpu).unwrap();
        let forward = |x: &Tensor, t: Option<&Tensor>| model.forward(x, t);
        train::validation::validation_loss(&forward, loss_fn(cfg).as_ref(), &val).unwrap()
    }

    #[test]
    fn second_order_optimizers_lower_the_validation_loss() {
        let origin = Path::new("tiny.toml");
        let steihaug = "kind = \"steihaug\"\ncg_max_iters = 5";
        let gauss_newton = "kind = \"gauss-newton\"\ncg_max_iters = 5";
        let single = TINY.replace("levels = 2", "levels = 2\nstrategy = \"single\"");
        for (strategy, body) in [
            (StrategyKind::Multiscale, steihaug),
            (StrategyKind::Single, gauss_newton),
        ] {
            let text = if strategy == StrategyKind::Single {
                &single
            } else {
                TINY
            };
            let cfg = TrainConfig::parse(&with_optimizer(text, body), origin).unwrap();
            let out = tmp(strategy.name());
            let init = out.with_extension("init.safetensors");
            save_initial(&cfg, origin, &init, &Device::Cpu).unwrap();
            let before = initial_validation_loss(&cfg, &init);
            let r = train_run(
                &cfg,
                origin,
                strategy,
                &out,
                Start::Init(&init),
                &Device::Cpu,
            )
            .unwrap();
            let v: Vec<f64> = r.history.iter().filter_map(|p| p.val_loss).collect();
            println!(
                "{} {body:?}: validation loss {before:.4} -> {v:.4?}, #WU {}",
                strategy.name(),
                r.wu
            );
            assert!(
                *v.last().unwrap() < before,
                "{}: {before} -> {v:?}",
                strategy.name()
            );
            std::fs::remove_file(&init).ok();
            // The checkpoint carries the adapted damping or radius, not Adam moments.
            let ck = checkpoint::load_latest::<serde_json::Value>(&out)
                .unwrap()
                .unwrap();
            assert!(
                ck.state.get("optimizer").is_some_and(|o| !o.is_null())
                    && !ck.dir.join("optim.safetensors").exists()
            );
            std::fs::remove_dir_all(&out).ok();
        }
        // --strategy cannot turn a single-scale Gauss-Newton config multiscale.
        let cfg = TrainConfig::parse(&with_optimizer(TINY, gauss_newton), origin).unwrap_err();
        assert!(format!("{cfg:#}").contains("train.strategy"), "{cfg:#}");
        let cfg = TrainConfig::parse(&with_optimizer(&single, gauss_newton), origin).unwrap();
        let out = tmp("gn-multiscale");
        let e = train_run(
            &cfg,
            origin,
            StrategyKind::Multiscale,
            &out,
            Start::Fresh,
            &Device::Cpu,
        )
        .err()
        .unwrap();
        assert!(format!("{e:#}").contains("\"multiscale\""), "{e:#}");
        std::fs::remove_dir_all(&out).ok();
    }

    #[test]
    fn galerkin_hot_start_prolongs_the_weights_between_stages() {
        let origin = Path::new("tiny.toml");
        let text = TINY.replace(
            "stats_every = 0",
            "stats_every = 0\nhot_start = \"galerkin\"",
        );
        let cfg = TrainConfig::parse(&text, origin).unwrap();
        let (g, i) = (tmp("galerkin"), tmp("identity"));
        let init = std::env::temp_dir().join(format!(
            "xtask-train-init-{}.safetensors",
            std::process::id()
        ));
        save_initial(&cfg, origin, &init, &Device::Cpu).unwrap();
        let a = train_run(
            &cfg,
            origin,
            StrategyKind::FullMultiscale,
            &g,
            Start::Init(&init),
            &Device::Cpu,
        )
        .unwrap();
        let mut id = cfg.clone();
        id.train.hot_start = fmg::HotStart::Identity;
        let b = train_run(
            &id,
            origin,
            StrategyKind::FullMultiscale,
            &i,
            Start::Init(&init),
            &Device::Cpu,
        )
        .unwrap();
        assert!(a.history.iter().all(|p| p.loss.is_finite()));
        // Same first stage; the second stage starts from different (prolonged) weights.
        let stage = |h: &[HistoryPoint], s| {
            h.iter()
                .filter(|p| p.stage == s)
                .map(|p| p.loss)
                .collect::<Vec<_>>()
        };
        assert_eq!(stage(&a.history, 0), stage(&b.history, 0));
        assert_ne!(stage(&a.history, 1)[0], stage(&b.history, 1)[0]);
        std::fs::remove_file(&init).ok();
        std::fs::remove_dir_all(&g).ok();
        std::fs::remove_dir_all(&i).ok();
    }

    /// runs: a diverging run stops; no checkpoint written after the bad update survives (the
    /// one `LATEST` names, if any, has finite weights and a finite validation loss), and no
    /// `final.safetensors` is written.
    #[test]
    fn a_diverging_run_stops_and_latest_never_names_a_non_finite_checkpoint() {
        let origin = Path::new("tiny.toml");
        for (lr, every) in [(1e30, 1), (1e30, 6)] {
            let mut cfg = TrainConfig::parse(
                &TINY.replace(
                    "checkpoint_every = 6",
                    &format!("checkpoint_every = {every}"),
                ),
                origin,
            )
            .unwrap();
            // Past validation on purpose: the first step throws every weight to ~1e30.
            cfg.train.lr = lr;
            let out = tmp(&format!("nan-{every}-{lr}"));
            let e = format!(
                "{:#}",
                train_run(
                    &cfg,
                    origin,
                    StrategyKind::Single,
                    &out,
                    Start::Fresh,
                    &Device::Cpu
                )
                .err()
                .unwrap()
            );
            assert!(e.contains("diverged") && e.contains("iteration"), "{e}");
            assert!(!out.join("final.safetensors").exists());
            if let Some(ck) = checkpoint::load_latest::<serde_json::Value>(&out).unwrap() {
                assert!(e.contains("last good checkpoint"), "{e}");
                let init = ck.dir.join("model.safetensors");
                let (_, varmap, _) = models::checkpoint::load(&init, &Device::Cpu).unwrap();
                assert_eq!(
                    train::validation::non_finite_parameter(&varmap).unwrap(),
                    None
                );
                assert!(
                    initial_validation_loss(&cfg, &init).is_finite(),
                    "{lr} {every}: {e}"
                );
            } else {
                assert!(e.contains("no checkpoint"), "{e}");
            }
            std::fs::remove_dir_all(&out).ok();
        }
    }

    fn small_run(name: &str) -> (TrainConfig, PathBuf) {
        let origin = Path::new("tiny.toml");
        let text = TINY
            .replace("iterations = 12", "iterations = 4")
            .replace("checkpoint_every = 6", "checkpoint_every = 2");
        (TrainConfig::parse(&text, origin).unwrap(), tmp(name))
    }

    /// runs: a folder holding a run is refused without --overwrite (which deletes it); a
    /// folder in use by a live run is refused with "in use".
    #[test]
    fn a_finished_run_is_not_overwritten_without_overwrite() {
        let origin = Path::new("tiny.toml");
        let (cfg, out) = small_run("overwrite");
        check_fresh_out(&out, false, false).unwrap();
        train_run(
            &cfg,
            origin,
            StrategyKind::Single,
            &out,
            Start::Fresh,
            &Device::Cpu,
        )
        .unwrap();
        let e = format!("{:#}", check_fresh_out(&out, false, false).unwrap_err());
        assert!(
            e.contains("already holds a training run")
                && e.contains("--resume")
                && e.contains("--overwrite"),
            "{e}"
        );
        // An interrupted run (checkpoints, no final weights) is protected too.
        std::fs::remove_file(out.join("final.safetensors")).unwrap();
        std::fs::remove_file(out.join("history.csv")).unwrap();
        assert!(check_fresh_out(&out, false, false).is_err());
        check_fresh_out(&out, true, false).unwrap();
        check_fresh_out(&out, false, true).unwrap();
        assert!(!checkpoint::checkpoints_dir(&out).exists() && !out.join("config.toml").exists());
        check_fresh_out(&out, false, false).unwrap();
        // Two runs on one folder: the second stops at once with "in use".
        let lock = checkpoint::RunLock::acquire(&out).unwrap();
        let e = format!(
            "{:#}",
            train_run(
                &cfg,
                origin,
                StrategyKind::Single,
                &out,
                Start::Fresh,
                &Device::Cpu
            )
            .err()
            .unwrap()
        );
        assert!(e.contains("in use"), "{e}");
        assert!(check_fresh_out(&tmp("overwrite"), false, false).is_ok());
        drop(lock);
        std::fs::remove_dir_all(&out).ok();
    }

    /// resume: another strategy (or any training key) than the checkpoint's is refused, naming
    /// the keys, and `config.toml` is left as it was.
    #[test]
    fn resume_with_another_config_names_the_differing_keys() {
        let origin = Path::new("tiny.toml");
        let (cfg, out) = small_run("resume-other");
        train_run(
            &cfg,
            origin,
            StrategyKind::FullMultiscale,
            &out,
            Start::Fresh,
            &Device::Cpu,
        )
        .unwrap();
        std::fs::remove_file(out.join("final.safetensors")).unwrap();
        let before = std::fs::read_to_string(out.join("config.toml")).unwrap();
        let e = format!(
            "{:#}",
            train_run(
                &cfg,
                origin,
                StrategyKind::Single,
                &out,
                Start::Resume,
                &Device::Cpu
            )
            .err()
            .unwrap()
        );
        assert!(
            e.contains("another configuration") && e.contains("train.strategy"),
            "{e}"
        );
        let mut other = cfg.clone();
        other.train.lr = 1e-3;
        other.data.threads = 1;
        let e = format!(
            "{:#}",
            train_run(
                &other,
                origin,
                StrategyKind::FullMultiscale,
                &out,
                Start::Resume,
                &Device::Cpu
            )
            .err()
            .unwrap()
        );
        assert!(
            e.contains("train.lr") && !e.contains("train.strategy") && !e.contains("data.threads"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("config.toml")).unwrap(),
            before
        );
        std::fs::remove_dir_all(&out).ok();
    }

    /// resume: when writing `final.safetensors` fails at the end, `--resume` finishes the job
    /// from the finished run's checkpoint (no iteration is run again); then there is nothing
    /// left to resume.
    #[test]
    fn a_failed_final_write_is_finished_by_resume() {
        let origin = Path::new("tiny.toml");
        let (cfg, out) = small_run("final-fails");
        std::fs::create_dir_all(out.join("final.safetensors")).unwrap();
        let e = format!(
            "{:#}",
            train_run(
                &cfg,
                origin,
                StrategyKind::Multiscale,
                &out,
                Start::Fresh,
                &Device::Cpu
            )
            .err()
            .unwrap()
        );
        assert!(e.contains("final.safetensors"), "{e}");
        std::fs::remove_dir_all(out.join("final.safetensors")).unwrap();
        let r = train_run(
            &cfg,
            origin,
            StrategyKind::Multiscale,
            &out,
            Start::Resume,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(r.history.len(), 4);
        models::checkpoint::load(&out.join("final.safetensors"), &Device::Cpu).unwrap();
        assert!(out.join("history.csv").is_file());
        let e = format!(
            "{:#}",
            train_run(
                &cfg,
                origin,
                StrategyKind::Multiscale,
                &out,
                Start::Resume,
                &Device::Cpu
            )
            .err()
            .unwrap()
        );
        assert!(e.contains("already finished"), "{e}");
        std::fs::remove_dir_all(&out).ok();
    }

    /// resources: a run whose estimate exceeds the machine's memory is refused before it
    /// allocates anything, with the estimate and the available memory.
    #[test]
    fn a_run_too_large_for_memory_is_refused_with_the_estimate() {
        let origin = Path::new("tiny.toml");
        let text = TINY
            .replace("size = 16", "size = 16384")
            .replace("n0 = 2", "n0 = 65536");
        let cfg = TrainConfig::parse(&text, origin).unwrap();
        let out = tmp("too-large");
        let e = format!(
            "{:#}",
            train_run(
                &cfg,
                origin,
                StrategyKind::Single,
                &out,
                Start::Fresh,
                &Device::Cpu
            )
            .err()
            .unwrap()
        );
        assert!(
            e.contains("GiB of memory (estimate)")
                && e.contains("available")
                && e.contains("train.n0"),
            "{e}"
        );
        std::fs::remove_dir_all(&out).ok();
        // `train` checks before loading the test images too (65536 of them at 16384^2).
        let text = TINY.replace("size = 16", "size = 16384").replace(
            "validation_images = 4",
            "validation_images = 1\ntest_images = 65536",
        );
        let cfg = TrainConfig::parse(&text, origin).unwrap();
        let varmap = VarMap::new();
        models::build(
            &model_config(&cfg, origin).unwrap(),
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let fp = crate::resources::ModelFootprint::of(&varmap).unwrap();
        let e = format!(
            "{:#}",
            check_memory(&cfg, origin, StrategyKind::Single, fp, true).unwrap_err()
        );
        assert!(e.contains("data.test_images"), "{e}");
        check_memory(
            &TrainConfig::parse(TINY, origin).unwrap(),
            origin,
            StrategyKind::Single,
            fp,
            true,
        )
        .unwrap();
    }

    /// resources: the estimate does not refuse the shipped configs on a small machine (each
    /// run, with its test images, is estimated below 8 GiB).
    #[test]
    fn shipped_configs_are_estimated_small() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let cfg = TrainConfig::load(&path).unwrap();
            let varmap = VarMap::new();
            models::build(
                &model_config(&cfg, &path).unwrap(),
                VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            )
            .unwrap();
            let fp = crate::resources::ModelFootprint::of(&varmap).unwrap();
            for s in [
                StrategyKind::Single,
                StrategyKind::Multiscale,
                StrategyKind::FullMultiscale,
            ] {
                if cfg.check_optimizer(&path, s).is_err() {
                    continue;
                }
                let e = format!("{:?}", check_memory(&cfg, &path, s, fp, true).err());
                let bytes = {
                    let batches = match cfg.train.fmg_strategy(s).0 {
                        fmg::Strategy::Single { batch } => vec![batch],
                        fmg::Strategy::Multiscale | fmg::Strategy::FullMultiscale { .. } => {
                            cfg.level_batches()
                        }
                    };
                    let d = &cfg.data;
                    crate::resources::training_bytes(
                        fp,
                        d.size as u64,
                        d.channels as u64,
                        &batches,
                        d.validation_images as u64,
                    ) + crate::resources::evaluation_bytes(
                        fp,
                        d.size as u64,
                        d.channels as u64,
                        d.test_images as u64,
                        16,
                    )
                };
                println!(
                    "{} {}: {:.2} GiB",
                    path.display(),
                    s.name(),
                    bytes as f64 / (1u64 << 30) as f64
                );
                assert!(
                    bytes < 8 << 30,
                    "{} {}: {bytes} bytes ({e})",
                    path.display(),
                    s.name()
                );
            }
        }
    }

    /// data.test_dir / data.test_images: the finished run is scored on those images.
    #[test]
    fn the_config_test_images_are_loaded_and_limited() {
        let dir = tmp("test-dir");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, v) in [("a", 40u8), ("b", 120), ("c", 200)] {
            image::RgbImage::from_fn(20, 20, |x, y| {
                image::Rgb([v, (x * 10) as u8, (y * 10) as u8])
            })
            .save(dir.join(format!("{name}.png")))
            .unwrap();
        }
        let origin = Path::new("tiny.toml");
        let text = TINY.replace(
            "validation_images = 4",
            &format!(
                "validation_images = 4\ntest_dir = {:?}\ntest_images = 2",
                dir.display().to_string()
            ),
        );
        let cfg = TrainConfig::parse(&text, origin).unwrap();
        let test = config_test_set(&cfg, &Device::Cpu).unwrap();
        assert_eq!(
            (test.names.clone(), test.degraded.input.dims().to_vec()),
            (vec!["a".to_string(), "b".to_string()], vec![2, 3, 16, 16])
        );
        let mut missing = cfg.clone();
        missing.data.test_dir = dir.join("nope");
        assert!(format!(
            "{:#}",
            config_test_set(&missing, &Device::Cpu).err().unwrap()
        )
        .contains("data.test_dir"));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A `MakeWriter` collecting the log in memory.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_chosen_level_count_is_logged() {
        let origin = Path::new("tiny.toml");
        let cfg = TrainConfig::parse(
            &TINY
                .replace("levels = 2\n", "")
                .replace("iterations = 12", "iterations = 2"),
            origin,
        )
        .unwrap();
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let out = tmp("auto-levels");
        tracing::subscriber::with_default(subscriber, || {
            train_run(
                &cfg,
                origin,
                StrategyKind::Single,
                &out,
                Start::Fresh,
                &Device::Cpu,
            )
            .unwrap();
        });
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        // 16x16 UNet (factor 4): L = 2 keeps an 8x8 coarsest mesh.
        assert!(
            text.contains("chose L = 2") && text.contains("coarsest mesh 8x8"),
            "{text}"
        );
        std::fs::remove_dir_all(&out).ok();
    }
}
