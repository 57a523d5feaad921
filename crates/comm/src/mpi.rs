//! `MPI_COMM_WORLD` through the `mpi` crate (OpenMPI). Start the processes with
//! `mpirun -np P <program>`; a program started without `mpirun` is one rank of one.
//!
//! Failures: the world communicator keeps MPI's default error handler
//! `MPI_ERRORS_ARE_FATAL`, so a failed collective aborts the job, and `mpirun` ends every
//! rank when one exits without finalising (`exit(1)`, a signal). A rank that leaves by an
//! error or a panic must not call `MPI_Finalize` (it would wait for the peers blocked in the
//! next collective): an [`MpiComm`] dropped without [`MpiComm::finish`] calls `MPI_Abort`,
//! which ends every rank. Survivors never hang (checked by `.ci/mpi-tests`).

use crate::{Communicator, Error, Result};
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator as _, SimpleCommunicator};

/// The world communicator of an MPI job; finalises MPI when dropped.
pub struct MpiComm {
    world: SimpleCommunicator,
    finished: std::cell::Cell<bool>,
    // Declared after `world`, dropped after it: `MPI_Finalize` runs last.
    _universe: Universe,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiComm(rank {} of {})", self.rank(), self.size())
    }
}

impl MpiComm {
    /// Initialises MPI (once per process) and takes `MPI_COMM_WORLD`.
    pub fn init() -> Result<Self> {
        let universe = mpi::initialize()
            .ok_or_else(|| Error::Init("MPI is already initialised in this process".into()))?;
        Ok(MpiComm {
            world: universe.world(),
            finished: std::cell::Cell::new(false),
            _universe: universe,
        })
    }

    /// Marks the clean end of a successful run (after a barrier): dropping the
    /// communicator then calls `MPI_Finalize` instead of `MPI_Abort`.
    pub fn finish(&self) -> Result<()> {
        self.world.barrier();
        self.finished.set(true);
        Ok(())
    }

    /// Ends every rank of the job with exit status `code` (`MPI_Abort`).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl Drop for MpiComm {
    /// Without [`MpiComm::finish`] (an error or a panic on this rank): `MPI_Abort(1)`, so
    /// the other ranks stop instead of waiting for this one.
    fn drop(&mut self) {
        if !self.finished.get() && self.size() > 1 {
            self.world.abort(1);
        }
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        if self.size() > 1 {
            let send = buf.to_vec();
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
        }
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        if self.size() > 1 {
            let send = buf.to_vec();
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
        }
        Ok(())
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        if root >= self.size() {
            return Err(Error::Mismatch {
                rank: self.rank(),
                op: "broadcast",
                message: format!("root {root} of {} ranks", self.size()),
            });
        }
        self.world.process_at_rank(root as i32).broadcast_into(buf);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }
}
