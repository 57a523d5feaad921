//! Median wall times of backend (a)'s CPU kernels (f32): `rfft2`, `irfft2`, the fused symbol
//! product forward and forward+backward, and the pointwise embedding: per kernel and mesh size,
//! the median wall time of one call and the process CPU time per call (from `/proc/self/stat`,
//! all threads), over at least REPS calls and at least SECONDS seconds, on meshes n = SIZES
//! (comma separated). Usage:
//! `cargo run --release -p multiscale-mfc --example kernel_times [-- REPS SECONDS SIZES]`.

use candle_core::{DType, Device, Tensor, Var};
use std::time::Instant;

/// User + system CPU time of this process (all threads) in ms, at the kernel's 10 ms tick.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split(' ')
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks * 10.0
}

/// `(median wall ms, CPU ms per call)` of `f` after one warm-up call.
fn median_ms(
    (reps, secs): (usize, f64),
    f: &mut dyn FnMut() -> candle_core::Result<()>,
) -> candle_core::Result<(f64, f64)> {
    f()?;
    let (start, cpu0) = (Instant::now(), cpu_ms());
    let mut t = vec![];
    while t.len() < reps || start.elapsed().as_secs_f64() < secs {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (cpu_ms() - cpu0) / t.len() as f64;
    t.sort_by(f64::total_cmp);
    Ok((t[t.len() / 2], cpu))
}

fn main() -> candle_core::Result<()> {
    let arg = |i: usize, d: f64| {
        std::env::args()
            .nth(i)
            .map_or(d, |a| a.parse().expect("number"))
    };
    let reps = (arg(1, 15.0) as usize, arg(2, 1.0));
    let dev = Device::Cpu;
    let (b, c) = (16, 32);
    let sizes = std::env::args()
        .nth(3)
        .unwrap_or_else(|| "32,64,128".into());
    for n in sizes.split(',').map(|s| s.parse::<usize>().expect("size")) {
        let x = Tensor::randn(0f32, 1.0, (b, c, n, n), &dev)?;
        let z = mfc::fft::rfft2_packed(&x)?;
        let coef = (Tensor::randn(0f32, 1.0, (c, 6), &dev)? * 1e-3)?;
        let zv = Var::from_tensor(&z)?;
        let cv = Var::from_tensor(&coef)?;
        let r = Tensor::randn(0f32, 1.0, z.dims(), &dev)?;
        let m = Tensor::randn(0f32, 1.0, (c, c), &dev)?;
        let bias = Tensor::zeros(c, DType::F32, &dev)?;
        let ext = (1.0, 1.0);
        let rows: [(&str, (f64, f64)); 6] = [
            (
                "rfft2",
                median_ms(reps, &mut || mfc::fft::rfft2_packed(&x).map(drop))?,
            ),
            (
                "irfft2",
                median_ms(reps, &mut || mfc::fft::irfft2_packed(&z, n).map(drop))?,
            ),
            (
                "symbol_product",
                median_ms(reps, &mut || {
                    mfc::symbol_product::symbol_product(&z, &coef, n, ext).map(drop)
                })?,
            ),
            (
                "symbol_irfft2",
                median_ms(reps, &mut || {
                    mfc::symbol_product::symbol_irfft2(&z, &coef, n, ext).map(drop)
                })?,
            ),
            (
                "symbol_product_fwdbwd",
                median_ms(reps, &mut || {
                    let y = mfc::symbol_product::symbol_product(
                        zv.as_tensor(),
                        cv.as_tensor(),
                        n,
                        ext,
                    )?;
                    (y * &r)?.sum_all()?.backward().map(drop)
                })?,
            ),
            (
                "pointwise",
                median_ms(reps, &mut || {
                    mfc::pointwise::pointwise(&x, &m, &bias).map(drop)
                })?,
            ),
        ];
        for (name, (ms, cpu)) in rows {
            println!("{name},{n},{ms:.3},{cpu:.3}");
        }
    }
    Ok(())
}
