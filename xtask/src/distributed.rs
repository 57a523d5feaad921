//! `cargo xtask train --distributed data|level` under `mpirun` (issue 18): the MPI session of
//! a training run, and the hooks `train` calls.
//!
//! ```text
//! cargo build --release -p xtask --features mpi
//! mpirun --allow-run-as-root --oversubscribe -np 2 -x RAYON_NUM_THREADS=1 \
//!   target/release/xtask train --config configs/denoise_quick.toml --out runs/dist --distributed data
//! ```
//!
//! Every rank runs the same training; [`mge::Estimator::step`] computes the rank's share and
//! all-reduces the gradient, so all ranks hold the same parameters at every step. Rank 0
//! writes into `--out` (checkpoints atomically, as in a single-process run); rank `r > 0`
//! writes its identical copy into `--out/ranks/r`, from which it resumes. `--out/distributed.toml`
//! records the number of ranks and the split: `--resume` with another number of ranks is an
//! error. A rank that fails aborts the job (`MPI_Abort`), so the others never hang.

use anyhow::{bail, Context as _, Result};
use candle_core::Var;
use mge::{Parallel, Split};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// The `--distributed` option of `train`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// Split every MGE iteration over the ranks of an MPI job started by `mpirun -np P`:
    /// `data` (every rank a share of every term's batch) or `level` (whole terms per rank,
    /// balanced by #WU). Needs `--features mpi`; see docs/distributed.md.
    #[arg(long, value_parser = parse_split)]
    pub distributed: Option<Split>,
}

fn parse_split(s: &str) -> std::result::Result<Split, String> {
    s.parse().map_err(|e: mge::Error| e.to_string())
}

thread_local! {
    /// The parallel context of the run in progress on this thread (set by [`Session::start`]).
    static CURRENT: RefCell<Option<Parallel>> = const { RefCell::new(None) };
}

/// The parallel context of the running `train`, if distributed.
pub fn current() -> Option<Parallel> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Rank 0's values of `vars` on every rank (no-op without a parallel context).
pub fn sync_vars(vars: &[Var]) -> Result<()> {
    if let Some(p) = current() {
        mge::parallel::broadcast_vars(p.comm.as_ref(), vars, 0)?;
    }
    Ok(())
}

/// What `--out/distributed.toml` records.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Record {
    ranks: usize,
    split: Split,
}

/// One MPI job's training session: rank, size and the communicator that must be finished
/// (or, on an error, aborted) at the end.
pub struct Session {
    rank: usize,
    size: usize,
    split: Option<Split>,
    #[cfg(feature = "mpi")]
    mpi: Option<std::sync::Arc<comm::MpiComm>>,
}

impl Session {
    /// Starts MPI when `--distributed` is given and installs the parallel context.
    pub fn start(args: &Args) -> Result<Session> {
        let Some(split) = args.distributed else {
            return Ok(Session {
                rank: 0,
                size: 1,
                split: None,
                #[cfg(feature = "mpi")]
                mpi: None,
            });
        };
        #[cfg(feature = "mpi")]
        {
            let mpi = std::sync::Arc::new(comm::MpiComm::init()?);
            use comm::Communicator as _;
            let (rank, size) = (mpi.rank(), mpi.size());
            let comm: std::sync::Arc<dyn comm::Communicator> = mpi.clone();
            CURRENT.with(|c| *c.borrow_mut() = Some(Parallel { comm, split }));
            tracing::info!(rank, size, ?split, "distributed training over MPI");
            Ok(Session {
                rank,
                size,
                split: Some(split),
                mpi: Some(mpi),
            })
        }
        #[cfg(not(feature = "mpi"))]
        bail!("--distributed {split:?}: this xtask is built without MPI; build it with `cargo build --release -p xtask --features mpi` and start it with mpirun (docs/distributed.md)")
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Rank 0 writes into `out`, rank `r > 0` into `out/ranks/r`.
    pub fn out_dir(&self, out: &Path) -> PathBuf {
        match self.rank {
            0 => out.to_path_buf(),
            r => out.join("ranks").join(r.to_string()),
        }
    }

    /// `--resume`: the number of ranks recorded in `out/distributed.toml` (1 when absent)
    /// must be this job's.
    pub fn check_ranks(&self, out: &Path, resume: bool) -> Result<()> {
        let path = out.join("distributed.toml");
        if resume {
            let recorded = match std::fs::read_to_string(&path) {
                Ok(s) => {
                    toml::from_str::<Record>(&s)
                        .with_context(|| format!("{}", path.display()))?
                        .ranks
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
                Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
            };
            if recorded != self.size {
                let how = match recorded {
                    1 => "as a single process (no mpirun, no --distributed)".to_string(),
                    n => format!("with `mpirun -np {n} ... --distributed`"),
                };
                bail!(
                    "--resume: {} was trained on {recorded} rank(s), this job has {}: resume it {how}",
                    out.display(),
                    self.size,
                );
            }
        }
        Ok(())
    }

    /// A fresh run: rank 0 records the number of ranks and the split (atomically) in
    /// `out/distributed.toml`, or removes the file for a single-process run.
    pub fn record_ranks(&self, out: &Path, resume: bool) -> Result<()> {
        let path = out.join("distributed.toml");
        if resume || self.rank != 0 {
            return Ok(());
        }
        match self.split {
            Some(split) => {
                std::fs::create_dir_all(out)?;
                let tmp = out.join("distributed.toml.tmp");
                let text = toml::to_string(&Record {
                    ranks: self.size,
                    split,
                })?;
                std::fs::write(&tmp, text).with_context(|| format!("{}", tmp.display()))?;
                std::fs::rename(&tmp, &path).with_context(|| format!("{}", path.display()))?;
            }
            None if path.exists() => std::fs::remove_file(&path)?,
            None => {}
        }
        Ok(())
    }

    /// Ends the session with `result`: on success every rank meets in a barrier and MPI is
    /// finalised; on an error it is logged and the job is aborted, so the other ranks stop.
    pub fn end(self, result: Result<()>) -> Result<()> {
        CURRENT.with(|c| *c.borrow_mut() = None);
        #[cfg(feature = "mpi")]
        if let Some(mpi) = self.mpi {
            match &result {
                Ok(()) => mpi.finish()?,
                Err(e) => {
                    tracing::error!(rank = self.rank, "{e:#}");
                    eprintln!("rank {}: {e:#}", self.rank);
                    mpi.abort(1)
                }
            }
        }
        result
    }
}

/// Distributed training computes no per-term statistics: refuse the settings that need them.
pub fn check_config(
    cfg: &crate::config::TrainConfig,
    origin: &Path,
    strategy: crate::config::Strategy,
) -> Result<()> {
    let stats = strategy != crate::config::Strategy::Single
        && (cfg.train.stats_every > 0
            || cfg.train.allocation == crate::config::Allocation::Adaptive);
    if current().is_some() && stats {
        bail!(
            "{}: --distributed computes no per-term statistics: set train.stats_every = 0 and train.allocation = \"fixed\"",
            origin.display()
        );
    }
    Ok(())
}
