//! `cargo xtask`: the runner that composes the multiscale crates.
//!
//! One module per subcommand; `common` holds the shared CLI pieces (device, output folder).

mod bench;
mod bench_conv;
mod bench_distributed;
mod bench_levels;
mod bench_mfc;
mod bench_step;
mod common;
mod config;
mod data_cmd;
mod distributed;
mod eval;
mod labelled;
mod landscape;
mod mfc_cmd;
mod models_cmd;
mod pictures;
mod plot;
mod reproduce;
mod reproduce_blur;
mod reproduce_coarsen_crop;
mod reproduce_example1;
mod reproduce_mgnet;
mod reproduce_mnist;
mod reproduce_runs;
mod reproduce_table1;
mod reproduce_table2;
mod reproduce_table5;
mod reproduce_table6;
mod resources;
mod stencil;
mod train_cmd;
mod workunits_cmd;

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
    train::threads::configure();
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
