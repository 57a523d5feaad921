//! Placeholder: filled in by the issue that owns this benchmark.

use crate::common::Context;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, _ctx: &Context) -> anyhow::Result<()> {
    anyhow::bail!("this benchmark is not implemented yet")
}
