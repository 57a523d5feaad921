//! A [`train::Trainer`] interrupted after any iteration and resumed from its checkpoint
//! folder continues exactly as the uninterrupted run: Adam's moments, the sampler position,
//! the #WU total and the driver's adaptive allocation and early stopping all come back.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{conv2d, Conv2d, Conv2dConfig, VarMap};
use mge::Sampler;
use std::path::Path;
use std::sync::Arc;

/// A residual pair of 3x3 convolutions with seeded weights.
struct Net {
    c1: Conv2d,
    c2: Conv2d,
}

impl Net {
    fn new(varmap: &VarMap) -> Net {
        let vb = models::init::seeded_var_builder(varmap, 3, DType::F32, &Device::Cpu);
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Net {
            c1: conv2d(1, 4, 3, same, vb.pp("c1")).unwrap(),
            c2: conv2d(4, 1, 3, same, vb.pp("c2")).unwrap(),
        }
    }
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x + self.c2.forward(&self.c1.forward(x)?.tanh()?)?
    }
}

fn sampler(seed: u64) -> mge::LoaderSampler {
    let images = data::Loader::new(Arc::new(data::DeadLeaves::new(seed)), 16, seed, 1);
    mge::LoaderSampler::new(images, data::Degradation::Denoise, seed, Device::Cpu)
}

/// Full-Multiscale over 3 levels with adaptive batches and early stopping that ends every
/// stage at its second validation.
fn driver() -> fmg::Driver {
    let plan = mge::LevelPlan::multiscale(3, 2).unwrap();
    let schedule = mge::StageSchedule::Equal;
    let stages = fmg::stages(fmg::Strategy::FullMultiscale { schedule }, &plan, 6).unwrap();
    let cfg = fmg::DriverConfig {
        lr: 1e-2,
        validate_every: 2,
        patience: Some(1),
        min_delta: 1e9,
        adaptive: Some(3),
        ..Default::default()
    };
    fmg::Driver::new(stages, cfg).unwrap()
}

/// Why a run stopped on purpose.
#[derive(Debug, thiserror::Error)]
#[error("interrupted after iteration {0}")]
struct Interrupted(u64);

/// One history point as bits: iteration, stage, loss, #WU, validation loss.
type Point = (u64, usize, u64, u64, Option<u64>);

/// Trains into `out` (resuming what is there), failing after iteration `stop_at`; returns
/// the history or the error.
fn train(out: &Path, stop_at: Option<u64>) -> Result<Vec<Point>, train::Error> {
    let varmap = VarMap::new();
    let net = Net::new(&varmap);
    let model = |x: &Tensor, _t: Option<&Tensor>| net.forward(x);
    let loss = |p: &Tensor, t: &Tensor| (p - t)?.sqr();
    let mut trainer = train::Trainer::new(&model, &varmap, &loss, sampler(0), driver())
        .with_validation(sampler(1).draw(4).unwrap())
        .with_checkpoints(out, 1)?
        .on_progress(move |p| match Some(p.point.iteration) == stop_at {
            true => Err(Interrupted(p.point.iteration).into()),
            false => Ok(()),
        });
    trainer.resume()?;
    let outcome = trainer.run()?;
    // Drawing batches is part of the training time, summed over resumes.
    for (i, h) in outcome.history.iter().enumerate() {
        assert!(h.data_s > 0.0 && h.data_s <= h.train_s, "{h:?}");
        assert!(i == 0 || h.data_s >= outcome.history[i - 1].data_s, "{h:?}");
    }
    Ok(outcome
        .history
        .iter()
        .map(|h| {
            (
                h.iteration,
                h.stage,
                h.loss.to_bits(),
                h.wu.to_bits(),
                h.val_loss.map(f64::to_bits),
            )
        })
        .collect())
}

#[test]
fn resumed_runs_follow_the_uninterrupted_history_exactly() {
    let root = std::env::temp_dir().join(format!("train-resume-{}", std::process::id()));
    let whole = train(&root.join("whole"), None).unwrap();
    assert!(
        whole.len() < 18,
        "early stopping ends stages: {} iterations",
        whole.len()
    );
    let stages: std::collections::BTreeSet<usize> = whole.iter().map(|h| h.1).collect();
    assert_eq!(stages.len(), 3);
    for (i, h) in whole.iter().enumerate().take(whole.len() - 1).step_by(2) {
        let out = root.join(format!("stop-{i}"));
        match train(&out, Some(h.0)) {
            Err(train::Error::Callback(e)) => {
                let e = e
                    .downcast::<Interrupted>()
                    .expect("the callback's own error type");
                assert_eq!(e.0, h.0);
            }
            other => panic!("expected the callback's error, got {other:?}"),
        }
        assert_eq!(
            train(&out, None).unwrap(),
            whole,
            "interrupted after iteration {}",
            h.0
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}
