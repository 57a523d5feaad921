//! Activations of the models' configurations: ReLU, the authors' leaky ReLU, identity, and the
//! locally supported Hat of 004 ("Locally supported activation for CNNs").

use crate::config::Activation;
use crate::error::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

/// Slope of the authors' leaky ReLU for negative inputs.
pub const LEAK: f64 = 0.2;

/// The support `s` of a Hat: a constant, or a trainable scalar variable.
#[derive(Debug, Clone)]
pub enum Support {
    /// A constant `s`.
    Fixed(f64),
    /// A one-element variable.
    Trainable(Tensor),
}

/// An activation ready to apply (one per place in a network; see [`Activation`]).
#[derive(Debug, Clone)]
pub enum Act {
    /// `max(x, 0)`.
    Relu,
    /// `max(x, 0.2 x)`.
    LeakyRelu,
    /// `x`.
    Identity,
    /// `hat_s(x)` of [`hat`] with support `[0, s]`.
    Hat(Support),
}

impl Act {
    /// The activation `cfg` describes at `level` (0 = finest; the Hat's per-level support list
    /// repeats its last entry). A trainable Hat support is the scalar variable `hat_support` of
    /// `vb`, initialised to the configured value (shared by every call with the same `vb`).
    pub fn new(cfg: &Activation, level: usize, vb: &VarBuilder) -> Result<Self> {
        Ok(match cfg {
            Activation::Relu => Act::Relu,
            Activation::LeakyRelu => Act::LeakyRelu,
            Activation::Identity => Act::Identity,
            Activation::Hat(h) => {
                let s = h.support_at(level)?;
                if h.trainable {
                    Act::Hat(Support::Trainable(vb.get_with_hints(
                        1,
                        "hat_support",
                        Init::Const(s),
                    )?))
                } else {
                    Act::Hat(Support::Fixed(s))
                }
            }
        })
    }
}

impl Module for Act {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Act::Relu => x.relu(),
            Act::LeakyRelu => candle_nn::ops::leaky_relu(x, LEAK),
            Act::Identity => Ok(x.clone()),
            Act::Hat(Support::Fixed(s)) => hat(x, *s),
            Act::Hat(Support::Trainable(s)) => hat_trainable(x, s),
        }
    }
}

/// `hat_s(x) = ReLU(x) - 2 ReLU(x - s/2) + ReLU(x - s)`: `x` on `[0, s/2]`, `s - x` on
/// `[s/2, s]`, 0 elsewhere (004: `hat_s(x) = (s/2) phi(x/s)` with the hat basis `phi` on
/// `[0, 1]`; slope 1 at 0 like ReLU, which it becomes as `s -> infinity`).
pub fn hat(x: &Tensor, s: f64) -> candle_core::Result<Tensor> {
    let mid = (x - s / 2.0)?.relu()?;
    (x.relu()? - (mid * 2.0)?)? + (x - s)?.relu()?
}

/// [`hat`] with the support a tensor of one element (gradients flow to it:
/// `d hat_s / ds = 1` on `(s/2, s)`, 0 elsewhere).
pub fn hat_trainable(x: &Tensor, s: &Tensor) -> candle_core::Result<Tensor> {
    let s = s.to_dtype(x.dtype())?.reshape(())?;
    let mid = x.broadcast_sub(&(&s * 0.5)?)?.relu()?;
    (x.relu()? - (mid * 2.0)?)? + x.broadcast_sub(&s)?.relu()?
}

/// `Error::InvalidConfig` unless every support is finite and positive.
pub(crate) fn check_supports(support: &[f64]) -> Result<()> {
    if support.is_empty() || support.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::InvalidConfig(format!(
            "hat support {support:?}: needs at least one value, all positive"
        )));
    }
    Ok(())
}
