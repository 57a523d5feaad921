//! `cargo xtask workunits`: the exact #WU of a training strategy (001 Appendix B, eqs. 39-48).

use crate::common::Context;
use anyhow::Result;
use mge::workunits::{fmg_wu, mge_wu_per_iter, single_wu_per_iter};
use mge::{Fraction, StageSchedule};

/// Training strategy whose #WU is computed.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Batch `sum_l 2^l N0` on the finest mesh, `I` iterations (eq. 41).
    Single,
    /// MGE with `N_l = 2^l N0`, `I` iterations (eqs. 39-40).
    Multiscale,
    /// Full-Multiscale, `I` iterations on the coarsest stage (eqs. 42-48).
    FullMultiscale,
}

/// Stage iteration schedule of Full-Multiscale.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// `I, I/2, I/4, ...` from coarsest to finest (eq. 47).
    Halving,
    /// `I` on every stage (eq. 48).
    Equal,
}

/// Arguments of `cargo xtask workunits`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Training strategy.
    #[arg(long, value_enum)]
    pub strategy: Strategy,
    /// Number of levels L.
    #[arg(long, default_value_t = 4)]
    pub levels: usize,
    /// Base batch size N0 (finest level).
    #[arg(long)]
    pub n0: usize,
    /// Iterations I (the coarsest stage's count for full-multiscale).
    #[arg(long)]
    pub iters: usize,
    /// Full-Multiscale stage schedule.
    #[arg(long, value_enum, default_value = "halving")]
    pub schedule: Schedule,
}

/// The exact #WU of `a`.
pub fn workunits(a: &Args) -> Result<Fraction> {
    anyhow::ensure!(
        a.levels >= 1 && a.levels <= 12,
        "--levels {} must be in 1..=12",
        a.levels
    );
    anyhow::ensure!(a.n0 >= 1, "--n0 must be at least 1");
    anyhow::ensure!(
        a.iters >= 1,
        "--iters must be at least 1 (0 iterations train nothing)"
    );
    let iters = Fraction::from_int(a.iters as u128);
    Ok(match a.strategy {
        Strategy::Single => single_wu_per_iter(a.levels, a.n0)?.checked_mul(iters)?,
        Strategy::Multiscale => mge_wu_per_iter(a.levels, a.n0)?.checked_mul(iters)?,
        Strategy::FullMultiscale => {
            let s = match a.schedule {
                Schedule::Halving => StageSchedule::Halving,
                Schedule::Equal => StageSchedule::Equal,
            };
            fmg_wu(a.levels, a.n0, a.iters, s)?
        }
    })
}

/// Prints the exact #WU (an integer or `p/q`) on stdout.
pub fn run(a: Args, _ctx: &Context) -> Result<()> {
    println!("{}", workunits(&a)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wu(
        strategy: Strategy,
        levels: usize,
        n0: usize,
        iters: usize,
        schedule: Schedule,
    ) -> String {
        workunits(&Args {
            strategy,
            levels,
            n0,
            iters,
            schedule,
        })
        .unwrap()
        .to_string()
    }

    /// Smaller cases: `--iters 0` is an error for every strategy (it gave 63 #WU for
    /// full-multiscale and 0 for the others).
    #[test]
    fn zero_iterations_are_refused() {
        for strategy in [
            Strategy::Single,
            Strategy::Multiscale,
            Strategy::FullMultiscale,
        ] {
            let a = Args {
                strategy,
                levels: 4,
                n0: 16,
                iters: 0,
                schedule: Schedule::Halving,
            };
            assert!(workunits(&a).unwrap_err().to_string().contains("--iters"));
        }
    }

    #[test]
    fn table2_figures() {
        use Schedule::*;
        use Strategy::*;
        // Denoising/deblurring/inpainting: N0 = 16, I = 2000; super-resolution: N0 = 8, I = 250.
        assert_eq!(wu(Single, 4, 16, 2000, Halving), "480000");
        assert_eq!(wu(Multiscale, 4, 16, 2000, Halving), "74000");
        assert_eq!(wu(FullMultiscale, 4, 16, 2000, Halving), "28750");
        assert_eq!(wu(FullMultiscale, 4, 16, 2000, Equal), "126000");
        assert_eq!(wu(Single, 4, 8, 250, Halving), "30000");
        assert_eq!(wu(Multiscale, 4, 8, 250, Halving), "4625");
        assert_eq!(wu(FullMultiscale, 4, 8, 250, Equal), "7875");
        assert_eq!(wu(Multiscale, 4, 1, 1, Halving), "37/16");
        assert!(workunits(&Args {
            strategy: Single,
            levels: 0,
            n0: 1,
            iters: 1,
            schedule: Equal
        })
        .is_err());
    }
}
