//! `cargo xtask bench distributed`: time per MGE iteration (estimator step: forward,
//! backward, the gradient all-reduce and the stats all-reduce; no optimizer) and the
//! all-reduces' share of it, on 1, 2, ... MPI ranks of this machine (issue 18, item 4).
//! Before each all-reduce the bench adds a barrier, timed apart: the wait for the slowest rank
//! (load imbalance, e.g. level-parallel's unequal terms) is not counted as communication.
//!
//! The bench starts `mpirun -np P` on its own executable for every `P` of `--ranks`, with
//! `RAYON_NUM_THREADS = max(1, cores / P)` so the ranks share the cores, and prints one row
//! per `P`. Needs `--features mpi`. Inputs are random denoising batches drawn on every rank
//! (timing only: the ranks do not see the same data here).

use crate::common::Context;
use anyhow::{bail, Context as _, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rank counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    ranks: Vec<usize>,
    /// UNet widths (the quick protocol's by default; 32,64,128 is the paper's).
    #[arg(long, value_delimiter = ',', default_value = "8,16,32")]
    widths: Vec<usize>,
    /// Finest mesh n (images n x n).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Levels L.
    #[arg(long, default_value_t = 3)]
    levels: usize,
    /// Base batch N_0 (N_l = 2^l N_0).
    #[arg(long, default_value_t = 4)]
    n0: usize,
    /// Timed iterations (after one warm-up).
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// `data` or `level`.
    #[arg(long, default_value = "data")]
    split: String,
    /// Internal: run as one rank under mpirun and print the measurement.
    #[arg(long, hide = true)]
    worker: bool,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    if args.worker {
        return worker(&args, ctx);
    }
    let exe = std::env::current_exe()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "bench distributed: UNet {:?}, {}x{}, L = {}, N_0 = {}, split {}, {} iterations, {cores} cores, load {:.1}",
        args.widths,
        args.size,
        args.size,
        args.levels,
        args.n0,
        args.split,
        args.iters,
        crate::bench::levels::load_average()
    );
    println!("| ranks | threads/rank | ms/iteration | rank 0 waits for the slowest, ms | all-reduce ms | all-reduce share |");
    println!("|---|---|---|---|---|---|");
    for &p in &args.ranks {
        let threads = (cores / p).max(1);
        let w: Vec<String> = args.widths.iter().map(|w| w.to_string()).collect();
        let out = std::process::Command::new("mpirun")
            .args([
                "--allow-run-as-root",
                "--oversubscribe",
                "-np",
                &p.to_string(),
            ])
            .args(["-x", &format!("RAYON_NUM_THREADS={threads}")])
            .arg(&exe)
            .args(["bench", "distributed", "--worker"])
            .args(["--widths", &w.join(",")])
            .args([
                "--size",
                &args.size.to_string(),
                "--levels",
                &args.levels.to_string(),
            ])
            .args([
                "--n0",
                &args.n0.to_string(),
                "--iters",
                &args.iters.to_string(),
            ])
            .args(["--split", &args.split])
            .output()
            .context("cannot start mpirun (apt-get install openmpi-bin)")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "));
        match (out.status.success(), line) {
            (true, Some(l)) => {
                let v: Vec<f64> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                if v.len() != 3 {
                    bail!("bench distributed: unreadable worker output {l:?}");
                }
                println!(
                    "| {p} | {threads} | {:.1} | {:.2} | {:.2} | {:.1} % |",
                    v[0],
                    v[1],
                    v[2],
                    100.0 * v[2] / v[0]
                );
            }
            _ => bail!(
                "bench distributed on {p} ranks failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    Ok(())
}

#[cfg(not(feature = "mpi"))]
fn worker(_: &Args, _: &Context) -> Result<()> {
    bail!("bench distributed: built without MPI (cargo build --release -p xtask --features mpi)")
}

#[cfg(feature = "mpi")]
fn worker(args: &Args, ctx: &Context) -> Result<()> {
    use candle_core::DType;
    use candle_nn::{VarBuilder, VarMap};
    use comm::Communicator;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Instant;

    /// The world communicator, timing its all-reduces: first a barrier (the wait for the
    /// slowest rank, `waited`), then the all-reduce itself (`spent`).
    struct Timed {
        mpi: Rc<comm::MpiComm>,
        waited: Cell<f64>,
        spent: Cell<f64>,
    }
    impl Timed {
        fn time<T>(&self, f: impl FnOnce() -> comm::Result<T>) -> comm::Result<T> {
            let t = Instant::now();
            self.mpi.barrier()?;
            let t1 = Instant::now();
            let r = f();
            self.waited.set(self.waited.get() + (t1 - t).as_secs_f64());
            self.spent
                .set(self.spent.get() + t1.elapsed().as_secs_f64());
            r
        }
    }
    impl Communicator for Timed {
        fn rank(&self) -> usize {
            self.mpi.rank()
        }
        fn size(&self) -> usize {
            self.mpi.size()
        }
        fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> comm::Result<()> {
            self.time(|| self.mpi.all_reduce_sum_f32(buf))
        }
        fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> comm::Result<()> {
            self.time(|| self.mpi.all_reduce_sum_f64(buf))
        }
        fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> comm::Result<()> {
            self.mpi.broadcast_f32(buf, root)
        }
        fn barrier(&self) -> comm::Result<()> {
            self.mpi.barrier()
        }
    }
    let mpi = Rc::new(comm::MpiComm::init()?);
    let timed = Rc::new(Timed {
        mpi: mpi.clone(),
        waited: Cell::new(0.0),
        spent: Cell::new(0.0),
    });
    let result = (|| -> Result<(f64, f64, f64)> {
        let cfg = models::ModelConfig::Unet(models::UnetConfig {
            channels: Some(args.widths.clone()),
            ..models::UnetConfig::default()
        });
        let varmap = VarMap::new();
        let net = models::build(
            &cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &ctx.device),
        )?;
        let vars = optim::sorted_vars(&varmap)?;
        mge::parallel::broadcast_vars(timed.as_ref(), &vars, 0)?;
        let plan = mge::LevelPlan::multiscale(args.levels, args.n0)?;
        let mut est = mge::Estimator::new(plan, mge::GradientMode::Total, 0)?;
        est.set_fused_levels(true);
        let comm: Rc<dyn Communicator> = timed.clone();
        est.set_parallel(Some(mge::Parallel {
            comm,
            split: args.split.parse()?,
        }));
        let mut sampler = Batches {
            size: args.size,
            device: ctx.device.clone(),
        };
        let model = |x: &candle_core::Tensor, t: Option<&candle_core::Tensor>| net.forward(x, t);
        let mut acct = mge::Accountant::new();
        let mut total = 0.0;
        for k in 0..=args.iters {
            if k == 1 {
                timed.waited.set(0.0);
                timed.spent.set(0.0);
            }
            mpi.barrier()?;
            let t = Instant::now();
            est.step(
                &model,
                &crate::bench::levels::mse,
                &mut sampler,
                &vars,
                k as u64,
                &mut acct,
            )?;
            if k > 0 {
                total += t.elapsed().as_secs_f64();
            }
        }
        let n = args.iters.max(1) as f64;
        Ok((
            1e3 * total / n,
            1e3 * timed.waited.get() / n,
            1e3 * timed.spent.get() / n,
        ))
    })();
    match result {
        Ok((ms, wait, ar)) => {
            if mpi.rank() == 0 {
                println!("RESULT {ms} {wait} {ar}");
            }
            mpi.finish()?;
            Ok(())
        }
        Err(e) => {
            eprintln!("rank {}: {e:#}", mpi.rank());
            mpi.abort(1)
        }
    }
}

/// Random denoising batches at mesh `size`.
#[cfg(feature = "mpi")]
struct Batches {
    size: usize,
    device: candle_core::Device,
}

#[cfg(feature = "mpi")]
impl mge::Sampler for Batches {
    fn draw(&mut self, count: usize) -> mge::Result<data::Degraded> {
        let (input, target, t) =
            crate::bench::levels::denoising_batch(count, self.size, &self.device)
                .map_err(|e| mge::Error::Sampler(format!("{e:#}")))?;
        Ok(data::Degraded {
            input,
            target,
            t: Some(t),
            noise: None,
            clean_input: None,
            mask: None,
        })
    }
}
