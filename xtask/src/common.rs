//! Shared CLI pieces: device selection, output folders, tracing.

use anyhow::{bail, Context as _, Result};
use candle_core::Device;
use std::path::{Path, PathBuf};

/// Flags every subcommand accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Compute device: `cpu`, `cuda` or `cuda:N` (CUDA needs the `cuda` feature; untested here).
    #[arg(long, global = true, default_value = "cpu")]
    pub device: String,
}

/// What every subcommand gets: the device to run on.
pub struct Context {
    pub device: Device,
}

impl Context {
    pub fn new(args: &GlobalArgs) -> Result<Self> {
        Ok(Self {
            device: parse_device(&args.device)?,
        })
    }
}

/// Parse `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .with_context(|| format!("--device {s}: bad ordinal"))?,
                None => 0,
            };
            Device::new_cuda(ordinal).with_context(|| {
                format!("--device {s}: CUDA unavailable (build with `--features cuda` on a machine with a GPU)")
            })
        }
        other => bail!("--device {other}: expected cpu, cuda or cuda:N"),
    }
}

/// The device of the tests that take one: `MULTISCALE_TEST_DEVICE` (`cpu`, `cuda`, `cuda:N`;
/// default `cpu`), so `scripts/gpu-check` runs the experiment smoke tests on a GPU.
#[cfg(test)]
pub fn test_context() -> Context {
    let spec = std::env::var("MULTISCALE_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    Context {
        device: parse_device(&spec).expect("MULTISCALE_TEST_DEVICE"),
    }
}

/// The clap parser of a closed set of choices defined by a library enum: the names
/// (`name` of each of `all`) are listed by `--help` and in the error for an unknown one, and
/// parsed by the enum's `FromStr`, which accepts the same names as its serde form.
pub fn choice<T, const N: usize>(
    all: [T; N],
    name: fn(T) -> &'static str,
) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Copy + Send + Sync + 'static,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(all.map(name)).try_map(|s| s.parse::<T>())
}

/// Create `dir` (and parents), naming it in the error.
pub fn ensure_out_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output folder {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// `out` when given, else `runs/NAME/<unix time>`; created (SPEC section 7's layout).
pub fn out_dir_or_default(out: Option<&Path>, name: &str) -> Result<PathBuf> {
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            PathBuf::from("runs").join(name).join(secs.to_string())
        }
    };
    ensure_out_dir(&dir)
}

/// Log to stderr and to the current run's log file ([`RunLog`]), level from `RUST_LOG`
/// (default `info`). With `quiet` (the `reproduce` experiments, which print one progress line
/// per run) stderr shows only warnings and errors unless `RUST_LOG` is set; the INFO lines go to
/// each run's `train.log`. ANSI colours only when stderr is a terminal.
pub fn init_tracing(quiet: bool) -> Result<()> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::{filter::LevelFilter, fmt, prelude::*, EnvFilter};
    let env = std::env::var("RUST_LOG").is_ok();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr_level = if quiet && !env {
        LevelFilter::WARN
    } else {
        LevelFilter::TRACE
    };
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(stderr_level);
    let file = fmt::layer().with_ansi(false).with_writer(|| RunLogWriter);
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init()
        .ok();
    Ok(())
}

thread_local! {
    static RUN_LOG: std::cell::RefCell<Option<std::fs::File>> = const { std::cell::RefCell::new(None) };
}

/// Sends this thread's log lines to one run's log file while alive (appending), then back to
/// where they went before.
pub struct RunLog {
    previous: Option<std::fs::File>,
}

impl RunLog {
    pub fn open(path: &Path) -> Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        Ok(Self {
            previous: RUN_LOG.with(|c| c.borrow_mut().replace(f)),
        })
    }
}

impl Drop for RunLog {
    fn drop(&mut self) {
        let previous = self.previous.take();
        RUN_LOG.with(|c| *c.borrow_mut() = previous);
    }
}

/// A `tracing` writer into this thread's current [`RunLog`] (nothing when there is none).
struct RunLogWriter;

impl std::io::Write for RunLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        RUN_LOG.with(|c| match c.borrow_mut().as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        RUN_LOG.with(|c| c.borrow_mut().as_mut().map_or(Ok(()), |f| f.flush()))
    }
}

/// [`models::atomic::write_atomic`] with the path in the error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    models::atomic::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `choice` takes exactly the library's names: each parses to its value, an unknown one is
    /// an error listing them all, and `--help` lists them.
    #[test]
    fn choice_parses_the_library_names_and_lists_them() {
        use clap::{Arg, Command};
        let cmd = || {
            Command::new("x").arg(
                Arg::new("strategy")
                    .long("strategy")
                    .value_parser(choice(fmg::StrategyKind::ALL, fmg::StrategyKind::name)),
            )
        };
        for k in fmg::StrategyKind::ALL {
            let m = cmd()
                .try_get_matches_from(["x", "--strategy", k.name()])
                .unwrap();
            assert_eq!(m.get_one::<fmg::StrategyKind>("strategy"), Some(&k));
        }
        let e = cmd()
            .try_get_matches_from(["x", "--strategy", "multi-scale"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("multi-scale") && e.contains("single, multiscale, full-multiscale"),
            "{e}"
        );
        let help = cmd().render_help().to_string();
        assert!(help.contains("full-multiscale"), "{help}");
    }

    #[test]
    fn run_logs_receive_the_info_lines_of_their_run() {
        init_tracing(true).unwrap();
        let dir = std::env::temp_dir().join(format!("xtask-runlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        {
            let _outer = RunLog::open(&dir.join("a.log")).unwrap();
            tracing::info!("line for a");
            {
                let _inner = RunLog::open(&dir.join("b.log")).unwrap();
                tracing::info!("line for b");
            }
            tracing::info!("again a");
        }
        let a = std::fs::read_to_string(dir.join("a.log")).unwrap();
        let b = std::fs::read_to_string(dir.join("b.log")).unwrap();
        assert!(
            a.contains("line for a") && a.contains("again a") && !a.contains("line for b"),
            "{a}"
        );
        assert!(b.contains("line for b") && !b.contains('\x1b'), "{b}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
