//! Placeholder: `train`, `eval`, `workunits` (training issue).

use crate::common::Context;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {}
#[derive(clap::Args, Debug)]
pub struct EvalArgs {}
#[derive(clap::Args, Debug)]
pub struct WorkunitsArgs {}

pub fn run_train(_a: TrainArgs, _ctx: &Context) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
pub fn run_eval(_a: EvalArgs, _ctx: &Context) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
pub fn run_workunits(_a: WorkunitsArgs, _ctx: &Context) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
