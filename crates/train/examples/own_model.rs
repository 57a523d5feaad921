// Train your own candle model with Full-Multiscale and MGE (run: cargo run --release -p multiscale-train --example own_model).
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{conv2d, Conv2dConfig, VarBuilder, VarMap};
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    train::threads::configure();
    let dev = Device::Cpu;
    // Any candle model: here a residual pair of 3x3 convolutions.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let same = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let (c1, c2) = (
        conv2d(1, 16, 3, same, vb.pp("c1"))?,
        conv2d(16, 1, 3, same, vb.pp("c2"))?,
    );
    let model = |x: &Tensor, _t: Option<&Tensor>| x + c2.forward(&c1.forward(x)?.relu()?)?;
    let loss = |p: &Tensor, t: &Tensor| (p - t)?.sqr(); // mean taken by the estimator
                                                        // Fresh noisy dead-leaves images on a 32x32 mesh (denoising), seeded.
    let loader = data::Loader::new(Arc::new(data::DeadLeaves::new(0)), 32, 0, 1);
    let sampler = mge::LoaderSampler::new(loader, data::Degradation::Denoise, 0, dev.clone());
    // Full-Multiscale over meshes 8, 16, 32 (N_0 = 4); each stage an MGE over its levels.
    let plan = mge::LevelPlan::multiscale(3, 4)?;
    let schedule = mge::StageSchedule::Halving;
    let stages = fmg::stages(fmg::Strategy::FullMultiscale { schedule }, &plan, 40)?;
    let driver = fmg::Driver::new(
        stages,
        fmg::DriverConfig {
            lr: 1e-3,
            ..Default::default()
        },
    )?;
    let out = std::env::temp_dir().join(format!("own-model-{}", std::process::id()));
    let outcome = train::Trainer::new(&model, &varmap, &loss, sampler, driver)
        .with_checkpoints(&out, 25)?
        .on_progress(|p| {
            if p.point.iteration % 10 == 0 {
                println!(
                    "it {:3} mesh 2^{}h loss {:.4}",
                    p.point.iteration, p.point.level, p.point.loss
                );
            }
            Ok(())
        })
        .run()?;
    println!(
        "{} iterations, {:.0} #WU, {:.1} s",
        outcome.history.len(),
        outcome.wu,
        outcome.train_s
    );
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
