//! Thread-pool settings to apply at start-up, before the first tensor operation (measured in
//! `docs/performance.md`, "Per-level cost"): call [`run`] (or [`configure`]) first in `main`.
//!
//! - `RAYON_NUM_THREADS`: candle 0.11's `get_num_threads()` re-reads it on every matmul and,
//!   when unset, counts the physical cores by parsing `/proc/cpuinfo` (`num_cpus`), which took
//!   about a fifth of a UNet training step at 8^2.
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
}
