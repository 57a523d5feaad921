//! `cargo xtask reproduce table6`: multiscale and full-multiscale with L = 2, 3, 4 levels
//! (001 Table 6, denoising, coarsening).

use crate::reproduce::Common;
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
}

/// 001 Table 6 as printed: (strategy, levels, #WU, UNet MSE, ResNet MSE).
pub const PAPER: [(&str, usize, &str, f64, f64); 6] = [
    ("multiscale", 4, "74k", 0.1975, 0.1653),
    ("full-multiscale", 4, "28.7k", 0.1567, 0.1658),
    ("multiscale", 3, "68k", 0.2010, 0.1741),
    ("full-multiscale", 3, "19.5k", 0.1644, 0.1703),
    ("multiscale", 2, "56k", 0.2641, 0.2081),
    ("full-multiscale", 2, "11k", 0.1895, 0.1730),
];

pub fn run(_args: Args, _ctx: &crate::common::Context) -> Result<()> {
    anyhow::bail!("reproduce table6 needs the training engine (mge/fmg), not wired yet")
}
