//! Optimizers over candle [`Var`]s: a resumable first-order [`Adam`] and matrix-free
//! second-order methods.
//!
//! * [`Adam`] (`adam.rs`): Kingma & Ba's Adam, Algorithm 1, with in-place CPU updates and a
//!   state that saves and loads, so a resumed run continues exactly.
//! * [`GaussNewton`]: Gauss-Newton-CG with Levenberg-Marquardt damping for least-squares losses
//!   `L = 1/(2m) ||f(theta) - y||^2` (002 section 3: "Gauss-Newton-CG ... only matrix-vector
//!   products are needed").
//! * [`Steihaug`]: CG-Steihaug trust-region Newton (003 eq. 3.7; Nocedal & Wright Algorithm 7.2)
//!   for any scalar loss.
//!
//! Neither forms a matrix: products with `J`, `J^T` and the Hessian come from central finite
//! differences ([`fd`]) and backward passes, and the linear systems are solved by the shared
//! CG kernel [`cg::solve`] on flat `f64` vectors ([`flat`]).
//!
//! Unlike candle-nn's `Optimizer::step(&GradStore)`, a second-order step must re-evaluate the
//! objective at perturbed and trial parameters, so [`SecondOrder::step`] takes a closure that
//! recomputes the residual or the loss from the current variable values (as PyTorch's
//! `LBFGS.step(closure)`).
//!
//! Sources: `002 section 3` is Haber, Ruthotto and Holtham, *Learning across scales*; `003 eq.
//! 3.7` is Crafts, *Multiresolution Methods for Convolutional Neural Networks*; Nocedal and
//! Wright, *Numerical Optimization* (2nd ed.) for CG and trust regions.
//!
//! | file | what |
//! |---|---|
//! | `adam.rs` | resumable Adam (Kingma & Ba 2014, Algorithm 1) |
//! | `gauss_newton.rs` | Gauss-Newton-CG with Levenberg-Marquardt damping (002 section 3) |
//! | `steihaug.rs` | CG-Steihaug trust region (003 eq. 3.7; Nocedal & Wright Algorithms 4.1, 7.2) |
//! | `cg.rs` | the shared CG kernel, optionally in a trust region (Nocedal & Wright Algorithm 5.2) |
//! | `fd.rs` | central differences `(F(theta + h v) - F(theta - h v)) / (2 h)` for `J v` and `H v` (step as in Knoll & Keyes 2004, eq. 12) |
//! | `flat.rs` | parameters as one `f64` vector and back |
//! | `vector.rs` | inner product and norm |
//! | `objective.rs` | what the closure returns and the scalar loss |
//! | `trial.rs` | accept-or-reject test of a trial step |
//! | `config.rs` | config-file selection of a second-order optimizer |
//! | `error.rs` | typed errors of `optim` |
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use optim::{GaussNewton, GaussNewtonConfig, SecondOrder};
//!
//! # fn main() -> optim::Result<()> {
//! // Fit theta in y = A theta by least squares.
//! let dev = Device::Cpu;
//! let a = Tensor::new(&[[1f64, 0.5], [0.0, 2.0], [1.0, 1.0]], &dev)?;
//! let y = Tensor::new(&[[1f64], [2.0], [3.0]], &dev)?;
//! let theta = Var::zeros((2, 1), candle_core::DType::F64, &dev)?;
//! let mut opt = GaussNewton::new(vec![theta.clone()], GaussNewtonConfig::default())?;
//! let report = opt.step(&mut || a.matmul(theta.as_tensor())?.sub(&y))?;
//! assert!(report.loss_after < report.loss_before);
//! # Ok(())
//! # }
//! ```

pub mod adam;
pub mod cg;
mod config;
mod error;
pub mod fd;
pub mod flat;
pub mod gauss_newton;
mod objective;
pub mod steihaug;
mod trial;
pub mod vector;

use candle_core::{Tensor, Var};

pub use adam::{named_vars, sorted_vars, Adam, AdamOptimizer};
pub use cg::Termination;
pub use config::OptimizerConfig;
pub use error::{Error, Result};
pub use gauss_newton::{GaussNewton, GaussNewtonConfig};
pub use objective::{scalar_loss, ClosureKind};
pub use steihaug::{Steihaug, SteihaugConfig};

/// What one outer iteration did (all losses in `f64`).
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// `L(theta_k)`.
    pub loss_before: f64,
    /// `L(theta_{k+1})`: the trial loss if accepted, else `loss_before`.
    pub loss_after: f64,
    /// Model-predicted reduction `pred = m(0) - m(p)` (undamped model).
    pub predicted_reduction: f64,
    /// Ratio of actual to predicted reduction `rho`.
    pub ratio: f64,
    /// Whether the step was taken.
    pub accepted: bool,
    /// `||grad L(theta_k)||`.
    pub grad_norm: f64,
    /// `||p||` of the computed step (also when rejected).
    pub step_norm: f64,
    /// CG iterations (operator products) spent on the step.
    pub cg_iterations: usize,
    /// Why CG stopped.
    pub cg_termination: Termination,
    /// Trust-region radius `Delta_{k+1}` after the update (Steihaug).
    pub radius: Option<f64>,
    /// Damping `lambda_{k+1}` after the update (Gauss-Newton).
    pub damping: Option<f64>,
    /// Closure evaluations (forward passes) used by the step.
    pub forward_passes: usize,
    /// Backward passes used by the step.
    pub backward_passes: usize,
}

/// Common interface of the second-order optimizers (object safe, so a runner can hold a
/// `Box<dyn SecondOrder>` built from an [`OptimizerConfig`]).
///
/// Mirrors candle-nn's `Optimizer` where it fits (construction from `Vec<Var>` and a config,
/// `step`); there is no learning rate (the step length comes from the damping or the trust
/// radius) and `step` takes a closure instead of a `GradStore`.
pub trait SecondOrder {
    /// What the closure passed to [`SecondOrder::step`] must return.
    fn closure_kind(&self) -> ClosureKind;

    /// One outer iteration. `closure` recomputes the residual or scalar loss (per
    /// [`SecondOrder::closure_kind`]) from the current values of the variables, on a fixed
    /// batch for the duration of the step; it is called several times per step.
    fn step(
        &mut self,
        closure: &mut dyn FnMut() -> candle_core::Result<Tensor>,
    ) -> Result<StepReport>;

    /// The optimised variables.
    fn vars(&self) -> &[Var];
}

/// Keep the floating-point variables (as candle-nn's optimizers do); error when none remain.
fn float_vars(vars: Vec<Var>) -> Result<Vec<Var>> {
    let vars: Vec<Var> = vars.into_iter().filter(|v| v.dtype().is_float()).collect();
    if vars.is_empty() {
        return Err(Error::NoVariables);
    }
    Ok(vars)
}

/// Error unless `x` lies in the open interval `(lo, hi)`.
fn check_range(name: &str, x: f64, lo: f64, hi: f64) -> Result<()> {
    if x > lo && x < hi {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "{name} = {x} must lie in ({lo}, {hi})"
        )))
    }
}
