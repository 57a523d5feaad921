//! The parameter update of one driver iteration: a first-order step from the MGE gradient
//! (any candle-nn `Optimizer`, e.g. Adam) or a matrix-free second-order step
//! (`optim::SecondOrder`: Gauss-Newton-CG, 002 section 3; CG-Steihaug, 003 eq. 3.7) that
//! re-evaluates the same iteration's MGE loss (001 eq. 6) at perturbed and trial parameters.
//!
//! Re-evaluation replays the iteration's draws: [`Recorder`] keeps the batches the estimator
//! drew, [`Replay`] hands them out again in the same order, and `Estimator::loss` is
//! deterministic given the draws and the iteration number, so at unchanged parameters the
//! re-evaluated loss equals the iteration's loss exactly.

use crate::{Error, Result};
use candle_core::Tensor;
use data::Degraded;
use mge::{MgeLoss, Sampler, Step};
use optim::{ClosureKind, SecondOrder, StepReport};

/// Re-evaluates the iteration's MGE loss at the current parameter values (same batches, same
/// subsampling choices); every call records its model applications in the accountant.
pub type Reevaluate<'a> = dyn FnMut() -> mge::Result<MgeLoss> + 'a;

/// One parameter update per driver iteration.
pub trait Update {
    /// Learning rate of the schedule at this iteration (ignored by second-order updates,
    /// whose step length comes from the damping or the trust radius).
    fn set_learning_rate(&mut self, lr: f64);

    /// Update the parameters from the iteration's `step` (loss and MGE gradient), calling
    /// `reevaluate` as often as needed; returns the second-order step's report, if any.
    fn update(&mut self, step: &Step, reevaluate: &mut Reevaluate) -> Result<Option<StepReport>>;
}

/// A candle-nn `Optimizer` as an [`Update`]: `opt.step(&step.grads)`, no re-evaluation.
pub struct FirstOrder<'a, O>(pub &'a mut O);

impl<O: candle_nn::Optimizer> Update for FirstOrder<'_, O> {
    fn set_learning_rate(&mut self, lr: f64) {
        self.0.set_learning_rate(lr);
    }

    fn update(&mut self, step: &Step, _: &mut Reevaluate) -> Result<Option<StepReport>> {
        self.0.step(&step.grads)?;
        Ok(None)
    }
}

/// An `optim::SecondOrder` optimizer as an [`Update`]. Its closure returns
/// * [`ClosureKind::Loss`]: the MGE loss `sum_l (loss_l(B_l) - loss_{l+1}(R B_l))`;
/// * [`ClosureKind::Residual`]: `r = f(theta; u) - y` of the only term, which needs a
///   single-scale plan (one term, no coarse side) and the MSE loss `mean (f - y)^2`, so that
///   the least-squares loss `1/(2m) ||r||^2` is half the MGE loss (checked on every call;
///   anything else is an [`Error::Invalid`] naming why).
///
/// The iteration's gradient from the estimator is not used (the optimizer recomputes it).
pub struct SecondOrderUpdate {
    opt: Box<dyn SecondOrder>,
}

impl SecondOrderUpdate {
    /// Wraps `opt` (built e.g. by `optim::OptimizerConfig::build`).
    pub fn new(opt: Box<dyn SecondOrder>) -> Self {
        SecondOrderUpdate { opt }
    }

    /// The wrapped optimizer.
    pub fn optimizer(&self) -> &dyn SecondOrder {
        self.opt.as_ref()
    }
}

impl Update for SecondOrderUpdate {
    fn set_learning_rate(&mut self, _lr: f64) {}

    fn update(&mut self, _: &Step, reevaluate: &mut Reevaluate) -> Result<Option<StepReport>> {
        let kind = self.opt.closure_kind();
        // The closure speaks candle errors; keep the typed cause to return it unchanged.
        let mut cause: Option<Error> = None;
        let mut closure = || -> candle_core::Result<Tensor> {
            let out = reevaluate()
                .map_err(Error::from)
                .and_then(|l| closure_output(l, kind));
            out.map_err(|e| {
                let msg = candle_core::Error::Msg(e.to_string());
                cause = Some(e);
                msg
            })
        };
        let report = self.opt.step(&mut closure);
        match (report, cause) {
            (Ok(r), _) => Ok(Some(r)),
            (Err(_), Some(e)) => Err(e),
            (Err(e), None) => Err(e.into()),
        }
    }
}

/// What the second-order closure returns for `kind` (see [`SecondOrderUpdate`]).
pub fn closure_output(loss: MgeLoss, kind: ClosureKind) -> Result<Tensor> {
    match kind {
        ClosureKind::Loss => Ok(loss.total),
        ClosureKind::Residual => {
            let [term] = <[_; 1]>::try_from(loss.terms).map_err(|t: Vec<_>| {
                Error::Invalid(format!(
                    "a least-squares residual (Gauss-Newton, or Steihaug with objective = \
                     \"residual\") needs a single-scale plan: the MGE loss has {} terms",
                    t.len()
                ))
            })?;
            if term.coarse.is_some() {
                return Err(Error::Invalid(
                    "a least-squares residual needs a single-scale plan: the term has a coarse side"
                        .into(),
                ));
            }
            let (pred, target) = term.fine;
            let r = (pred - target)?;
            let mse = scalar(&r.sqr()?.mean_all()?)?;
            let reported = scalar(&term.loss_fine)?;
            if (mse - reported).abs() > 1e-5 * (1.0 + mse.abs()) {
                return Err(Error::Invalid(format!(
                    "a least-squares residual needs the MSE loss: the loss is {reported:.6e}, \
                     mean (f - y)^2 = {mse:.6e}"
                )));
            }
            Ok(r)
        }
    }
}

fn scalar(x: &Tensor) -> Result<f64> {
    Ok(x.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

/// A [`Sampler`] that passes draws through and keeps a copy of each (tensors are shared,
/// not copied), and the seconds spent in them.
pub struct Recorder<'a, S: ?Sized = dyn Sampler> {
    inner: &'a mut S,
    draws: Vec<Degraded>,
    seconds: f64,
}

impl<'a, S: Sampler + ?Sized> Recorder<'a, S> {
    /// Records what `inner` hands out.
    pub fn new(inner: &'a mut S) -> Self {
        Recorder {
            inner,
            draws: Vec::new(),
            seconds: 0.0,
        }
    }

    /// Seconds spent in `inner`'s draws so far.
    pub fn seconds(&self) -> f64 {
        self.seconds
    }

    /// The draws so far, in order.
    pub fn into_draws(self) -> Vec<Degraded> {
        self.draws
    }
}

impl<S: Sampler + ?Sized> Sampler for Recorder<'_, S> {
    fn draw(&mut self, count: usize) -> mge::Result<Degraded> {
        let t = std::time::Instant::now();
        let d = self.inner.draw(count)?;
        self.seconds += t.elapsed().as_secs_f64();
        self.draws.push(d.clone());
        Ok(d)
    }
}

/// A [`Sampler`] that hands out recorded draws again, in order; asking for another count or
/// for more draws than were recorded is an `mge::Error::Sampler`.
pub struct Replay<'a> {
    draws: &'a [Degraded],
    next: usize,
}

impl<'a> Replay<'a> {
    /// Replays `draws` from the first.
    pub fn new(draws: &'a [Degraded]) -> Self {
        Replay { draws, next: 0 }
    }
}

impl Sampler for Replay<'_> {
    fn draw(&mut self, count: usize) -> mge::Result<Degraded> {
        let d = self.draws.get(self.next).ok_or_else(|| {
            mge::Error::Sampler(format!("replay: only {} draws recorded", self.draws.len()))
        })?;
        let recorded = d.input.dim(0)?;
        if recorded != count {
            return Err(mge::Error::Sampler(format!(
                "replay: draw {} asked {count} samples, {recorded} were recorded",
                self.next
            )));
        }
        self.next += 1;
        Ok(d.clone())
    }
}
