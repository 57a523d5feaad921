//! `cargo xtask bench <conv|mfc|levels|step|distributed>`: benchmarks that print ratios measured side by side in one run.

pub mod conv;
pub mod distributed;
pub mod levels;
pub mod mfc;
pub mod step;

use crate::common::Context;

/// Ratios of alternating pairs (A over B, each pair measured back to back, so that a slow spell
/// of a shared machine hits both sides): their number, upper median, least and largest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct PairRatios {
    pub pairs: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl PairRatios {
    /// Runs `pair` (the seconds of side A and of side B, back to back) at least 3 and at most
    /// `max(most, 3)` times, stopping after 3 once the pairs add up to `budget_s`, and sums up
    /// the ratios A / B.
    pub fn measure(
        most: usize,
        budget_s: f64,
        mut pair: impl FnMut() -> anyhow::Result<(f64, f64)>,
    ) -> anyhow::Result<Self> {
        let (mut ratios, mut total) = (Vec::new(), 0.0);
        while ratios.len() < most.max(3) && (ratios.len() < 3 || total < budget_s) {
            let (a, b) = pair()?;
            total += a + b;
            ratios.push(a / b);
        }
        Self::of(ratios).ok_or_else(|| anyhow::anyhow!("no pairs"))
    }

    /// The summary of `ratios`; `None` without any.
    pub fn of(mut ratios: Vec<f64>) -> Option<Self> {
        ratios.sort_by(f64::total_cmp);
        Some(PairRatios {
            pairs: ratios.len(),
            median: *ratios.get(ratios.len() / 2)?,
            min: ratios[0],
            max: ratios[ratios.len() - 1],
        })
    }
}

impl std::fmt::Display for PairRatios {
    /// `median [least, largest]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} [{:.2}, {:.2}]", self.median, self.min, self.max)
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    which: Which,
}

#[derive(clap::Subcommand, Debug)]
enum Which {
    /// Our CPU convolution vs candle's conv2d (and PyTorch when importable).
    Conv(crate::bench::conv::Args),
    /// Mesh-free convolution vs 3x3 convolution.
    Mfc(crate::bench::mfc::Args),
    /// Per-level time ratios of a UNet training step (128^2 down to 8^2).
    Levels(crate::bench::levels::Args),
    /// A whole training step of the UNet and the ResNet per mesh, beside a PyTorch twin.
    Step(crate::bench::step::Args),
    /// Time per distributed MGE iteration and the all-reduce's share on 1, 2 MPI ranks.
    Distributed(crate::bench::distributed::Args),
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    match args.which {
        Which::Conv(a) => crate::bench::conv::run(a, ctx),
        Which::Mfc(a) => crate::bench::mfc::run(a, ctx),
        Which::Levels(a) => crate::bench::levels::run(a, ctx),
        Which::Step(a) => crate::bench::step::run(a, ctx),
        Which::Distributed(a) => crate::bench::distributed::run(a, ctx),
    }
}
