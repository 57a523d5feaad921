//! `cargo xtask`: the runner that composes the multiscale crates.
//!
//! One module per subcommand; `common` holds the shared CLI pieces (device, output folder).

mod bench;
mod commands;
use commands::{data_cmd, eval, landscape, mfc_cmd, models_cmd, stencil, train_cmd, workunits_cmd};
mod common;
mod config;
mod distributed;
mod report;
mod reproduce;
mod resources;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Multiscale training runner", version)]
struct Cli {
    #[command(flatten)]
    global: common::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Galerkin transfer of a 3x3 stencil between meshes.
    Stencil(stencil::Args),
    /// Inspect datasets and degradations.
    Data(data_cmd::Args),
    /// Parameter counts and timings of every model.
    Models(models_cmd::Args),
    /// Mesh-free convolution tools.
    Mfc(mfc_cmd::Args),
    /// Benchmarks that print ratios measured side by side.
    Bench(bench::Args),
    /// Train one model from a TOML config.
    Train(train_cmd::TrainArgs),
    /// Score a checkpoint on a folder of images.
    Eval(eval::Args),
    /// Loss on the plane of two random filter-normalised directions around a checkpoint.
    Landscape(landscape::Args),
    /// Exact #WU of a training strategy (001 Appendix B).
    Workunits(workunits_cmd::Args),
    /// Reproduce an experiment of the papers.
    Reproduce(reproduce::Args),
}

fn main() -> anyhow::Result<()> {
    // Thread settings first, then everything on a worker of the rayon pool.
    train::threads::run(run_command)?
}

/// Parses the command line and runs the command.
fn run_command() -> anyhow::Result<()> {
    let cli = Cli::parse();
    common::init_tracing(matches!(cli.command, Command::Reproduce(_)))?;
    let ctx = common::Context::new(&cli.global)?;
    match cli.command {
        Command::Stencil(a) => stencil::run(a, &ctx),
        Command::Data(a) => data_cmd::run(a, &ctx),
        Command::Models(a) => models_cmd::run(a, &ctx),
        Command::Mfc(a) => mfc_cmd::run(a, &ctx),
        Command::Bench(a) => bench::run(a, &ctx),
        Command::Train(a) => train_cmd::run_train(a, &ctx),
        Command::Eval(a) => eval::run(a, &ctx),
        Command::Landscape(a) => landscape::run(a, &ctx),
        Command::Workunits(a) => workunits_cmd::run(a, &ctx),
        Command::Reproduce(a) => reproduce::run(a, &ctx),
    }
}
