//! MgNet (He & Xu 2019; 004 "Practical MgNet with batch normalization") for classification.

use crate::activation::Act;
use crate::config::MgnetConfig;
use crate::conv::{Conv, ConvKind, ConvSpec};
use crate::error::{Error, Result};
use crate::model::{validate, Model};
use crate::norm::BatchNorm;
use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

/// `sigma(x) = act(BN(x))` (004 eq. 25), or `act(x)` without batch norm.
struct Sigma {
    bn: Option<BatchNorm>,
    act: Act,
}

impl Sigma {
    /// The `sigma` of a level-`level` place, its batch norm under `vb`; a trainable Hat support
    /// is shared by the level (`levels.{level}.hat_support`, under `vlevel`).
    fn new(
        channels: usize,
        cfg: &MgnetConfig,
        level: usize,
        vlevel: &VarBuilder,
        vb: VarBuilder,
    ) -> Result<Self> {
        let bn = if cfg.batch_norm {
            Some(BatchNorm::new(channels, vb)?)
        } else {
            None
        };
        Ok(Self {
            bn,
            act: Act::new(&cfg.activation, level, vlevel)?,
        })
    }
}

impl Module for Sigma {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = match &self.bn {
            Some(bn) => bn.forward(x)?,
            None => x.clone(),
        };
        self.act.forward(&x)
    }
}

/// The operators of one level: `A^l`, `B^l` (shared by the level's smoothing steps, as in
/// `MgNet[2,2,2,2],256` with 8.2M parameters) and the `sigma`s of each step.
struct Level {
    a: Conv,
    b: Conv,
    steps: Vec<(Sigma, Sigma)>,
}

/// Restriction from level `l` to `l + 1`: `Pi`, `R` (3x3, stride 2) and their `sigma`s.
struct Transition {
    pi: Conv,
    r: Conv,
    sigma_u: Sigma,
    sigma_f: Sigma,
}

/// MgNet[nu_1, .., nu_J] (004): `f^1 = theta * x`, `u^1 = 0`; on level `l`, `nu_l` smoothing steps
/// `u <- u + sigma(B^l * sigma(f^l - A^l * u))`; then `u^{l+1} = sigma(Pi *_2 u^l)`,
/// `f^{l+1} = sigma(R *_2 (f^l - A^l * u^l)) + A^{l+1} * u^{l+1}`; output logits
/// `W mean_{pixels}(u^J) + b` (global average pooling head). Convolutions have no bias.
/// Down-sampling factor `2^(J-1)`.
pub struct MgNet {
    in_channels: usize,
    factor: usize,
    theta: Conv,
    levels: Vec<Level>,
    transitions: Vec<Transition>,
    head: Linear,
}

impl MgNet {
    /// Build from `cfg`.
    pub fn new(cfg: &MgnetConfig, vb: VarBuilder) -> Result<Self> {
        let j = cfg.channels.len();
        if j == 0 || cfg.smoothings.len() != j || cfg.channels.contains(&0) || cfg.classes == 0 {
            return Err(Error::InvalidConfig(format!(
                "MgNet needs as many smoothing counts {:?} as level widths {:?}, all positive, and classes > 0",
                cfg.smoothings, cfg.channels
            )));
        }
        let kind: ConvKind = cfg.conv;
        let conv = |c_in: usize, c_out: usize, stride: usize, vb: VarBuilder| {
            Conv::new(
                ConvSpec::new(c_in, c_out, 3).stride(stride).no_bias(),
                kind,
                vb,
            )
        };
        let theta = conv(cfg.in_channels, cfg.channels[0], 1, vb.pp("theta"))?;
        let mut levels = Vec::with_capacity(j);
        let mut transitions = Vec::with_capacity(j - 1);
        for (l, (&c, &nu)) in cfg.channels.iter().zip(&cfg.smoothings).enumerate() {
            let vl = vb.pp(format!("levels.{l}"));
            let steps = (0..nu)
                .map(|i| {
                    let vs = vl.pp(format!("steps.{i}"));
                    Ok((
                        Sigma::new(c, cfg, l, &vl, vs.pp("inner"))?,
                        Sigma::new(c, cfg, l, &vl, vs.pp("outer"))?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            levels.push(Level {
                a: conv(c, c, 1, vl.pp("a"))?,
                b: conv(c, c, 1, vl.pp("b"))?,
                steps,
            });
            if let Some(&c_next) = cfg.channels.get(l + 1) {
                let vt = vb.pp(format!("transitions.{l}"));
                let vnext = vb.pp(format!("levels.{}", l + 1));
                transitions.push(Transition {
                    pi: conv(c, c_next, 2, vt.pp("pi"))?,
                    r: conv(c, c_next, 2, vt.pp("r"))?,
                    sigma_u: Sigma::new(c_next, cfg, l + 1, &vnext, vt.pp("sigma_u"))?,
                    sigma_f: Sigma::new(c_next, cfg, l + 1, &vnext, vt.pp("sigma_f"))?,
                });
            }
        }
        let head = linear(cfg.channels[j - 1], cfg.classes, vb.pp("head"))?;
        Ok(Self {
            in_channels: cfg.in_channels,
            factor: 1 << (j - 1),
            theta,
            levels,
            transitions,
            head,
        })
    }
}

impl Model for MgNet {
    fn forward(&self, x: &Tensor, _t: Option<&Tensor>) -> candle_core::Result<Tensor> {
        validate(self, x)?;
        let mut f = self.theta.forward(x)?;
        let mut u = f.zeros_like()?;
        for (l, level) in self.levels.iter().enumerate() {
            for (inner, outer) in &level.steps {
                let residual = (&f - level.a.forward(&u)?)?;
                u = (&u + outer.forward(&level.b.forward(&inner.forward(&residual)?)?)?)?;
            }
            if let (Some(tr), Some(next)) = (self.transitions.get(l), self.levels.get(l + 1)) {
                let residual = (&f - level.a.forward(&u)?)?;
                u = tr.sigma_u.forward(&tr.pi.forward(&u)?)?;
                f = (tr.sigma_f.forward(&tr.r.forward(&residual)?)? + next.a.forward(&u)?)?;
            }
        }
        self.head.forward(&u.mean(3)?.mean(2)?)
    }

    fn downsampling_factor(&self) -> usize {
        self.factor
    }

    fn in_channels(&self) -> usize {
        self.in_channels
    }
}
