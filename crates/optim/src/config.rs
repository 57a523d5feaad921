//! Config-file selection of a second-order optimizer.

use candle_core::Var;
use serde::{Deserialize, Serialize};

use crate::{
    ClosureKind, GaussNewton, GaussNewtonConfig, Result, SecondOrder, Steihaug, SteihaugConfig,
    StepReport,
};

/// Which optimizer to build, tagged by `kind = "gauss-newton" | "steihaug"` (TOML/JSON), e.g.
/// `{ kind = "steihaug", radius_init = 0.5 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OptimizerConfig {
    /// [`GaussNewton`] (closure returns a residual).
    GaussNewton(GaussNewtonConfig),
    /// [`Steihaug`] (closure per [`SteihaugConfig::objective`]).
    Steihaug(SteihaugConfig),
}

impl OptimizerConfig {
    /// Build the optimizer over `vars`.
    pub fn build(&self, vars: Vec<Var>) -> Result<Box<dyn SecondOrder>> {
        Ok(match *self {
            Self::GaussNewton(c) => Box::new(GaussNewton::new(vars, c)?),
            Self::Steihaug(c) => Box::new(Steihaug::new(vars, c)?),
        })
    }

    /// What the optimizer's closure must return ([`crate::SecondOrder::closure_kind`]).
    pub fn closure_kind(&self) -> ClosureKind {
        match self {
            Self::GaussNewton(_) => ClosureKind::Residual,
            Self::Steihaug(c) => c.objective,
        }
    }

    /// Error on out-of-range settings (what [`OptimizerConfig::build`] checks first).
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::GaussNewton(c) => c.validate(),
            Self::Steihaug(c) => c.validate(),
        }
    }

    /// The config that continues a run whose last step reported `last`: the initial damping
    /// `lambda_0` or radius `Delta_0` set to the adapted `lambda_{k+1}` / `Delta_{k+1}` (the
    /// optimizers' only state between steps), so a resumed run steps as the uninterrupted one.
    pub fn continued(&self, last: &StepReport) -> Self {
        match *self {
            Self::GaussNewton(c) => Self::GaussNewton(GaussNewtonConfig {
                damping_init: last.damping.unwrap_or(c.damping_init),
                ..c
            }),
            Self::Steihaug(c) => Self::Steihaug(SteihaugConfig {
                radius_init: last.radius.unwrap_or(c.radius_init),
                ..c
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    /// Rosenbrock in residual form `r = (10 (y - x^2), 1 - x)` from (-1.2, 1).
    fn rosenbrock(theta: &Var) -> candle_core::Result<Tensor> {
        let t = theta.as_tensor();
        let (x, y) = (t.narrow(0, 0, 1)?, t.narrow(0, 1, 1)?);
        Tensor::cat(&[((y - x.sqr()?)? * 10.0)?, x.affine(-1.0, 1.0)?], 0)
    }

    /// `steps` steps of `cfg` from `start`: the parameters and the last report.
    fn run(cfg: OptimizerConfig, start: &[f64], steps: usize) -> (Vec<f64>, StepReport) {
        let theta = Var::from_slice(start, 2, &Device::Cpu).unwrap();
        let mut opt = cfg.build(vec![theta.clone()]).unwrap();
        let mut last = None;
        for _ in 0..steps {
            last = Some(opt.step(&mut || rosenbrock(&theta)).unwrap());
        }
        let t = theta.as_tensor().to_dtype(DType::F64).unwrap();
        (t.to_vec1().unwrap(), last.unwrap())
    }

    #[test]
    fn a_continued_config_resumes_the_uninterrupted_steps() {
        let steihaug = SteihaugConfig {
            objective: crate::ClosureKind::Residual,
            ..Default::default()
        };
        for cfg in [
            OptimizerConfig::GaussNewton(GaussNewtonConfig::default()),
            OptimizerConfig::Steihaug(steihaug),
        ] {
            let (whole, _) = run(cfg, &[-1.2, 1.0], 20);
            let (mid, last) = run(cfg, &[-1.2, 1.0], 10);
            assert_ne!(mid, whole, "the last 10 steps move");
            let next = cfg.continued(&last);
            assert_ne!(next, cfg, "the damping or radius adapted in 10 steps");
            let (resumed, _) = run(next, &mid, 10);
            assert_eq!(resumed, whole, "{cfg:?}");
            // Restarting from the config's initial value takes other steps.
            assert_ne!(run(cfg, &mid, 10).0, whole, "{cfg:?}");
        }
    }
}
