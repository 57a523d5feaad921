//! Placeholder: filled in by the issue that owns this subcommand.

use crate::common::Context;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, _ctx: &Context) -> anyhow::Result<()> {
    anyhow::bail!("this subcommand is not implemented yet")
}
