//! `cargo xtask reproduce table5`: test error at fixed #WU budgets (001 Table 5), single-scale
//! (batch N0) against each multiscale strategy.

use crate::reproduce::Common;
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
}

/// 001 Table 5 as printed: (#WU budget, single-scale MSE, multiscale MSE).
pub const PAPER: [(f64, f64, f64); 8] = [
    (10.0, 0.1000, 0.0444),
    (20.0, 0.0514, 0.0179),
    (30.0, 0.0354, 0.0231),
    (40.0, 0.0277, 0.0122),
    (60.0, 0.0204, 0.0191),
    (70.0, 0.0178, 0.0133),
    (80.0, 0.0159, 0.0114),
    (90.0, 0.0151, 0.0101),
];

pub fn run(_args: Args, _ctx: &crate::common::Context) -> Result<()> {
    anyhow::bail!("reproduce table5 needs the training engine (mge/fmg), not wired yet")
}
