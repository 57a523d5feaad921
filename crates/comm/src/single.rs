//! The one-rank communicator: every collective is the identity.

use crate::{Communicator, Error, Result};

/// Rank 0 of 1: all-reduce, broadcast and barrier do nothing (no copies, no allocation).
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum_f32(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast_f32(&self, _buf: &mut [f32], root: usize) -> Result<()> {
        match root {
            0 => Ok(()),
            _ => Err(Error::Mismatch {
                rank: 0,
                op: "broadcast",
                message: format!("root {root} of a single process"),
            }),
        }
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectives_are_the_identity() {
        let c = SingleProcess;
        let mut a = [1.5f32, -2.0];
        c.all_reduce_sum_f32(&mut a).unwrap();
        assert_eq!(a, [1.5, -2.0]);
        let mut b = [3.25f64];
        c.all_reduce_sum_f64(&mut b).unwrap();
        assert_eq!(b, [3.25]);
        c.broadcast_f32(&mut a, 0).unwrap();
        assert!(c.broadcast_f32(&mut a, 1).is_err());
        c.barrier().unwrap();
        assert_eq!((c.rank(), c.size()), (0, 1));
    }
}
