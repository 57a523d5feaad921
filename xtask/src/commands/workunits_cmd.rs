//! `cargo xtask workunits`: the exact #WU of a training strategy (001 Appendix B, eqs. 39-48).

use crate::common::Context;
use anyhow::Result;
use fmg::{StageSchedule, StrategyKind};
use mge::workunits::{fmg_wu, mge_wu_per_iter, single_wu_per_iter};
use mge::Fraction;

/// Arguments of `cargo xtask workunits`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Training strategy: `single` (batch `sum_l 2^l N0` on the finest mesh, `I` iterations,
    /// eq. 41), `multiscale` (MGE with `N_l = 2^l N0`, eqs. 39-40) or `full-multiscale` (`I`
    /// iterations on the coarsest stage, eqs. 42-48).
    #[arg(long, value_parser = crate::common::choice(StrategyKind::ALL, StrategyKind::name))]
    pub strategy: StrategyKind,
    /// Number of levels L.
    #[arg(long, default_value_t = 4)]
    pub levels: usize,
    /// Base batch size N0 (finest level).
    #[arg(long)]
    pub n0: usize,
    /// Iterations I (the coarsest stage's count for full-multiscale).
    #[arg(long)]
    pub iters: usize,
    /// Full-Multiscale stage schedule: `halving` (`I, I/2, I/4, ...` from coarsest to finest,
    /// eq. 47) or `equal` (`I` on every stage, eq. 48).
    #[arg(long, default_value = "halving", value_parser = crate::common::choice(StageSchedule::ALL, StageSchedule::name))]
    pub schedule: StageSchedule,
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
        StrategyKind::Single => single_wu_per_iter(a.levels, a.n0)?.checked_mul(iters)?,
        StrategyKind::Multiscale => mge_wu_per_iter(a.levels, a.n0)?.checked_mul(iters)?,
        StrategyKind::FullMultiscale => fmg_wu(a.levels, a.n0, a.iters, a.schedule)?,
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
        strategy: StrategyKind,
        levels: usize,
        n0: usize,
        iters: usize,
        schedule: StageSchedule,
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
        for strategy in StrategyKind::ALL {
            let a = Args {
                strategy,
                levels: 4,
                n0: 16,
                iters: 0,
                schedule: StageSchedule::Halving,
            };
            assert!(workunits(&a).unwrap_err().to_string().contains("--iters"));
        }
    }

    #[test]
    fn table2_figures() {
        use StageSchedule::*;
        use StrategyKind::*;
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
