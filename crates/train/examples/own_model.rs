// Train your own candle model with Full-Multiscale and MGE (`cargo run --release -p multiscale-train --example own_model`).
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{conv2d, Conv2dConfig, VarMap};
use mge::Sampler;
use std::sync::Arc;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Result<()> {
    train::threads::run(train_own_model)? // thread settings, then the work on the pool
}

#[rustfmt::skip] // kept compact on purpose: the whole recipe on one screen
fn train_own_model() -> Result<()> {
    let dev = Device::Cpu;
    // Any candle model (candle-nn layers): a residual pair of 3x3 convolutions.
    let varmap = VarMap::new();
    let vb = models::init::seeded_var_builder(&varmap, 0, DType::F32, &dev); // seeded weights
    let same = Conv2dConfig { padding: 1, ..Default::default() };
    let (c1, c2) = (conv2d(1, 16, 3, same, vb.pp("c1"))?, conv2d(16, 1, 3, same, vb.pp("c2"))?);
    let model = |x: &Tensor, _t: Option<&Tensor>| x + c2.forward(&c1.forward(x)?.relu()?)?;
    let loss = |p: &Tensor, t: &Tensor| (p - t)?.sqr(); // the estimator takes the mean
    // Fresh noisy dead-leaves images on a 32x32 mesh (denoising); another seed validates.
    let images = |seed| data::Loader::new(Arc::new(data::DeadLeaves::new(seed)), 32, seed, 1);
    let sampler = mge::LoaderSampler::new(images(0), data::Degradation::Denoise, 0, dev.clone());
    let validation = mge::LoaderSampler::new(images(1), data::Degradation::Denoise, 1, dev.clone()).draw(32)?;
    // Full-Multiscale over meshes 8, 16, 32 (N_0 = 4); each stage an MGE over its levels.
    let plan = mge::LevelPlan::multiscale(3, 4)?;
    let stages = fmg::stages(fmg::Strategy::FullMultiscale { schedule: mge::StageSchedule::Halving }, &plan, 40)?;
    let driver = fmg::Driver::new(stages, fmg::DriverConfig { lr: 1e-3, validate_every: 10, ..Default::default() })?;
    let out = std::env::temp_dir().join(format!("own-model-{}", std::process::id()));
    let outcome = train::Trainer::new(&model, &varmap, &loss, sampler, driver)
        .with_validation(validation)
        .with_checkpoints(&out, 25)?
        .on_progress(|p| {
            if let Some(v) = p.record.val_loss {
                println!("iteration {:3} (mesh 2^{}h): validation loss {v:.4}", p.point.iteration, p.point.level);
            }
            Ok(())
        })
        .run()?;
    println!("{} iterations, {:.0} #WU, {:.1} s training", outcome.history.len(), outcome.wu, outcome.train_s);
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
