//! The vendored candle-core reads its thread count once (`vendor/README.md`): upstream counts
//! the physical cores again, by parsing `/proc/cpuinfo`, on every CPU matmul (6 % of a quick
//! UNet step at 8^2). A binary of its own, since it changes an environment variable.

#[test]
fn candle_reads_its_thread_count_once() {
    let first = candle_core::utils::get_num_threads();
    // Upstream answers the variable at every call.
    std::env::set_var("RAYON_NUM_THREADS", (first + 3).to_string());
    assert_eq!(candle_core::utils::get_num_threads(), first);
}
