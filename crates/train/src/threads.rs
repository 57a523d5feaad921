//! Thread-pool settings to apply at start-up, before the first tensor operation (measured in
//! `docs/performance.md`, "Per-level cost"): call [`run`] (or [`configure`]) first in `main`.
//!
//! - `RAYON_NUM_THREADS`: the threads of the pool that [`run`] builds and of candle's matmuls.
//!   Upstream candle 0.11's `get_num_threads()` re-reads it on every matmul and, when unset,
//!   counts the physical cores by parsing `/proc/cpuinfo` (`num_cpus`), which took about a fifth
//!   of a UNet training step at 8^2; the vendored candle-core reads it once
//!   (`vendor/README.md`).
//! - `CANDLE_NUM_THREADS = 1`: candle's element-wise ops otherwise run on its own barrier pool
//!   whose threads spin-wait (25,000 spins) beside rayon's; on a loaded 2-core machine the
//!   spinning took 50 % of the cycles of a training step at 32^2. The convolutions keep every
//!   core through rayon (`fastconv`).
//!
//! A value already in the environment is left as it is.
//!
//! [`run`] sets them and then runs the program on a worker of the rayon pool, so that the serial code
//! between kernels and the kernels' parallel parts share the pool's threads: called from
//! `main`, a third thread would wait for every kernel while the pool's idle workers spin
//! (`sched_yield`) beside it (`docs/performance.md`, "One thread pool").

use std::sync::atomic::{AtomicBool, Ordering};

/// Sets the two variables where unset (`RAYON_NUM_THREADS` = available cores).
pub fn configure() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        std::env::set_var("RAYON_NUM_THREADS", cores.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// [`configure`]s the threads, then runs `f` on a worker of a new rayon pool of
/// `RAYON_NUM_THREADS` threads and returns its result. Every rayon and candle kernel called
/// inside `f` uses that pool. Call it first in `main`.
pub fn run<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, rayon::ThreadPoolBuildError> {
    configure();
    Ok(rayon::ThreadPoolBuilder::new().build()?.install(f))
}

/// Runs `f` with the pool's other workers kept awake: each runs a task that takes whatever work
/// the pool has (`rayon::yield_now`) and otherwise spins, until `f` returns or unwinds. Called
/// off a pool worker, or on a pool of one thread, it just runs `f`.
///
/// A training step is a few hundred kernels of 10 us to a few ms, each split over the pool.
/// Between two of them rayon's idle workers go to sleep (`futex`) after about 32 rounds of
/// `sched_yield`, and waking them for the next kernel costs more than small kernels take: in a
/// profile of the quick UNet at 8^2 a quarter of the samples were the scheduler. Kept awake,
/// the paper UNet's step took 20.2-20.5 ms instead of 23.7-23.9 at 8^2, and the quick UNet's
/// 4.2 ms instead of 5.5-5.7 (`docs/performance.md`, "Workers kept awake"). The price: the other
/// cores are busy for the whole of `f`, so use it only around compute that has the cores to
/// itself (not around waiting for another process).
pub fn warm<R>(f: impl FnOnce() -> R) -> R {
    let Some(origin) = rayon::current_thread_index() else {
        return f();
    };
    /// Sets `stop` when dropped, also while `f` unwinds, so that the spinners end.
    struct Stop<'s>(&'s AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let stop = AtomicBool::new(false);
    rayon::in_place_scope(|s| {
        let _stop = Stop(&stop);
        for _ in 1..rayon::current_num_threads() {
            s.spawn(|_| {
                // Popped by the calling thread itself (waiting in a join of `f`): spinning
                // there would keep `f` from going on.
                if rayon::current_thread_index() == Some(origin) {
                    return;
                }
                while !stop.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        f()
    })
}

#[cfg(test)]
mod tests {
    /// `run` gives its result back and runs the closure on a worker of a pool of
    /// `RAYON_NUM_THREADS` (or all available) threads.
    #[test]
    fn run_executes_on_a_pool_worker() {
        let want = match std::env::var("RAYON_NUM_THREADS") {
            Ok(n) => n.parse().unwrap(),
            Err(_) => std::thread::available_parallelism().unwrap().get(),
        };
        assert_eq!(
            rayon::current_thread_index(),
            None,
            "the test thread is no worker"
        );
        let (index, threads, joined) = super::run(|| {
            let joined = rayon::join(|| 1, || 2);
            (
                rayon::current_thread_index(),
                rayon::current_num_threads(),
                joined,
            )
        })
        .unwrap();
        assert!(index.is_some(), "the closure ran off the pool");
        assert_eq!(threads, want);
        assert_eq!(joined, (1, 2));
    }

    /// `warm` gives `f`'s result back, with parallel work done inside it, on a pool of two
    /// threads and off any pool; a panic in `f` reaches the caller instead of leaving the
    /// spinner running (checked within a timeout, so that a hang fails the test).
    #[test]
    fn warm_runs_f_and_ends_its_spinners() {
        use rayon::prelude::*;
        let sum = |n: u64| (0..n).into_par_iter().map(|i| i * i).sum::<u64>();
        let want = sum(10_000);
        assert_eq!(super::warm(|| sum(10_000)), want, "off the pool");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let got = pool.install(|| {
                let sums: Vec<u64> = (0..50).map(|_| super::warm(|| sum(10_000))).collect();
                let panicked = std::panic::catch_unwind(|| super::warm(|| panic!("inside")));
                (sums, panicked.is_err())
            });
            tx.send(got).unwrap();
        });
        let (sums, panicked) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("warm did not return within 60 s");
        assert!(sums.iter().all(|&s| s == want));
        assert!(panicked, "the panic in f was lost");
    }
}
