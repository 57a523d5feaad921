//! What distributed training needs from a communicator: rank, size, all-reduce of a flat
//! buffer, broadcast and barrier ([`Communicator`]), with engines behind it.
//!
//! - [`SingleProcess`]: one rank; every collective is the identity and costs nothing.
//! - [`LocalGroup`]: ranks as threads of one process (tests, and a reference for the
//!   collectives' semantics); a peer that stops answering is an [`Error::Timeout`].
//! - `MpiComm` (feature `mpi`): `MPI_COMM_WORLD` through the `mpi` crate over OpenMPI;
//!   launched by `mpirun -np P`. MPI's default error handler (`MPI_ERRORS_ARE_FATAL`) ends
//!   the whole job when a rank dies, so survivors never hang in a collective.
//! - `NcclComm` (feature `nccl`): one GPU per rank through candle's CUDA backend (cudarc's
//!   NCCL bindings); the NCCL id is handed out by a bootstrap communicator (MPI).
//!
//! Sums are reduced in rank order where the engine lets us choose ([`LocalGroup`]); MPI's
//! and NCCL's reduction order is the library's, so results agree to float tolerance.
//!
//! | file | what |
//! |---|---|
//! | `lib.rs` | the [`Communicator`] trait and its typed [`Error`] |
//! | `single.rs` | [`SingleProcess`] |
//! | `local.rs` | [`LocalGroup`]: thread ranks with timeouts |
//! | `mpi.rs` | `MpiComm` over OpenMPI (feature `mpi`) |
//! | `nccl.rs` | `NcclComm` over NCCL (feature `nccl`) |
//!
//! Every rank sums its share of a gradient with the others' (three thread ranks here; the
//! same code runs on `MpiComm` under `mpirun -np 3`):
//!
//! ```
//! use comm::{Communicator, LocalGroup};
//! use std::time::Duration;
//! let ranks = LocalGroup::new(3, Duration::from_secs(10))?;
//! let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
//!     let handles: Vec<_> = ranks
//!         .into_iter()
//!         .map(|rank| {
//!             s.spawn(move || {
//!                 let mut grad = vec![rank.rank() as f32, 1.0]; // this rank's share
//!                 rank.all_reduce_sum_f32(&mut grad).map(|()| grad)
//!             })
//!         })
//!         .collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).collect::<Result<_, _>>()
//! })?;
//! assert!(sums.iter().all(|g| g == &[3.0, 3.0])); // 0 + 1 + 2 and 1 + 1 + 1 on every rank
//! # Ok::<(), comm::Error>(())
//! ```

pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod single;

pub use local::LocalGroup;
#[cfg(feature = "mpi")]
pub use mpi::MpiComm;
#[cfg(feature = "nccl")]
pub use nccl::NcclComm;
pub use single::SingleProcess;

/// Errors of a collective operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A peer did not reach the collective within the timeout (it died or hangs).
    #[error("rank {rank}: no answer from the other ranks within {seconds} s in {op} (a rank died or hangs)")]
    Timeout {
        /// The waiting rank.
        rank: usize,
        /// The collective that timed out.
        op: &'static str,
        /// The timeout.
        seconds: f64,
    },
    /// The ranks called a collective with inconsistent arguments (buffer lengths, roots).
    #[error("rank {rank}: {op}: {message}")]
    Mismatch {
        /// The rank that detected it.
        rank: usize,
        /// The collective.
        op: &'static str,
        /// What differed.
        message: String,
    },
    /// The engine could not be started (e.g. MPI initialised twice).
    #[error("communicator: {0}")]
    Init(String),
    /// The engine reported an error (NCCL, CUDA).
    #[error("{engine}: {message}")]
    Engine {
        /// Which engine.
        engine: &'static str,
        /// Its message.
        message: String,
    },
}

/// Result type of the `comm` crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The collectives of data- and level-parallel training (issue 18). Every rank must call the
/// same collectives in the same order with buffers of the same length.
pub trait Communicator {
    /// This process's rank `r`, `0 <= r < size`.
    fn rank(&self) -> usize;
    /// Number of ranks `P`.
    fn size(&self) -> usize;
    /// In place: `buf[i] <- sum_{r < P} buf_r[i]` on every rank (the gradient all-reduce).
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// In place: `buf[i] <- sum_{r < P} buf_r[i]` in f64 (losses, exact #WU numerators
    /// below `2^53`).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// In place: `buf <- buf_root` on every rank (parameters at the start, run metadata).
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;
}
