//! `cargo xtask landscape`: the loss around a checkpoint on the plane of two random
//! filter-normalised directions (Li et al. 2018, as used in 003 section 4.2):
//! `L(alpha, beta) = loss(theta + alpha d_1 + beta d_2)` on a `steps x steps` grid of
//! `[-span, span]^2`, on one fixed degraded batch (as `eval` builds it).

use crate::commands::eval::in_channels;
use crate::common::{ensure_out_dir, Context};
use crate::report::plot::{register_font, FONT_NAME};
use anyhow::{bail, Context as _, Result};
use candle_core::{DType, Device, Tensor, Var};
use data::Task;
use plotters::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use train::evaluate::{TestSet, TestSpec};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint written by `train` (`final.safetensors` or `checkpoints/step-*/model.safetensors`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output folder: `landscape.csv`, `landscape.png`.
    #[arg(long)]
    pub out: PathBuf,
    /// Grid points per axis (odd keeps the checkpoint itself on the grid).
    #[arg(long, default_value_t = 21)]
    pub steps: usize,
    /// Half-width of the grid in units of the filter-normalised directions.
    #[arg(long, default_value_t = 1.0)]
    pub span: f64,
    #[arg(long, default_value = "denoise", value_parser = crate::common::choice(Task::ALL, Task::name))]
    pub task: Task,
    /// Number of test patches in the fixed batch.
    #[arg(long, default_value_t = 16)]
    pub images: usize,
    /// Folder of PNG/JPEG photos the patches are cut from.
    #[arg(long, default_value = "datasets/photos")]
    pub photos: PathBuf,
    /// Mesh of the batch (a multiple of the model's down-sampling factor).
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Seed of the degradations and of the two directions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Deblurring PSF width in pixels of `--size`.
    #[arg(long, default_value_t = 3.0)]
    pub blur_sigma: f64,
}

/// A standard normal sample.
fn normal(rng: &mut StdRng) -> f64 {
    rng.sample(rand_distr::StandardNormal)
}

/// A random direction with the shapes of `theta`, filter-normalised (Li et al. 2018, eq. 2):
/// every filter `d_i` (slice along the first axis of a tensor of rank >= 2) is scaled to
/// `||theta_i||`, so `alpha d` perturbs each filter in proportion to its size; biases and
/// normalisation parameters (rank <= 1) get 0.
pub fn filter_normalised_direction(theta: &[Tensor], rng: &mut StdRng) -> Result<Vec<Tensor>> {
    theta
        .iter()
        .map(|w| {
            if w.rank() < 2 {
                return Ok(w.zeros_like()?);
            }
            let filters = w.dim(0)?;
            let per = w.elem_count() / filters.max(1);
            let values = w.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            let mut d: Vec<f64> = (0..values.len()).map(|_| normal(rng)).collect();
            for (df, wf) in d.chunks_mut(per).zip(values.chunks(per)) {
                let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
                let (nd, nw) = (norm(df), norm(wf));
                let scale = if nd > 0.0 { nw / nd } else { 0.0 };
                df.iter_mut().for_each(|x| *x *= scale);
            }
            Ok(Tensor::from_vec(d, w.shape(), w.device())?.to_dtype(w.dtype())?)
        })
        .collect()
}

/// `steps` points evenly spaced on `[-span, span]`.
fn axis(steps: usize, span: f64) -> Vec<f64> {
    (0..steps)
        .map(|i| -span + 2.0 * span * i as f64 / (steps - 1) as f64)
        .collect()
}

/// The loss grid: `loss[i][j]` at `alpha = axis[i]`, `beta = axis[j]`, evaluated by setting
/// the checkpoint's variables to `theta + alpha d_1 + beta d_2` (restored afterwards).
pub fn loss_grid(
    vars: &[Var],
    dirs: [&[Tensor]; 2],
    coords: &[f64],
    mut loss: impl FnMut() -> Result<f64>,
) -> Result<Vec<Vec<f64>>> {
    let theta: Vec<Tensor> = vars
        .iter()
        .map(|v| v.as_tensor().copy())
        .collect::<candle_core::Result<_>>()?;
    let mut grid = Vec::with_capacity(coords.len());
    for &a in coords {
        let mut row = Vec::with_capacity(coords.len());
        for &b in coords {
            for (k, v) in vars.iter().enumerate() {
                v.set(&((&theta[k] + (&dirs[0][k] * a)?)? + (&dirs[1][k] * b)?)?)?;
            }
            row.push(loss()?);
        }
        grid.push(row);
    }
    for (v, t) in vars.iter().zip(&theta) {
        v.set(t)?;
    }
    Ok(grid)
}

/// `landscape.csv`: `alpha,beta,loss`.
fn write_csv(path: &Path, coords: &[f64], grid: &[Vec<f64>]) -> Result<()> {
    let mut text = String::from("alpha,beta,loss\n");
    for (i, a) in coords.iter().enumerate() {
        for (j, b) in coords.iter().enumerate() {
            writeln!(text, "{a:.6},{b:.6},{:.8e}", grid[i][j])?;
        }
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// A viridis-like colour for `t` in `[0, 1]` (linear between five anchors).
fn colour(t: f64) -> RGBColor {
    const ANCHORS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    let x = t.clamp(0.0, 1.0) * (ANCHORS.len() - 1) as f64;
    let (i, f) = (
        (x.floor() as usize).min(ANCHORS.len() - 2),
        x - x.floor().min((ANCHORS.len() - 2) as f64),
    );
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (p, q) = (ANCHORS[i], ANCHORS[i + 1]);
    RGBColor(mix(p.0, q.0), mix(p.1, q.1), mix(p.2, q.2))
}

/// Heat map of `log10(loss)` over the grid, the checkpoint marked at the centre, and the
/// iso-lines of 8 levels of `log10(loss)` drawn as cell borders where the level changes.
fn plot(path: &Path, coords: &[f64], grid: &[Vec<f64>], title: &str) -> Result<()> {
    register_font()?;
    let logs: Vec<Vec<f64>> = grid
        .iter()
        .map(|r| r.iter().map(|l| l.max(1e-30).log10()).collect())
        .collect();
    let finite = logs.iter().flatten().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        bail!("landscape: no finite loss on the grid");
    }
    let range = (hi - lo).max(1e-12);
    let n = coords.len();
    let half = (coords[1] - coords[0]) / 2.0;
    let (x0, x1) = (coords[0] - half, coords[n - 1] + half);
    const SIZE: (u32, u32) = (760, 700);
    let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    let draw_err = |e: &dyn std::fmt::Debug| anyhow::anyhow!("drawing {}: {e:?}", path.display());
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT_NAME, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, x0..x1)
            .map_err(|e| draw_err(&e))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("alpha (direction 1)")
            .y_desc("beta (direction 2)")
            .label_style((FONT_NAME, 14))
            .draw()
            .map_err(|e| draw_err(&e))?;
        let level = |v: f64| ((v - lo) / range * 8.0).floor().min(7.0) as i32;
        chart
            .draw_series(
                (0..n)
                    .flat_map(|i| (0..n).map(move |j| (i, j)))
                    .map(|(i, j)| {
                        let v = logs[i][j];
                        let c = if v.is_finite() {
                            colour((v - lo) / range)
                        } else {
                            RGBColor(255, 255, 255)
                        };
                        Rectangle::new(
                            [
                                (coords[i] - half, coords[j] - half),
                                (coords[i] + half, coords[j] + half),
                            ],
                            c.filled(),
                        )
                    }),
            )
            .map_err(|e| draw_err(&e))?;
        // Iso-lines: borders between neighbouring cells in different level bands.
        let mut borders = Vec::new();
        for i in 0..n {
            for j in 0..n {
                if i + 1 < n && level(logs[i][j]) != level(logs[i + 1][j]) {
                    let x = coords[i] + half;
                    borders.push(vec![(x, coords[j] - half), (x, coords[j] + half)]);
                }
                if j + 1 < n && level(logs[i][j]) != level(logs[i][j + 1]) {
                    let y = coords[j] + half;
                    borders.push(vec![(coords[i] - half, y), (coords[i] + half, y)]);
                }
            }
        }
        chart
            .draw_series(
                borders
                    .into_iter()
                    .map(|b| PathElement::new(b, WHITE.stroke_width(1))),
            )
            .map_err(|e| draw_err(&e))?;
        chart
            .draw_series(std::iter::once(Cross::new(
                (0.0, 0.0),
                6,
                RED.stroke_width(2),
            )))
            .map_err(|e| draw_err(&e))?;
        root.present().map_err(|e| draw_err(&e))?;
    }
    let img =
        image::RgbImage::from_raw(SIZE.0, SIZE.1, buf).context("plot buffer has the wrong size")?;
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What [`landscape`] measured.
pub struct Landscape {
    pub coords: Vec<f64>,
    pub grid: Vec<Vec<f64>>,
}

/// The `--images` random patches of `--photos` at `--size` with `channels` channels, degraded
/// for `--task` from `--seed`.
fn test_set(a: &Args, channels: usize, device: &Device) -> Result<TestSet> {
    let spec = TestSpec {
        channels,
        patches: Some(a.images),
        blur_sigma: a.blur_sigma,
        seed: a.seed,
        ..TestSpec::new(a.task, a.size)
    };
    TestSet::load(&a.photos, &spec, device)
        .with_context(|| format!("test images in {}", a.photos.display()))
}

/// Evaluate and write the landscape of `a.checkpoint` into `a.out`.
pub fn landscape(a: &Args, device: &Device) -> Result<Landscape> {
    if a.steps < 2 {
        bail!("--steps {}: needs at least 2 points per axis", a.steps);
    }
    if !(a.span.is_finite() && a.span > 0.0) {
        bail!("--span {}: must be a positive number", a.span);
    }
    if a.images == 0 {
        bail!("--images 0: needs at least one image");
    }
    let out = ensure_out_dir(&a.out)?;
    let (cfg, model, varmap, _) = models::checkpoint::load_model(&a.checkpoint, device)
        .with_context(|| format!("cannot load checkpoint {}", a.checkpoint.display()))?;
    let factor = model.downsampling_factor();
    if !a.size.is_multiple_of(factor) {
        bail!(
            "--size {}: must be a multiple of the model's down-sampling factor {factor}",
            a.size
        );
    }
    let test = test_set(a, in_channels(&cfg), device)?;
    // Sorted by name, so the directions depend only on the seed and the architecture.
    let mut named: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("VarMap lock poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    named.sort_by(|x, y| x.0.cmp(&y.0));
    let vars: Vec<Var> = named.into_iter().map(|(_, v)| v).collect();
    let theta: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let mut rng = StdRng::seed_from_u64(data::mix_seed(a.seed, 0x1A4D));
    let d1 = filter_normalised_direction(&theta, &mut rng)?;
    let d2 = filter_normalised_direction(&theta, &mut rng)?;
    let coords = axis(a.steps, a.span);
    let target = &test.degraded.target;
    let grid = loss_grid(&vars, [&d1, &d2], &coords, || {
        let pred = test.predict(model.as_ref())?;
        Ok((pred - target)?
            .sqr()?
            .mean_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?)
    })?;
    write_csv(&out.join("landscape.csv"), &coords, &grid)?;
    let name = a.checkpoint.display().to_string();
    let title = format!(
        "log10 MSE, {} ({} images, {}x{})",
        name.rsplit('/')
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("/"),
        a.images,
        a.size,
        a.size
    );
    plot(&out.join("landscape.png"), &coords, &grid, &title)?;
    Ok(Landscape { coords, grid })
}

pub fn run(a: Args, ctx: &Context) -> Result<()> {
    let l = landscape(&a, &ctx.device)?;
    let c = l.coords.len() / 2;
    let all = l.grid.iter().flatten().copied().filter(|v| v.is_finite());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(x, y), v| {
        (x.min(v), y.max(v))
    });
    println!(
        "landscape of {}: {}x{} grid on [-{s}, {s}]^2, loss at the centre {:.5e} (grid point ({:.3}, {:.3})), min {lo:.5e}, max {hi:.5e}; {} and {}",
        a.checkpoint.display(),
        a.steps,
        a.steps,
        l.grid[c][c],
        l.coords[c],
        l.coords[c],
        a.out.join("landscape.csv").display(),
        a.out.join("landscape.png").display(),
        s = a.span
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{VarBuilder, VarMap};

    #[test]
    fn directions_are_filter_normalised_and_biases_are_left_alone() {
        let w = Tensor::from_vec(
            (0..24).map(|i| i as f32 - 7.0).collect::<Vec<_>>(),
            (3, 2, 2, 2),
            &Device::Cpu,
        )
        .unwrap();
        let b = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let d = filter_normalised_direction(&[w.clone(), b], &mut rng).unwrap();
        for i in 0..3 {
            let norm = |t: &Tensor| {
                t.get(i)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    .sqrt()
            };
            assert!((norm(&d[0]) - norm(&w)).abs() < 1e-4, "filter {i}");
        }
        assert_eq!(d[1].to_vec1::<f32>().unwrap(), vec![0.0; 3]);
    }

    #[test]
    fn loss_grid_evaluates_the_plane_and_restores_the_weights() {
        // loss(theta) = sum theta^2 with theta = (1, 2), d1 = (1, 0), d2 = (0, 1):
        // L(a, b) = (1 + a)^2 + (2 + b)^2 in closed form.
        let v = Var::new(&[1f64, 2.0], &Device::Cpu).unwrap();
        let d1 = [Tensor::new(&[1f64, 0.0], &Device::Cpu).unwrap()];
        let d2 = [Tensor::new(&[0f64, 1.0], &Device::Cpu).unwrap()];
        let coords = axis(5, 2.0);
        let vars = [v.clone()];
        let grid = loss_grid(&vars, [&d1, &d2], &coords, || {
            Ok(v.as_tensor().sqr()?.sum_all()?.to_scalar::<f64>()?)
        })
        .unwrap();
        for (i, a) in coords.iter().enumerate() {
            for (j, b) in coords.iter().enumerate() {
                assert!((grid[i][j] - ((1.0 + a).powi(2) + (2.0 + b).powi(2))).abs() < 1e-12);
            }
        }
        assert_eq!(v.as_tensor().to_vec1::<f64>().unwrap(), vec![1.0, 2.0]);
    }

    #[test]
    fn landscape_of_a_tiny_checkpoint_writes_the_grid_and_the_plot() {
        let dir = std::env::temp_dir().join(format!("xtask-landscape-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let photos = dir.join("photos");
        std::fs::create_dir_all(&photos).unwrap();
        let img = image::RgbImage::from_fn(48, 48, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 5) as u8, 90])
        });
        img.save(photos.join("a.png")).unwrap();
        let cfg: models::ModelConfig =
            toml::from_str("kind = \"resnet\"\nhidden = 4\nblocks = 1").unwrap();
        let varmap = VarMap::new();
        models::build(
            &cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let ck = dir.join("tiny.safetensors");
        models::checkpoint::save(&ck, &cfg, &varmap, &Default::default()).unwrap();
        let args = Args {
            checkpoint: ck.clone(),
            out: dir.join("out"),
            steps: 5,
            span: 0.5,
            task: Task::Denoise,
            images: 2,
            photos,
            size: 8,
            seed: 3,
            blur_sigma: 3.0,
        };
        let l = landscape(&args, &Device::Cpu).unwrap();
        assert_eq!((l.grid.len(), l.grid[0].len()), (5, 5));
        // The centre is the checkpoint itself: the loss of its own predictions.
        let (_, model, _, _) = models::checkpoint::load_model(&ck, &Device::Cpu).unwrap();
        let test = test_set(&args, 3, &Device::Cpu).unwrap();
        let pred = test.predict(model.as_ref()).unwrap();
        let centre = (pred - &test.degraded.target)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!(
            (l.grid[2][2] - centre).abs() < 1e-6 * centre.max(1e-6),
            "{} vs {centre}",
            l.grid[2][2]
        );
        // Moving off the centre changes the loss (the directions are not zero).
        assert!(
            l.grid
                .iter()
                .flatten()
                .any(|v| (v - centre).abs() > 1e-6 * centre),
            "{:?}",
            l.grid
        );
        let csv = std::fs::read_to_string(dir.join("out/landscape.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 25);
        assert!(
            std::fs::metadata(dir.join("out/landscape.png"))
                .unwrap()
                .len()
                > 1000
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
