//! Ranks as threads of one process, for tests and as the reference semantics of the
//! collectives: sums are taken in rank order, so results are deterministic.

use crate::{Communicator, Error, Result};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    generation: u64,
    arrived: usize,
    slots: Vec<Option<Vec<f64>>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

/// One rank of a group of `size` threads ([`LocalGroup::new`]); move each handle into its
/// thread. A collective that waits longer than the group's timeout for a peer (a thread that
/// panicked or returned early) fails with [`Error::Timeout`] instead of hanging.
#[derive(Debug, Clone)]
pub struct LocalGroup {
    rank: usize,
    size: usize,
    timeout: Duration,
    shared: Arc<Shared>,
}

impl LocalGroup {
    /// The `size` ranks of a new group, rank `r` at index `r`.
    pub fn new(size: usize, timeout: Duration) -> Result<Vec<LocalGroup>> {
        if size == 0 {
            return Err(Error::Init("a group needs at least one rank".into()));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                slots: vec![None; size],
                ..State::default()
            }),
            cv: Condvar::new(),
        });
        Ok((0..size)
            .map(|rank| LocalGroup {
                rank,
                size,
                timeout,
                shared: shared.clone(),
            })
            .collect())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A peer that panicked while holding the lock left consistent data (every write is
        // one assignment); keep going, its absence shows up as a timeout.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_all(&self, op: &'static str) -> Result<()> {
        let mut s = self.lock();
        let generation = s.generation;
        s.arrived += 1;
        if s.arrived == self.size {
            s.arrived = 0;
            s.generation += 1;
            self.shared.cv.notify_all();
            return Ok(());
        }
        let deadline = Instant::now() + self.timeout;
        while s.generation == generation {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    rank: self.rank,
                    op,
                    seconds: self.timeout.as_secs_f64(),
                });
            }
            s = self
                .shared
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }

    /// Every rank's `data`, in rank order (same length on every rank).
    fn exchange(&self, op: &'static str, data: Vec<f64>) -> Result<Vec<Vec<f64>>> {
        let len = data.len();
        self.lock().slots[self.rank] = Some(data);
        self.wait_all(op)?;
        let all: Vec<Vec<f64>> = self.lock().slots.iter().flatten().cloned().collect();
        self.wait_all(op)?;
        if all.len() != self.size || all.iter().any(|d| d.len() != len) {
            return Err(Error::Mismatch {
                rank: self.rank,
                op,
                message: format!(
                    "buffer lengths {:?}",
                    all.iter().map(Vec::len).collect::<Vec<_>>()
                ),
            });
        }
        Ok(all)
    }
}

impl Communicator for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        let all = self.exchange("all_reduce", buf.iter().map(|&x| x as f64).collect())?;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = all.iter().fold(0.0f32, |s, d| s + d[i] as f32);
        }
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        let all = self.exchange("all_reduce", buf.to_vec())?;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = all.iter().fold(0.0, |s, d| s + d[i]);
        }
        Ok(())
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        if root >= self.size {
            return Err(Error::Mismatch {
                rank: self.rank,
                op: "broadcast",
                message: format!("root {root} of {} ranks", self.size),
            });
        }
        let all = self.exchange("broadcast", buf.iter().map(|&x| x as f64).collect())?;
        for (b, &x) in buf.iter_mut().zip(&all[root]) {
            *b = x as f32;
        }
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.wait_all("barrier")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_threads<T: Send + 'static>(
        size: usize,
        timeout: Duration,
        f: impl Fn(LocalGroup) -> T + Send + Sync + 'static,
    ) -> Vec<std::thread::Result<T>> {
        let f = Arc::new(f);
        LocalGroup::new(size, timeout)
            .unwrap()
            .into_iter()
            .map(|c| {
                let f = f.clone();
                std::thread::spawn(move || f(c))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join())
            .collect()
    }

    #[test]
    fn all_reduce_sums_in_rank_order_and_broadcast_copies_the_root() {
        let out = on_threads(3, Duration::from_secs(10), |c| {
            let r = c.rank() as f32;
            let mut a = [r, 10.0 * r + 1.0];
            c.all_reduce_sum_f32(&mut a).unwrap();
            let mut b = [r as f64 * 0.5];
            c.all_reduce_sum_f64(&mut b).unwrap();
            let mut x = [r, r];
            c.broadcast_f32(&mut x, 2).unwrap();
            c.barrier().unwrap();
            (a, b, x)
        });
        for o in out {
            let (a, b, x) = o.unwrap();
            assert_eq!(a, [3.0, 33.0]);
            assert_eq!(b, [1.5]);
            assert_eq!(x, [2.0, 2.0]);
        }
    }

    #[test]
    fn a_rank_that_dies_is_a_timeout_not_a_hang() {
        let t0 = Instant::now();
        let out = on_threads(3, Duration::from_millis(300), |c| {
            if c.rank() == 1 {
                panic!("rank 1 dies mid-iteration");
            }
            let mut a = [1.0f32];
            c.all_reduce_sum_f32(&mut a)
        });
        assert!(out[1].is_err());
        for r in [0, 2] {
            let e = out[r].as_ref().unwrap().as_ref().unwrap_err();
            assert!(matches!(e, Error::Timeout { .. }), "{e}");
            assert!(e.to_string().contains("a rank died"), "{e}");
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        let out = on_threads(2, Duration::from_secs(10), |c| {
            let mut a = vec![0.0f64; 1 + c.rank()];
            c.all_reduce_sum_f64(&mut a)
        });
        for o in out {
            assert!(matches!(o.unwrap(), Err(Error::Mismatch { .. })));
        }
    }
}
