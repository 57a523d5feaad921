//! `cargo xtask bench conv --out DIR`: 3x3 convolution (padding 1, stride 1) forward and
//! forward+backward, candle's `conv2d` against `fastconv::conv2d` (and PyTorch with 2 threads
//! when `python -c 'import torch'` works), the same shapes in one run, with speed-up ratios.
//!
//! Writes `results.csv` (`impl,cin,cout,size,fwd_ms,fwdbwd_ms,gflops`, where `gflops` is the
//! forward+backward rate: three times the forward FLOPs `2 N Co Ci 9 n^2` over `fwdbwd_ms`) and
//! `results.md` (side-by-side table, with the kernels `fastconv` runs for each pass on this CPU:
//! `fastconv::Algorithms::of`). Where those are not all im2col + GEMM, our forward+backward is
//! also timed against im2col + GEMM alone (`fastconv::set_policy`) in alternating pairs in this
//! process: the median and range of the pair ratios go to `results.md` and `kernels.csv`
//! (`cin,cout,size,kernels,pairs,median,min,max`).

use crate::bench::PairRatios;
use crate::common::{ensure_out_dir, Context};
use anyhow::{bail, Context as _, Result};
use candle_core::{Device, Tensor, Var};
use fastconv::Policy::{self, Fastest, GemmOnly};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder for results.csv and results.md.
    #[arg(long)]
    out: PathBuf,
    /// Mesh sizes n (images n x n), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64,128")]
    sizes: Vec<usize>,
    /// Channel pairs `cin:cout`, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "3:32,32:32,64:64,128:128"
    )]
    channels: Vec<String>,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed repetitions per measurement (minimum reported), after one warm-up run.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Stop repeating a measurement once its timed runs add up to this many seconds.
    #[arg(long, default_value_t = 4.0)]
    budget_s: f64,
    /// Python interpreter used for the PyTorch rows (skipped when it cannot import torch).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Skip candle's conv2d (only ours and PyTorch).
    #[arg(long)]
    no_candle: bool,
    /// Alternating pairs (fastest kernels, im2col + GEMM only) per shape whose kernels are not
    /// all im2col + GEMM; at least 3, fewer than this once they add up to `--budget-s`.
    #[arg(long, default_value_t = 9)]
    pairs: usize,
}

/// One row of results.csv.
#[derive(Clone, Debug)]
struct Row {
    imp: String,
    cin: usize,
    cout: usize,
    size: usize,
    fwd_ms: f64,
    fwdbwd_ms: f64,
}

impl Row {
    /// Forward FLOPs of the 3x3 convolution at this shape: `2 N Co Ci 9 n^2`.
    fn fwd_flops(&self, batch: usize) -> f64 {
        2.0 * (batch * self.cout * self.cin * 9 * self.size * self.size) as f64
    }
    fn fwd_gflops(&self, batch: usize) -> f64 {
        self.fwd_flops(batch) / (self.fwd_ms * 1e6)
    }
    fn fwdbwd_gflops(&self, batch: usize) -> f64 {
        3.0 * self.fwd_flops(batch) / (self.fwdbwd_ms * 1e6)
    }
}

/// Best (minimum) wall time in ms of `f` -- the machine is shared, so the minimum is the least
/// disturbed estimate -- after one warm-up run (skipped when the first run is over a
/// second: then warm-up effects are negligible and the run counts), at most `reps` timed runs
/// and no more once they add up to `budget_s`.
fn time_ms(reps: usize, budget_s: f64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::new();
    let mut total = 0.0;
    let mut first = true;
    while times.len() < reps.max(1) && (times.is_empty() || total < budget_s) {
        let t = Instant::now();
        f()?;
        let s = t.elapsed().as_secs_f64();
        if first && s < 1.0 {
            first = false;
            continue;
        }
        first = false;
        total += s;
        times.push(s * 1e3);
    }
    Ok(times.into_iter().fold(f64::INFINITY, f64::min))
}

type ConvFn = fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>;

fn candle_conv(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    x.conv2d(w, 1, 1, 1, 1)
}

fn fast_conv(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    fastconv::conv2d(x, w, 1, 1, 1)
}

/// Forward and forward+backward (`sum(conv(x, w))` back to `x` and `w`) times of one impl.
fn measure(conv: ConvFn, x: &Var, w: &Var, args: &Args) -> Result<(f64, f64)> {
    let fwd = time_ms(args.reps, args.budget_s, || {
        conv(x.as_tensor(), w.as_tensor())?;
        Ok(())
    })?;
    let fwdbwd = time_ms(args.reps, args.budget_s, || {
        let grads = conv(x.as_tensor(), w.as_tensor())?.sum_all()?.backward()?;
        if grads.get(x).is_none() || grads.get(w).is_none() {
            bail!("missing gradient");
        }
        Ok(())
    })?;
    Ok((fwd, fwdbwd))
}

/// Our forward+backward with the fastest kernels over the same with im2col + GEMM only
/// (`fastconv::set_policy`), in alternating pairs after one warm-up of each, so that a slow
/// spell of a shared machine hits both sides of a pair: median, least and largest pair ratio
/// (below 1: the specialised kernels are faster).
fn against_gemm(x: &Var, w: &Var, args: &Args) -> Result<PairRatios> {
    let timed = |policy: Policy| -> Result<f64> {
        fastconv::set_policy(policy);
        let t = Instant::now();
        let grads = fast_conv(x.as_tensor(), w.as_tensor()).and_then(|y| y.sum_all()?.backward());
        let s = t.elapsed().as_secs_f64();
        fastconv::set_policy(Policy::Fastest);
        if grads?.get(w).is_none() {
            bail!("missing gradient");
        }
        Ok(s)
    };
    timed(Policy::GemmOnly)?;
    timed(Policy::Fastest)?;
    PairRatios::measure(args.pairs, args.budget_s, || {
        Ok((timed(Policy::Fastest)?, timed(Policy::GemmOnly)?))
    })
}

fn parse_pair(s: &str) -> Result<(usize, usize)> {
    let (a, b) = s
        .split_once(':')
        .with_context(|| format!("--channels {s}: expected cin:cout"))?;
    Ok((a.trim().parse()?, b.trim().parse()?))
}

const TORCH_SNIPPET: &str = r#"
import sys, time, torch
torch.set_num_threads(2)
batch, reps, budget = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def timed(f):
    times, total, first = [], 0.0, True
    while len(times) < max(reps, 1) and (not times or total < budget):
        t = time.perf_counter(); f(); s = time.perf_counter() - t
        if first and s < 1.0:
            first = False; continue
        first = False; total += s; times.append(s * 1e3)
    return min(times)
for line in iter(sys.stdin.readline, ""):
    cin, cout, n = map(int, line.split())
    x = torch.randn(batch, cin, n, n, requires_grad=True)
    w = torch.randn(cout, cin, 3, 3, requires_grad=True)
    conv = lambda: torch.nn.functional.conv2d(x, w, padding=1)
    def fwd():
        with torch.no_grad(): conv()
    def fwdbwd():
        x.grad = None; w.grad = None; conv().sum().backward()
    print(f"{cin},{cout},{n},{timed(fwd):.4f},{timed(fwdbwd):.4f}", flush=True)
"#;

/// A persistent PyTorch process (2 threads) answering one shape per line, so that its rows are
/// measured interleaved with ours under the same machine load.
struct Torch {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Torch {
    /// Start it, or `None` when `python` cannot import torch.
    fn start(args: &Args, out: &Path) -> Result<Option<Self>> {
        let importable = Command::new(&args.python)
            .args(["-c", "import torch"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !importable {
            tracing::info!("{} cannot import torch: PyTorch rows skipped", args.python);
            return Ok(None);
        }
        let script = out.join("torch_bench.py");
        std::fs::write(&script, TORCH_SNIPPET)?;
        let mut child = Command::new(&args.python)
            .arg(&script)
            .args([
                args.batch.to_string(),
                args.reps.to_string(),
                args.budget_s.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", args.python))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        Ok(Some(Self {
            child,
            stdin,
            stdout,
        }))
    }

    fn measure(&mut self, cin: usize, cout: usize, n: usize) -> Result<Row> {
        writeln!(self.stdin, "{cin} {cout} {n}")?;
        self.stdin.flush()?;
        let line = self
            .stdout
            .next()
            .context("PyTorch process ended early")??;
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 {
            bail!("unexpected PyTorch output line {line:?}");
        }
        Ok(Row {
            imp: "torch".into(),
            cin: f[0].parse()?,
            cout: f[1].parse()?,
            size: f[2].parse()?,
            fwd_ms: f[3].parse()?,
            fwdbwd_ms: f[4].parse()?,
        })
    }
}

impl Drop for Torch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/proc/loadavg`'s first three fields (the machine is shared; printed beside the numbers).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn find<'a>(rows: &'a [Row], imp: &str, s: (usize, usize, usize)) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.imp == imp && (r.cin, r.cout, r.size) == s)
}

/// The kernels of our forward / input gradient / weight gradient for one shape under `policy`
/// (`Fastest`: the ones our timings ran).
fn kernels(cin: usize, cout: usize, n: usize, batch: usize, policy: Policy) -> Result<String> {
    let g = fastconv::ConvGeometry::new(&[batch, cin, n, n], &[cout, cin, 3, 3], 1, 1, 1)?;
    Ok(
        fastconv::Algorithms::under(&g, candle_core::DType::F32, policy)
            .map_or_else(|| "candle".into(), |a| a.to_string()),
    )
}

fn markdown(
    rows: &[Row],
    ratios: &HashMap<(usize, usize, usize), PairRatios>,
    shapes: &[(usize, usize, usize)],
    batch: usize,
) -> Result<String> {
    let has = |imp: &str| rows.iter().any(|r| r.imp == imp);
    let (candle, torch) = (has("candle"), has("torch"));
    let mut md = format!(
        "# 3x3 convolution, batch {batch}, padding 1, stride 1\n\n\
         Times in ms (best of the repetitions); GFLOP/s of forward+backward counts 3x the forward's `2 N Co Ci 9 n^2`.\n\
         speed-up = candle time / our time; ours/torch = our time / PyTorch time (below 1: we are faster).\n\
         vs gemm only = our forward+backward over the same with im2col + GEMM only, median [least, largest] of alternating pairs (below 1: our kernels pay).\n\n"
    );
    let mut head = vec!["cin", "cout", "n"];
    if candle {
        head.extend(["candle fwd", "candle fwd+bwd", "candle GFLOP/s"]);
    }
    head.extend([
        "ours fwd",
        "ours fwd+bwd",
        "ours GFLOP/s",
        "our kernels (fwd / dx / dw)",
        "vs gemm only",
    ]);
    if candle {
        head.extend(["speed-up fwd", "speed-up fwd+bwd"]);
    }
    if torch {
        head.extend([
            "torch fwd",
            "torch fwd+bwd",
            "torch GFLOP/s",
            "ours/torch fwd",
            "ours/torch fwd+bwd",
        ]);
    }
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let _ = writeln!(
        md,
        "|{}",
        head.iter()
            .map(
                |h| if h.starts_with("our kernels") || h.starts_with("vs gemm") {
                    "---|"
                } else {
                    "---:|"
                }
            )
            .collect::<String>()
    );
    for &s in shapes {
        let Some(ours) = find(rows, "fastconv", s) else {
            continue;
        };
        let mut cells = vec![s.0.to_string(), s.1.to_string(), s.2.to_string()];
        let timing = |r: &Row| {
            vec![
                format!("{:.2}", r.fwd_ms),
                format!("{:.2}", r.fwdbwd_ms),
                format!("{:.1}", r.fwdbwd_gflops(batch)),
            ]
        };
        let c = find(rows, "candle", s);
        if let Some(c) = c {
            cells.extend(timing(c));
        }
        cells.extend(timing(ours));
        cells.push(kernels(s.0, s.1, s.2, batch, Fastest)?);
        cells.push(ratios.get(&s).map_or_else(|| "-".into(), |r| r.to_string()));
        if let Some(c) = c {
            cells.push(format!("{:.2}x", c.fwd_ms / ours.fwd_ms));
            cells.push(format!("{:.2}x", c.fwdbwd_ms / ours.fwdbwd_ms));
        }
        if let Some(t) = find(rows, "torch", s) {
            cells.extend(timing(t));
            cells.push(format!("{:.2}", ours.fwd_ms / t.fwd_ms));
            cells.push(format!("{:.2}", ours.fwdbwd_ms / t.fwdbwd_ms));
        }
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    Ok(md)
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    if !matches!(ctx.device, Device::Cpu) {
        bail!("bench conv measures the CPU kernels: run it with --device cpu");
    }
    let out = ensure_out_dir(&args.out)?;
    let pairs = args
        .channels
        .iter()
        .map(|s| parse_pair(s))
        .collect::<Result<Vec<_>>>()?;
    let shapes: Vec<(usize, usize, usize)> = pairs
        .iter()
        .flat_map(|&(ci, co)| args.sizes.iter().map(move |&n| (ci, co, n)))
        .collect();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    tracing::info!("{cores} cores available; batch {}", args.batch);
    let load_before = load_average();
    let mut torch = Torch::start(&args, &out)?;
    let mut rows = Vec::new();
    let mut ratios = HashMap::new();
    for &(cin, cout, n) in &shapes {
        let x = Var::randn(0f32, 1., (args.batch, cin, n, n), &Device::Cpu)?;
        let w = Var::randn(0f32, 1., (cout, cin, 3, 3), &Device::Cpu)?;
        let mut impls: Vec<(&str, ConvFn)> = vec![("fastconv", fast_conv)];
        if !args.no_candle {
            impls.insert(0, ("candle", candle_conv));
        }
        for (name, conv) in impls {
            let (fwd_ms, fwdbwd_ms) = measure(conv, &x, &w, &args)?;
            let row = Row {
                imp: name.into(),
                cin,
                cout,
                size: n,
                fwd_ms,
                fwdbwd_ms,
            };
            tracing::info!(
                "{name:>8} {cin:>3}->{cout:<3} n={n:<3} fwd {fwd_ms:9.2} ms ({:6.1} GFLOP/s)  fwd+bwd {fwdbwd_ms:9.2} ms ({:6.1} GFLOP/s)",
                row.fwd_gflops(args.batch),
                row.fwdbwd_gflops(args.batch)
            );
            rows.push(row);
        }
        let ours = kernels(cin, cout, n, args.batch, Fastest)?;
        if ours != kernels(cin, cout, n, args.batch, GemmOnly)? {
            let r = against_gemm(&x, &w, &args)?;
            tracing::info!(
                "fastconv {cin:>3}->{cout:<3} n={n:<3} {ours} over im2col + GEMM only: {r} of {} pairs",
                r.pairs
            );
            ratios.insert((cin, cout, n), r);
        }
        if let Some(t) = torch.as_mut() {
            let r = t.measure(cin, cout, n)?;
            tracing::info!(
                "   torch {cin:>3}->{cout:<3} n={n:<3} fwd {:9.2} ms ({:6.1} GFLOP/s)  fwd+bwd {:9.2} ms ({:6.1} GFLOP/s)",
                r.fwd_ms,
                r.fwd_gflops(args.batch),
                r.fwdbwd_ms,
                r.fwdbwd_gflops(args.batch)
            );
            rows.push(r);
        }
    }
    drop(torch);
    let loads = format!(
        "load average (1, 5, 15 min) before: {load_before}; after: {}",
        load_average()
    );
    let mut csv = String::from("impl,cin,cout,size,fwd_ms,fwdbwd_ms,gflops\n");
    for r in &rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{:.4},{:.4},{:.2}",
            r.imp,
            r.cin,
            r.cout,
            r.size,
            r.fwd_ms,
            r.fwdbwd_ms,
            r.fwdbwd_gflops(args.batch)
        );
    }
    std::fs::write(out.join("results.csv"), csv)?;
    let mut kernels_csv = String::from("cin,cout,size,kernels,pairs,median,min,max\n");
    for &s in &shapes {
        if let Some(r) = ratios.get(&s) {
            let _ = writeln!(
                kernels_csv,
                "{},{},{},{},{},{:.4},{:.4},{:.4}",
                s.0,
                s.1,
                s.2,
                kernels(s.0, s.1, s.2, args.batch, Fastest)?,
                r.pairs,
                r.median,
                r.min,
                r.max
            );
        }
    }
    std::fs::write(out.join("kernels.csv"), kernels_csv)?;
    let md = format!(
        "{}\n{loads}\n",
        markdown(&rows, &ratios, &shapes, args.batch)?
    );
    std::fs::write(out.join("results.md"), &md)?;
    println!("{md}");
    Ok(())
}
