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
    /// balanced by #WU); overrides `train.distributed`. Needs `--features mpi`; see
    /// docs/distributed.md.
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
    mpi: Option<std::rc::Rc<comm::MpiComm>>,
}

impl Session {
    /// Starts MPI when a split is given (`--distributed` or `train.distributed`) and installs
    /// the parallel context.
    pub fn start(split: Option<Split>) -> Result<Session> {
        let Some(split) = split else {
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
            let mpi = std::rc::Rc::new(comm::MpiComm::init()?);
            use comm::Communicator as _;
            let (rank, size) = (mpi.rank(), mpi.size());
            let comm: std::rc::Rc<dyn comm::Communicator> = mpi.clone();
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

/// Distributed training computes no per-term statistics: `train.stats_every` is set to 0
/// (with a warning) and adaptive allocation, which needs them, is refused.
pub fn adjust_config(
    cfg: &mut crate::config::TrainConfig,
    origin: &Path,
    strategy: fmg::StrategyKind,
) -> Result<()> {
    if current().is_none() || strategy == fmg::StrategyKind::Single {
        return Ok(());
    }
    if cfg.train.allocation == crate::config::Allocation::Adaptive {
        bail!(
            "{}: --distributed computes no per-term statistics, which adaptive allocation needs: set train.allocation = \"fixed\"",
            origin.display()
        );
    }
    if cfg.train.stats_every > 0 {
        tracing::warn!(
            "{}: --distributed computes no per-term statistics: train.stats_every = {} is set to 0 (no variance ratios in the history)",
            origin.display(),
            cfg.train.stats_every
        );
        cfg.train.stats_every = 0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(size: usize, split: Option<Split>) -> Session {
        Session {
            rank: 0,
            size,
            split,
            #[cfg(feature = "mpi")]
            mpi: None,
        }
    }

    #[test]
    fn resume_needs_the_recorded_number_of_ranks() {
        let out = std::env::temp_dir().join(format!("xtask-dist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        // No record: a single-process run.
        session(1, None).check_ranks(&out, true).unwrap();
        let e = session(2, Some(Split::Data))
            .check_ranks(&out, true)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("trained on 1 rank(s), this job has 2"),
            "{e}"
        );
        session(2, Some(Split::Level))
            .record_ranks(&out, false)
            .unwrap();
        let text = std::fs::read_to_string(out.join("distributed.toml")).unwrap();
        assert!(
            text.contains("ranks = 2") && text.contains("split = \"level\""),
            "{text}"
        );
        session(2, Some(Split::Level))
            .check_ranks(&out, true)
            .unwrap();
        let e = session(3, Some(Split::Level))
            .check_ranks(&out, true)
            .unwrap_err();
        assert!(e.to_string().contains("mpirun -np 2"), "{e}");
        // A fresh single-process run into the folder drops the record.
        session(1, None).record_ranks(&out, false).unwrap();
        assert!(!out.join("distributed.toml").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn distributed_runs_drop_statistics_and_refuse_adaptive_allocation() {
        use crate::config::{Allocation, TrainConfig};
        use fmg::StrategyKind;
        let text = "task = \"denoise\"\n[model]\nkind = \"unet\"\n[data]\nsource = \"dead-leaves\"\nsize = 16\n[train]\nlevels = 2\nn0 = 2\niterations = 4\nlr = 1e-3\ndistributed = \"level\"\n";
        let origin = Path::new("test.toml");
        let mut cfg = TrainConfig::parse(text, origin).unwrap();
        assert_eq!(cfg.train.distributed, Some(Split::Level));
        assert!(cfg.train.stats_every > 0);
        // Not distributed: untouched.
        adjust_config(&mut cfg, origin, StrategyKind::Multiscale).unwrap();
        assert!(cfg.train.stats_every > 0);
        CURRENT.with(|c| {
            *c.borrow_mut() = Some(Parallel {
                comm: std::rc::Rc::new(comm::SingleProcess),
                split: Split::Level,
            })
        });
        adjust_config(&mut cfg, origin, StrategyKind::Multiscale).unwrap();
        assert_eq!(cfg.train.stats_every, 0);
        cfg.train.allocation = Allocation::Adaptive;
        let e = adjust_config(&mut cfg, origin, StrategyKind::Multiscale).unwrap_err();
        assert!(e.to_string().contains("allocation"), "{e}");
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}
