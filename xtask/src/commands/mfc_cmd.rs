//! `cargo xtask mfc <tool>`: mesh-free convolution tools.
//!
//! `mfc kernels [--seed S] --out DIR` writes `DIR/mfc_kernels.png`: impulse responses of MFCs with
//! random parameters (one column per kernel), evaluated on several meshes (one row per mesh), as
//! in seed 000 Figure 3: local to global, different orientations and lobes. Because the layer is
//! mesh-free, a column shows the same continuous kernel at two resolutions.

use crate::common::{ensure_out_dir, Context};
use crate::report::pictures::{save_grid, Scale};
use anyhow::{bail, Context as _, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use mfc::{Mfc, MfcConfig};
use std::f64::consts::PI;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    tool: Tool,
}

#[derive(clap::Subcommand, Debug)]
enum Tool {
    /// PNG grid of MFC impulse responses for random parameters on several meshes.
    Kernels(KernelsArgs),
}

#[derive(clap::Args, Debug)]
pub struct KernelsArgs {
    /// Seed of the random parameters.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Number of kernels (columns).
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// Mesh sizes (rows), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "32,64")]
    meshes: Vec<usize>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    match args.tool {
        Tool::Kernels(a) => kernels(a, ctx),
    }
}

/// splitmix64, so the picture is reproducible from `--seed`.
struct SplitMix(u64);

impl SplitMix {
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        lo + (hi - lo) * ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn kernels(args: KernelsArgs, ctx: &Context) -> Result<()> {
    if args.count == 0 || args.meshes.is_empty() || args.meshes.contains(&0) {
        bail!("need --count > 0 and positive --meshes");
    }
    let out = ensure_out_dir(&args.out)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &ctx.device);
    let cfg = MfcConfig {
        bias: false,
        ..MfcConfig::default()
    };
    let layer = Mfc::new(1, args.count, &cfg, vb).context("building the MFC bank")?;
    // Random parameters: widths from 1 to 12 pixels of the coarsest mesh (local to global),
    // random orientation and anisotropy, identity vs derivative lobes of comparable strength.
    let h0 = 1.0 / *args.meshes.iter().min().unwrap_or(&32) as f64;
    let mut rng = SplitMix(args.seed);
    let k = args.count;
    let mut draw =
        |lo: f64, hi: f64, n: usize| (0..n).map(|_| rng.uniform(lo, hi)).collect::<Vec<f64>>();
    let widths: Vec<f64> = draw(0.0, (12f64).ln(), k)
        .into_iter()
        .map(f64::exp)
        .collect();
    let values: Vec<(&str, Vec<f64>)> = vec![
        ("weight", vec![1.0; k]),
        ("alpha", draw(-1.0, 1.0, k)),
        ("phi", draw(0.0, PI, k)),
        ("a", draw(-1.0, 1.0, k)),
        ("b", draw(-1.0, 1.0, k)),
        (
            "tau",
            widths
                .iter()
                .map(|s| ((s * h0).powi(2) / 2.0).ln())
                .collect(),
        ),
    ];
    let d: Vec<f64> = widths
        .iter()
        .flat_map(|s| {
            [
                s * h0 * rng.uniform(-2.0, 2.0),
                s * h0 * rng.uniform(-2.0, 2.0),
            ]
        })
        .collect();
    {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("variable map poisoned"))?;
        for (name, v) in values.into_iter().chain([("d", d)]) {
            let var = data
                .get(name)
                .with_context(|| format!("no MFC variable {name}"))?;
            let t = Tensor::from_vec(v, var.shape(), &Device::Cpu)?
                .to_dtype(DType::F32)?
                .to_device(&ctx.device)?;
            var.set(&t)?;
        }
    }
    let mut rows = vec![];
    for &n in &args.meshes {
        let mut impulse = vec![0f32; n * n];
        impulse[(n / 2) * n + n / 2] = 1.0;
        let x = Tensor::from_vec(impulse, (1, 1, n, n), &ctx.device)?;
        let y = layer.forward(&x)?.squeeze(0)?;
        rows.push(
            (0..k)
                .map(|c| y.narrow(0, c, 1))
                .collect::<candle_core::Result<Vec<_>>>()?,
        );
        tracing::info!("mesh {n}: {k} impulse responses");
    }
    let path = out.join("mfc_kernels.png");
    save_grid(&path, &rows, Scale::PerTile)?;
    tracing::info!(
        "wrote {} (rows: meshes {:?}; per-tile grey scale)",
        path.display(),
        args.meshes
    );
    Ok(())
}
