//! NCCL for multi-GPU nodes (feature `nccl`: candle's `nccl` feature, cudarc's NCCL bindings,
//! linked against `libnccl` like candle's other CUDA libraries): one rank per GPU, the same
//! [`Communicator`] as MPI.
//!
//! The trait's buffers live in host memory, so every collective copies the buffer to the
//! rank's GPU stream, runs the NCCL collective there and copies it back (the estimator
//! flattens the gradient on the host anyway). NCCL's unique id is created on rank 0 and
//! handed to the others by a bootstrap communicator (MPI). Compiled by `.ci/cuda-check`;
//! never run in this project (no GPU).

use crate::{Communicator, Error, Result};
use candle_core::cuda_backend::cudarc;
use cudarc::driver::{CudaStream, DeviceRepr};
use cudarc::nccl::safe::{Comm, Id, NcclType, ReduceOp};
use std::sync::Arc;

/// An NCCL communicator over one GPU per rank.
pub struct NcclComm {
    comm: Comm,
    stream: Arc<CudaStream>,
}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NcclComm(rank {} of {})", self.rank(), self.size())
    }
}

fn engine(message: impl std::fmt::Debug) -> Error {
    Error::Engine {
        engine: "nccl",
        message: format!("{message:?}"),
    }
}

impl NcclComm {
    /// Rank `bootstrap.rank()` of `bootstrap.size()` on `device`'s stream; rank 0 creates the
    /// NCCL id (128 bytes) and `bootstrap` broadcasts it.
    pub fn new(bootstrap: &dyn Communicator, device: &candle_core::CudaDevice) -> Result<Self> {
        let mut bytes = [0f32; 128];
        if bootstrap.rank() == 0 {
            let id = Id::new().map_err(engine)?;
            for (b, &c) in bytes.iter_mut().zip(id.internal()) {
                *b = f32::from(c as u8);
            }
        }
        bootstrap.broadcast_f32(&mut bytes, 0)?;
        let mut internal = [0 as std::ffi::c_char; 128];
        for (c, &b) in internal.iter_mut().zip(&bytes) {
            *c = b as u8 as std::ffi::c_char;
        }
        let stream = device.cuda_stream();
        let comm = Comm::from_rank(
            stream.clone(),
            bootstrap.rank(),
            bootstrap.size(),
            Id::uninit(internal),
        )
        .map_err(engine)?;
        Ok(NcclComm { comm, stream })
    }

    /// `buf <- sum over ranks` through the GPU.
    fn all_reduce<T: NcclType + DeviceRepr>(&self, buf: &mut [T]) -> Result<()> {
        let mut dev = self.stream.clone_htod(buf).map_err(engine)?;
        self.comm
            .all_reduce_in_place(&mut dev, &ReduceOp::Sum)
            .map_err(engine)?;
        self.stream.memcpy_dtoh(&dev, buf).map_err(engine)?;
        self.stream.synchronize().map_err(engine)
    }
}

impl Communicator for NcclComm {
    fn rank(&self) -> usize {
        self.comm.rank()
    }
    fn size(&self) -> usize {
        self.comm.world_size()
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.all_reduce(buf)
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.all_reduce(buf)
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        if root >= self.size() {
            return Err(Error::Mismatch {
                rank: self.rank(),
                op: "broadcast",
                message: format!("root {root} of {} ranks", self.size()),
            });
        }
        let mut dev = self.stream.clone_htod(buf).map_err(engine)?;
        self.comm
            .broadcast_in_place(&mut dev, root as i32)
            .map_err(engine)?;
        self.stream.memcpy_dtoh(&dev, buf).map_err(engine)?;
        self.stream.synchronize().map_err(engine)
    }
    /// NCCL has no barrier: an all-reduce of one number, waited for.
    fn barrier(&self) -> Result<()> {
        self.all_reduce(&mut [0f32])
    }
}
