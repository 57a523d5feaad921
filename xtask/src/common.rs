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
        Ok(Self { device: parse_device(&args.device)? })
    }
}

/// Parse `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().with_context(|| format!("--device {s}: bad ordinal"))?,
                None => 0,
            };
            Device::new_cuda(ordinal).with_context(|| {
                format!("--device {s}: CUDA unavailable (build with `--features cuda` on a machine with a GPU)")
            })
        }
        other => bail!("--device {other}: expected cpu, cuda or cuda:N"),
    }
}

/// Create `dir` (and parents), naming it in the error.
pub fn ensure_out_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create output folder {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// `out` when given, else `runs/NAME/<unix time>`; created (SPEC section 7's layout).
pub fn out_dir_or_default(out: Option<&Path>, name: &str) -> Result<PathBuf> {
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => {
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
            PathBuf::from("runs").join(name).join(secs.to_string())
        }
    };
    ensure_out_dir(&dir)
}

/// Log to stderr (and to `log_file` when given), level from `RUST_LOG` (default `info`).
pub fn init_tracing(log_file: Option<&Path>) -> Result<()> {
    use tracing_subscriber::{fmt, prelude::*, EnvFilter};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = fmt::layer().with_writer(std::io::stderr).with_target(false);
    let file = match log_file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open log file {}", p.display()))?;
            Some(fmt::layer().with_ansi(false).with_writer(std::sync::Mutex::new(f)))
        }
        None => None,
    };
    tracing_subscriber::registry().with(filter).with(stderr).with(file).try_init().ok();
    Ok(())
}
