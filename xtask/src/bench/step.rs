//! `cargo xtask bench step --out DIR`: one training step (forward + MSE, backward, Adam) of the
//! UNet and the ResNet of 001 Table 7, at the paper's and the quick protocol's widths, per
//! mesh, beside the same networks in PyTorch (`xtask/python/step_twin.py`, same layers and the
//! same parameter count, checked), measured interleaved in one run: for every network and mesh,
//! our rounds, then PyTorch's, so both see the same machine load. Our rounds run as
//! `train::Trainer` runs its loop, inside `train::threads::warm`.
//!
//! Work units (001 Definition 1): a step on `B` images at mesh `n` costs `B (n / n_0)^2` WU,
//! `n_0` the finest mesh of `--sizes`; `ms_per_wu = step_ms / (B (n / n_0)^2)`.
//! The backward/forward ratio is `(fwdbwd_ms - fwd_ms) / fwd_ms`.
//!
//! Then, with PyTorch, `--pairs` alternating sides, ours and PyTorch's on the same batches, each
//! the quickest step of a 0.1 s burst after 50 ms at rest, so that a slow spell of a shared
//! machine hits both sides of a pair: the median and range of the pair ratios (ours / PyTorch)
//! stand beside the ratio of the best times.
//!
//! Writes `results.csv` (`model,widths,mesh,impl,fwd_ms,fwdbwd_ms,opt_ms,step_ms,ms_per_wu`),
//! `pairs.csv` (`model,widths,mesh,pairs,median,min,max`) and `results.md`, with the load
//! average of the machine at the start and the end.

use crate::bench::levels::{denoising_batch, load_average, mse, seconds};
use crate::bench::PairRatios;
use crate::common::{ensure_out_dir, Context};
use anyhow::{bail, ensure, Context as _, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::{ConvKind, Model, ModelConfig, ResnetConfig, UnetConfig};
use optim::Adam;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The PyTorch twin, written next to the results and run by `--python`.
const TWIN: &str = include_str!("../../python/step_twin.py");

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder for results.csv and results.md.
    #[arg(long)]
    out: PathBuf,
    /// Python interpreter for the PyTorch rows (skipped, with a note, when it cannot import torch).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Networks, comma separated: `unet`, `resnet`.
    #[arg(long, value_delimiter = ',', default_value = "unet,resnet")]
    models: Vec<String>,
    /// Mesh sizes n (images n x n), finest first (the finest defines 1 WU); add 128 for the
    /// paper's largest mesh.
    #[arg(long, value_delimiter = ',', default_value = "64,32,16,8")]
    sizes: Vec<usize>,
    /// Widths: `paper` (UNet 32,64,128; ResNet 128), `quick` (UNet 8,16,32; ResNet 16) or `both`.
    #[arg(long, default_value = "both")]
    widths: String,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed rounds per network and mesh (the minimum is reported), after one warm-up round.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// More rounds (up to 20 x `reps`) until the timed rounds add up to this many seconds, so
    /// that the minimum of the small cases is not one disturbed sample on a shared machine.
    #[arg(long, default_value_t = 2.0)]
    min_s: f64,
    /// Alternating sides (ours, PyTorch's: each the quickest step of a 0.1 s burst) per network
    /// and mesh after the rounds; at least 3, fewer than this once they add up to `--min-s`.
    #[arg(long, default_value_t = 9)]
    pairs: usize,
}

/// Best times of one network at one mesh, ms.
#[derive(Clone, Copy, Debug)]
struct Times {
    fwd: f64,
    fwdbwd: f64,
    opt: f64,
    step: f64,
}

/// How far a whole step's best time may stray from forward+backward plus the update, measured
/// in the same rounds, before the row is called disturbed: the two are the same work, so a
/// larger gap means every sample of one of them was slowed by something else on the machine.
const STEP_CONSISTENCY: f64 = 1.25;

impl Times {
    /// `step / (fwdbwd + opt)` when it lies outside `[1 / STEP_CONSISTENCY, STEP_CONSISTENCY]`.
    fn disturbed(&self) -> Option<f64> {
        let r = self.step / (self.fwdbwd + self.opt);
        (!(1.0 / STEP_CONSISTENCY..=STEP_CONSISTENCY).contains(&r)).then_some(r)
    }
}

struct Row {
    model: String,
    widths: Vec<usize>,
    mesh: usize,
    imp: &'static str,
    t: Times,
    ms_per_wu: f64,
    /// Ours / PyTorch's step in alternating pairs (our rows, with PyTorch).
    paired: Option<PairRatios>,
}

/// The rest before each side of a pair.
const PAIR_REST: std::time::Duration = std::time::Duration::from_millis(50);

/// Each side of a pair takes steps until they add up to this (one at least, 100 at most) and
/// counts its quickest, so that the jitter of a few-millisecond step does not decide a pair.
const PAIR_SIDE_S: f64 = 0.1;

/// Our step (as the trainer runs it) over PyTorch's on the same batch, each side the quickest
/// of a short burst ([`PAIR_SIDE_S`]), in `args.pairs` alternating pairs (at least 3, fewer
/// once they add up to `args.min_s`).
fn paired_steps(
    net: &dyn Model,
    adam: &mut Adam,
    batch: &(Tensor, Tensor, Tensor),
    torch: &mut Torch,
    (model, widths, n): (&str, &[usize], usize),
    args: &Args,
) -> Result<PairRatios> {
    let (x, y, t) = batch;
    PairRatios::measure(args.pairs, args.min_s, || {
        // PyTorch's OpenMP threads spin for a while after its step (libgomp's GOMP_SPINCOUNT)
        // and would take the cores from a short step of ours; each side starts on a machine at
        // rest.
        std::thread::sleep(PAIR_REST);
        let ours = train::threads::warm(|| {
            let mut times: Vec<f64> = Vec::new();
            while times.is_empty() || (times.iter().sum::<f64>() < PAIR_SIDE_S && times.len() < 100)
            {
                times.push(seconds(|| {
                    let g = mse(&net.forward(x, Some(t))?, y)?.backward()?;
                    Ok(adam.step(&g, 1e-6)?)
                })?);
            }
            Ok::<_, anyhow::Error>(times.into_iter().fold(f64::INFINITY, f64::min))
        })?;
        std::thread::sleep(PAIR_REST);
        Ok((
            ours,
            torch.step(model, widths, n, args.batch, PAIR_SIDE_S)? / 1e3,
        ))
    })
}

/// The network `model` at `widths`, noise-conditioned, 3 -> 3 channels, with its variables.
fn build(model: &str, widths: &[usize], dev: &Device) -> Result<(Box<dyn Model>, VarMap)> {
    let cfg = match (model, widths) {
        ("unet", _) => ModelConfig::Unet(UnetConfig {
            channels: Some(widths.to_vec()),
            conv: ConvKind::Standard,
            ..UnetConfig::default()
        }),
        ("resnet", &[hidden]) => ModelConfig::Resnet(ResnetConfig {
            hidden,
            ..ResnetConfig::default()
        }),
        _ => bail!("bench step: unknown network {model} with widths {widths:?}"),
    };
    let varmap = VarMap::new();
    let net = models::build(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev))?;
    Ok((net, varmap))
}

/// Paper (001 Table 7) and quick-protocol widths of `model`.
fn widths_of(model: &str, which: &str) -> Result<Vec<Vec<usize>>> {
    let (paper, quick) = match model {
        "unet" => (vec![32, 64, 128], vec![8, 16, 32]),
        "resnet" => (vec![128], vec![16]),
        _ => bail!("--models: unknown network {model} (expected unet, resnet)"),
    };
    Ok(match which {
        "paper" => vec![paper],
        "quick" => vec![quick],
        "both" => vec![paper, quick],
        _ => bail!("--widths {which}: expected paper, quick or both"),
    })
}

/// Best of `reps` rounds (after a warm-up round; more, up to `20 reps`, until the timed rounds
/// take `min_s` seconds) of: forward + loss, forward + loss + backward, the Adam update alone,
/// and a whole step.
fn measure(
    net: &dyn Model,
    adam: &mut Adam,
    batch: &(Tensor, Tensor, Tensor),
    reps: usize,
    min_s: f64,
) -> Result<Times> {
    let (x, y, t) = batch;
    let mut best = Times {
        fwd: f64::INFINITY,
        fwdbwd: f64::INFINITY,
        opt: f64::INFINITY,
        step: f64::INFINITY,
    };
    let mut total = 0.0;
    let mut rep = 0;
    while rep <= reps || (total < min_s && rep <= 20 * reps) {
        let fwd = seconds(|| {
            mse(&net.forward(x, Some(t))?, y)?;
            Ok(())
        })?;
        let mut grads = None;
        let fwdbwd = seconds(|| {
            grads = Some(mse(&net.forward(x, Some(t))?, y)?.backward()?);
            Ok(())
        })?;
        let grads = grads.context("no gradient")?;
        let opt = seconds(|| Ok(adam.step(&grads, 1e-6)?))?;
        drop(grads);
        let step = seconds(|| {
            let g = mse(&net.forward(x, Some(t))?, y)?.backward()?;
            Ok(adam.step(&g, 1e-6)?)
        })?;
        if rep > 0 {
            total += fwd + fwdbwd + opt + step;
            best = Times {
                fwd: best.fwd.min(fwd * 1e3),
                fwdbwd: best.fwdbwd.min(fwdbwd * 1e3),
                opt: best.opt.min(opt * 1e3),
                step: best.step.min(step * 1e3),
            };
        }
        rep += 1;
    }
    Ok(best)
}

/// A persistent PyTorch process running the twin, one request per line.
struct Torch {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Torch {
    /// Start it, or `None` (logged) when `python` cannot import torch.
    fn start(python: &str, out: &Path, threads: usize) -> Result<Option<Self>> {
        let importable = Command::new(python)
            .args(["-c", "import torch"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !importable {
            tracing::info!("{python} cannot import torch: PyTorch rows skipped");
            return Ok(None);
        }
        let script = out.join("step_twin.py");
        std::fs::write(&script, TWIN)?;
        let mut child = Command::new(python)
            .arg(&script)
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {python}"))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        Ok(Some(Self {
            child,
            stdin,
            stdout,
        }))
    }

    /// Parameter count and best times of the twin of `model` at `widths`, mesh `n`.
    fn measure(
        &mut self,
        model: &str,
        widths: &[usize],
        n: usize,
        batch: usize,
        reps: usize,
        min_s: f64,
    ) -> Result<(usize, Times)> {
        let line = self.ask(format!(
            "{model} {} {n} {batch} {reps} {min_s}",
            wire(widths)
        ))?;
        let f: Vec<&str> = line.split(',').collect();
        ensure!(f.len() == 5, "unexpected PyTorch output line {line:?}");
        let ms = |i: usize| -> Result<f64> { Ok(f[i].parse()?) };
        Ok((
            f[0].parse()?,
            Times {
                fwd: ms(1)?,
                fwdbwd: ms(2)?,
                opt: ms(3)?,
                step: ms(4)?,
            },
        ))
    }

    /// Milliseconds of the quickest of more steps of the twin (until they add up to `side_s`)
    /// on the batch of its last [`Torch::measure`] at mesh `n`.
    fn step(
        &mut self,
        model: &str,
        widths: &[usize],
        n: usize,
        batch: usize,
        side_s: f64,
    ) -> Result<f64> {
        let line = self.ask(format!(
            "step {model} {} {n} {batch} {side_s}",
            wire(widths)
        ))?;
        line.trim()
            .parse()
            .with_context(|| format!("unexpected PyTorch output line {line:?}"))
    }

    /// Sends one request line and reads its answer.
    fn ask(&mut self, request: String) -> Result<String> {
        writeln!(self.stdin, "{request}")?;
        self.stdin.flush()?;
        self.stdout
            .next()
            .context("PyTorch process ended early")?
            .context("reading PyTorch's answer")
    }
}

/// Widths as the twin reads them in a request: `32,64,128`.
fn wire(widths: &[usize]) -> String {
    let w: Vec<String> = widths.iter().map(|w| w.to_string()).collect();
    w.join(",")
}

impl Drop for Torch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn join(w: &[usize]) -> String {
    w.iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("/")
}

fn markdown(rows: &[Row], args: &Args, notes: &[String], loads: (String, String)) -> String {
    let mut md = format!(
        "# Training step per mesh: ours vs PyTorch (batch {}, MSE, Adam)\n\n\
         Best of {} rounds (more, up to 20x, until they add up to {} s) after a warm-up round; ours and PyTorch measured interleaved per network and mesh; our rounds run as the trainer's loop does, with the pool's other workers kept awake (`train::threads::warm`).\n\
         1 WU = one forward+backward of one {}^2 image (001 Definition 1); bwd/fwd = (fwd+bwd - fwd) / fwd.\n\
         paired = ours / PyTorch's step in alternating pairs on the same batches (each side the quickest step of a 0.1 s burst after 50 ms at rest), median [least, largest] (n pairs): a slow spell of the machine hits both sides of a pair.\n\
         Load average (1, 5, 15 min) at the start: {}; at the end: {} ({} cores, shared).\n\n",
        args.batch,
        args.reps,
        args.min_s,
        args.sizes.first().copied().unwrap_or(0),
        loads.0,
        loads.1,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    for n in notes {
        let _ = writeln!(md, "- {n}");
    }
    md.push_str(
        "\n| model | widths | mesh | impl | fwd ms | fwd+bwd ms | opt ms | step ms | ms/WU | bwd/fwd | ours/torch ms/WU | paired |\n\
         |---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let mut disturbed = Vec::new();
    for r in rows {
        let ratio = match (
            r.imp,
            rows.iter().find(|o| {
                o.imp == "torch" && o.model == r.model && o.widths == r.widths && o.mesh == r.mesh
            }),
        ) {
            ("ours", Some(t)) if r.t.disturbed().or(t.t.disturbed()).is_some() => {
                format!("{:.2} (disturbed)", r.ms_per_wu / t.ms_per_wu)
            }
            ("ours", Some(t)) => format!("{:.2}", r.ms_per_wu / t.ms_per_wu),
            _ => "-".into(),
        };
        if let Some(q) = r.t.disturbed() {
            disturbed.push(format!(
                "- {} {} {}^2 {}: step {:.2} ms against forward+backward + update {:.2} ms (x{q:.2}, the same work): its rounds were disturbed and the ratio of that mesh is unreliable; rerun with more `--reps` or `--min-s`.",
                r.model,
                join(&r.widths),
                r.mesh,
                r.imp,
                r.t.step,
                r.t.fwdbwd + r.t.opt
            ));
        }
        let paired = r
            .paired
            .map_or_else(|| "-".into(), |p| format!("{p} ({})", p.pairs));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.2} | {ratio} | {paired} |",
            r.model,
            join(&r.widths),
            r.mesh,
            r.imp,
            r.t.fwd,
            r.t.fwdbwd,
            r.t.opt,
            r.t.step,
            r.ms_per_wu,
            (r.t.fwdbwd - r.t.fwd) / r.t.fwd
        );
    }
    if !disturbed.is_empty() {
        md.push('\n');
        for line in disturbed {
            tracing::warn!("{line}");
            let _ = writeln!(md, "{line}");
        }
    }
    md
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let out = ensure_out_dir(&args.out)?;
    let dev = &ctx.device;
    let finest = *args.sizes.first().context("--sizes is empty")?;
    ensure!(
        args.sizes.iter().all(|&n| n > 0 && n <= finest),
        "--sizes: the finest mesh comes first"
    );
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into())
    };
    let load0 = load();
    let mut notes = Vec::new();
    let mut torch = Torch::start(&args.python, &out, threads)?;
    if torch.is_none() {
        notes.push(format!(
            "`{}` cannot import torch: PyTorch rows skipped.",
            args.python
        ));
    }
    let mut rows = Vec::new();
    for model in &args.models {
        for widths in widths_of(model, &args.widths)? {
            let (net, varmap) = build(model, &widths, dev)?;
            let mut adam = Adam::from_varmap(&varmap)?;
            let params: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
            let mut line = format!("{model} {}: {params} parameters (ours)", join(&widths));
            for &n in &args.sizes {
                let wu = (args.batch * n * n) as f64 / (finest * finest) as f64;
                let batch = denoising_batch(args.batch, n, dev)?;
                // As the trainer runs its loop: the pool's other workers kept awake, for our
                // rounds only (PyTorch's process gets the cores to itself).
                let t = train::threads::warm(|| {
                    measure(net.as_ref(), &mut adam, &batch, args.reps, args.min_s)
                })?;
                tracing::info!(
                    "{model} {} n={n} ours: {t:?} (load {:.2})",
                    join(&widths),
                    load_average()
                );
                let ours_row = rows.len();
                rows.push(Row {
                    model: model.clone(),
                    widths: widths.clone(),
                    mesh: n,
                    imp: "ours",
                    t,
                    ms_per_wu: t.step / wu,
                    paired: None,
                });
                if let Some(tc) = torch.as_mut() {
                    let (tp, t) =
                        tc.measure(model, &widths, n, args.batch, args.reps, args.min_s)?;
                    ensure!(
                        tp == params,
                        "PyTorch twin of {model} {widths:?} has {tp} parameters, ours {params}"
                    );
                    if n == finest {
                        let _ = write!(line, ", {tp} (PyTorch twin): equal");
                    }
                    tracing::info!("{model} {} n={n} torch: {t:?}", join(&widths));
                    rows.push(Row {
                        model: model.clone(),
                        widths: widths.clone(),
                        mesh: n,
                        imp: "torch",
                        t,
                        ms_per_wu: t.step / wu,
                        paired: None,
                    });
                    let p = paired_steps(
                        net.as_ref(),
                        &mut adam,
                        &batch,
                        tc,
                        (model, &widths, n),
                        &args,
                    )?;
                    tracing::info!(
                        "{model} {} n={n} ours/torch step in {} alternating pairs: {p}",
                        join(&widths),
                        p.pairs
                    );
                    rows[ours_row].paired = Some(p);
                }
            }
            println!("{line}");
            notes.push(line);
        }
    }
    drop(torch);
    let load1 = load();
    let mut csv =
        String::from("model,widths,mesh,impl,fwd_ms,fwdbwd_ms,opt_ms,step_ms,ms_per_wu\n");
    for r in &rows {
        writeln!(
            csv,
            "{},{},{},{},{:.4},{:.4},{:.4},{:.4},{:.5}",
            r.model,
            join(&r.widths),
            r.mesh,
            r.imp,
            r.t.fwd,
            r.t.fwdbwd,
            r.t.opt,
            r.t.step,
            r.ms_per_wu
        )?;
    }
    std::fs::write(out.join("results.csv"), csv)?;
    let mut pairs = String::from("model,widths,mesh,pairs,median,min,max\n");
    for r in &rows {
        if let Some(p) = r.paired {
            writeln!(
                pairs,
                "{},{},{},{},{:.4},{:.4},{:.4}",
                r.model,
                join(&r.widths),
                r.mesh,
                p.pairs,
                p.median,
                p.min,
                p.max
            )?;
        }
    }
    std::fs::write(out.join("pairs.csv"), pairs)?;
    let md = markdown(&rows, &args, &notes, (load0, load1));
    std::fs::write(out.join("results.md"), &md)?;
    println!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(fwdbwd: f64, opt: f64, step: f64) -> Times {
        Times {
            fwd: fwdbwd / 3.0,
            fwdbwd,
            opt,
            step,
        }
    }

    /// A step far from forward+backward plus the update (either way) is flagged; one within the
    /// tolerance is not.
    #[test]
    fn a_step_that_strays_from_its_parts_is_disturbed() {
        assert_eq!(times(994.0, 18.0, 1012.0 * 1.1).disturbed(), None);
        assert_eq!(times(994.0, 18.0, 1012.0 / 1.1).disturbed(), None);
        let q = times(994.36, 18.22, 1591.19).disturbed().unwrap();
        assert!((q - 1.571).abs() < 1e-3, "{q}");
        assert!(times(100.0, 0.0, 70.0).disturbed().is_some());
    }

    /// The table marks the mesh whose PyTorch step was disturbed and says why below it.
    #[test]
    fn the_table_marks_a_disturbed_mesh() {
        let args = Args {
            out: PathBuf::from("unused"),
            python: "python3".into(),
            models: vec!["unet".into()],
            sizes: vec![64, 32],
            widths: "paper".into(),
            batch: 16,
            reps: 2,
            min_s: 2.0,
            pairs: 9,
        };
        let row = |mesh, imp, t: Times| Row {
            model: "unet".into(),
            widths: vec![32, 64, 128],
            mesh,
            imp,
            t,
            ms_per_wu: t.step / 16.0,
            paired: None,
        };
        let mut rows = [
            row(64, "ours", times(1242.26, 3.58, 1296.42)),
            row(64, "torch", times(994.36, 18.22, 1591.19)),
            row(32, "ours", times(320.14, 3.27, 324.81)),
            row(32, "torch", times(218.09, 14.45, 246.43)),
        ];
        rows[2].paired = PairRatios::of(vec![1.4, 1.25, 1.3]);
        let md = markdown(&rows, &args, &[], ("0".into(), "0".into()));
        assert!(md.contains("| 0.81 (disturbed) | - |"), "{md}");
        assert!(md.contains("| 1.32 | 1.30 [1.25, 1.40] (3) |"), "{md}");
        assert!(
            md.contains("- unet 32/64/128 64^2 torch: step 1591.19 ms"),
            "{md}"
        );
        assert_eq!(md.matches("rounds were disturbed").count(), 1, "{md}");
    }

    /// The requests reach the twin in the form it parses: a stand-in `python` (bash) that
    /// answers like `step_twin.py` and fails on widths that are not `32,64,128`-style.
    #[cfg(unix)]
    #[test]
    fn the_twin_protocol_round_trips() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-step-twin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let python = dir.join("python");
        std::fs::write(
            &python,
            "#!/bin/bash\n\
             [ \"$1\" = -c ] && exit 0\n\
             widths='^[0-9]+(,[0-9]+)*$'\n\
             while read -r first rest; do\n\
               set -- $rest\n\
               if [ \"$first\" = step ]; then\n\
                 [[ $2 =~ $widths ]] || exit 3; echo 2.5\n\
               else\n\
                 [[ $1 =~ $widths ]] || exit 3; echo 7,1.0,3.0,0.1,3.1\n\
               fi\n\
             done\n",
        )
        .unwrap();
        std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut twin = Torch::start(python.to_str().unwrap(), &dir, 2)
            .unwrap()
            .expect("the stand-in imports torch");
        let widths = [32, 64, 128];
        let (params, t) = twin.measure("unet", &widths, 8, 16, 1, 0.0).unwrap();
        assert_eq!((params, t.fwdbwd, t.step), (7, 3.0, 3.1));
        assert_eq!(twin.step("unet", &widths, 8, 16, 0.1).unwrap(), 2.5);
        drop(twin);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The pair summary: the upper median, the least and the largest ratio; none of no pairs.
    #[test]
    fn pairs_summarise_as_median_and_range() {
        let p = PairRatios::of(vec![0.9, 1.3, 0.7, 1.1]).unwrap();
        assert_eq!((p.pairs, p.median, p.min, p.max), (4, 1.1, 0.7, 1.3));
        assert_eq!(p.to_string(), "1.10 [0.70, 1.30]");
        assert!(PairRatios::of(vec![]).is_none());
    }
}
