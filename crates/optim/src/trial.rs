//! Accept-or-reject test of a trial step shared by both optimizers.

use candle_core::{Tensor, Var};

use crate::flat::assign;
use crate::objective::{loss_value, scalar_loss, ClosureKind};
use crate::Result;

/// Outcome of [`try_step`].
pub(crate) struct Trial {
    /// Loss at the parameters left in place (trial point if accepted, else the old one).
    pub loss: f64,
    /// `rho = (L(theta) - L(theta + p)) / pred`, `-inf` when `pred <= 0` or `L(theta + p)` is not finite.
    pub ratio: f64,
    /// Whether `theta + p` was kept.
    pub accepted: bool,
}

/// Set the variables to `theta + p`, evaluate `L` there and keep the point when the ratio of
/// actual to predicted reduction `rho = (L_0 - L(theta + p)) / pred` exceeds `eta`
/// (N&W Algorithm 4.1); otherwise restore `theta`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn try_step(
    vars: &[Var],
    theta: &[f64],
    p: &[f64],
    closure: &mut dyn FnMut() -> candle_core::Result<Tensor>,
    kind: ClosureKind,
    loss0: f64,
    pred: f64,
    eta: f64,
) -> Result<Trial> {
    let point: Vec<f64> = theta.iter().zip(p).map(|(t, d)| t + d).collect();
    assign(vars, &point)?;
    let evaluated = closure()
        .map_err(crate::Error::from)
        .and_then(|out| loss_value(&scalar_loss(&out, kind)?));
    let loss1 = match evaluated {
        Ok(l) => l,
        Err(e) => {
            assign(vars, theta)?;
            return Err(e);
        }
    };
    let ratio = if pred > 0.0 && loss1.is_finite() {
        (loss0 - loss1) / pred
    } else {
        f64::NEG_INFINITY
    };
    if ratio > eta {
        Ok(Trial {
            loss: loss1,
            ratio,
            accepted: true,
        })
    } else {
        assign(vars, theta)?;
        Ok(Trial {
            loss: loss0,
            ratio,
            accepted: false,
        })
    }
}
