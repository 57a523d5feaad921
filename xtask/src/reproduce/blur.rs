//! `cargo xtask reproduce blur`: blur-kernel estimation (000 section 5 "Blur Estimation",
//! Figure 4, Table 3).
//!
//! Data: `u` a random Markov field ([`data::MarkovField`], 000 cites Tenorio et al. 2011) on
//! the finest mesh `h`, `y = K_h u + sigma z`: `K_h` the periodic convolution with a sampled,
//! sum-1 anisotropic Gaussian PSF of physical covariance `C = Rot(theta) diag(s1^2, s2^2)
//! Rot(theta)^T` (`s1 = 0.012`, `s2 = 0.006` of the unit square, `theta = 30 deg`), `z ~ N(0, 1)`,
//! `sigma = 0.01`. A pool of pairs `(u, K_h u)` is rendered once; every draw takes a pool pair,
//! rolls both by the same random periodic shift (the blur commutes with it) and adds fresh noise.
//!
//! Models: one layer `f`, 1 -> 1 channel, no bias: (a) a standard `k x k` stencil
//! ([`models::Conv`], `ConvKind::Standard`, applied periodically), (b) an MFC
//! (`ConvKind::Mfc`). Loss `mean (f(u) - y)^2` (000 "Blur Estimation"). Each layer is trained by
//! single-scale SGD (batch `sum_l N_l`, the paper's baseline), MGE (001 Algorithm 1, `L` levels,
//! coarsening by 2x2 averaging, `N_l = 2^l N_0`) and Full-Multiscale (001 Algorithm 2, halving
//! schedule: `I, I/2, I/4` iterations from the coarsest stage), with Adam and a cosine rate, via
//! [`fmg::Driver`]. The same initial weights start every strategy of a layer.
//!
//! Test loss: `mean (f(R^l u) - R^l K_h u)^2` on held-out pairs, noise-free targets, at every
//! mesh `2^l h` (000 Figure 4; `R` the 2x2 average). #WU per 001 Definition 1, counted by the
//! estimator's accountant. Target test loss: 1.1 x single-scale's final finest-mesh loss; a
//! strategy's iterations and #WU to reach it are those of the first evaluation at or below it.

use crate::report::plot::{line_plot, Axes, Series};
use anyhow::{Context as _, Result};
use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW, VarBuilder, VarMap};
use data::{Degraded, ImageSource, MarkovField};
use fmg::StrategyKind;
use mge::{LevelPlan, Sampler, StageSchedule};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A minute or two on a 2-core CPU (fewer iterations, smaller batches and pool).
    #[arg(long)]
    pub quick: bool,
    /// Output folder (default `runs/blur/<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the images, the noise and the sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Side `k` of the standard stencil (odd).
    #[arg(long, default_value_t = 5)]
    pub kernel: usize,
    /// Initial Adam learning rate (default 0.02).
    #[arg(long)]
    pub lr: Option<f64>,
}

/// Sizes of one run of the experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Finest mesh `n` (`h = 1/n`); the test meshes are `n / 2^l`, `l < levels`.
    pub fine: usize,
    /// Levels `L`.
    pub levels: usize,
    /// Base batch `N_0`.
    pub n0: usize,
    /// Iterations `I` (of the coarsest stage for Full-Multiscale).
    pub iters: usize,
    /// Training pairs rendered (each drawn with a random periodic shift).
    pub pool: usize,
    /// Test pairs.
    pub test: usize,
    /// Stencil side `k`.
    pub kernel: usize,
    /// Evaluate the test loss every this many iterations.
    pub eval_every: usize,
    /// Initial Adam learning rate (cosine down to 1/100 of it).
    pub lr: f64,
    /// Measurement noise `sigma`.
    pub noise: f64,
}

impl Settings {
    /// The paper's count: 200 iterations (000 Table 3), meshes 32-128.
    pub fn full(kernel: usize) -> Self {
        Settings {
            fine: 128,
            levels: 3,
            n0: 4,
            iters: 200,
            pool: 256,
            test: 16,
            kernel,
            eval_every: 2,
            lr: 2e-2,
            noise: 0.01,
        }
    }

    /// Same meshes, smaller batches and pool.
    pub fn quick(kernel: usize) -> Self {
        Settings {
            n0: 2,
            pool: 64,
            test: 8,
            ..Settings::full(kernel)
        }
    }
}

/// The blur: a sampled anisotropic Gaussian PSF, periodic, normalised to sum 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Psf {
    /// Standard deviations along the principal axes, in units of the domain side.
    pub sigma: (f64, f64),
    /// Angle of the first principal axis against the x axis (radians).
    pub angle: f64,
}

impl Psf {
    /// The experiment's kernel: `s = (0.012, 0.006)`, 30 degrees.
    pub fn standard() -> Self {
        Psf {
            sigma: (0.012, 0.006),
            angle: std::f64::consts::PI / 6.0,
        }
    }

    /// Weights `w[dy][dx]` for offsets `-r..=r` on an `n` mesh:
    /// `w ∝ exp(-x^T C^{-1} x / 2)`, `x = h (dx, dy)`, `r = ceil(4 s1 n)` (at most `(n-1)/2`).
    pub fn stencil(&self, n: usize) -> (usize, Vec<f64>) {
        let r = ((4.0 * self.sigma.0.max(self.sigma.1) * n as f64).ceil() as usize)
            .min((n.max(1) - 1) / 2);
        let (c, s) = (self.angle.cos(), self.angle.sin());
        let h = 1.0 / n as f64;
        let side = 2 * r + 1;
        let mut w = Vec::with_capacity(side * side);
        for dy in 0..side {
            for dx in 0..side {
                let (x, y) = ((dx as f64 - r as f64) * h, (dy as f64 - r as f64) * h);
                let (p, q) = (c * x + s * y, -s * x + c * y);
                w.push((-0.5 * ((p / self.sigma.0).powi(2) + (q / self.sigma.1).powi(2))).exp());
            }
        }
        let total: f64 = w.iter().sum();
        (r, w.into_iter().map(|v| v / total).collect())
    }

    /// `(K_h u)[i, j] = sum w[a][b] u[(i + a - r) mod n, (j + b - r) mod n]` for an `n x n`
    /// row-major image.
    pub fn apply(&self, u: &[f64], n: usize) -> Vec<f64> {
        let (r, w) = self.stencil(n);
        let side = 2 * r + 1;
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let mut acc = 0.0;
                for a in 0..side {
                    let row = (i + n + a - r) % n;
                    for b in 0..side {
                        acc += w[a * side + b] * u[row * n + (j + n + b - r) % n];
                    }
                }
                out[i * n + j] = acc;
            }
        }
        out
    }
}

/// `(u, K_h u)` for images `first .. first + count` of the Markov field, `[count, 1, n, n]` each.
fn render_pairs(
    field: &MarkovField,
    psf: &Psf,
    first: u64,
    count: usize,
    n: usize,
) -> Result<(Tensor, Tensor)> {
    let (mut us, mut ys) = (
        Vec::with_capacity(count * n * n),
        Vec::with_capacity(count * n * n),
    );
    for i in 0..count as u64 {
        let u: Vec<f64> = field
            .image(first + i, n)?
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_vec1()?;
        ys.extend(psf.apply(&u, n));
        us.extend(u);
    }
    let shape = (count, 1, n, n);
    Ok((
        Tensor::from_vec(us, shape, &Device::Cpu)?.to_dtype(DType::F32)?,
        Tensor::from_vec(ys, shape, &Device::Cpu)?.to_dtype(DType::F32)?,
    ))
}

/// Training pairs: a pool pair rolled by a random periodic shift, target plus fresh noise.
struct PairSampler {
    u: Tensor,
    ku: Tensor,
    noise: f64,
    rng: StdRng,
}

impl Sampler for PairSampler {
    fn draw(&mut self, count: usize) -> mge::Result<Degraded> {
        let (pool, _, n, _) = self.u.dims4()?;
        let (mut us, mut ys) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for _ in 0..count {
            let i = self.rng.random_range(0..pool);
            let (dy, dx) = (
                self.rng.random_range(0..n) as i32,
                self.rng.random_range(0..n) as i32,
            );
            let roll = |t: &Tensor| t.narrow(0, i, 1)?.roll(dy, 2)?.roll(dx, 3);
            us.push(roll(&self.u)?);
            ys.push(roll(&self.ku)?);
        }
        let (u, ku) = (Tensor::cat(&us, 0)?, Tensor::cat(&ys, 0)?);
        let z: Vec<f32> = (0..ku.elem_count())
            .map(|_| self.rng.sample(rand_distr::StandardNormal))
            .collect();
        let target = (ku.clone() + (Tensor::from_vec(z, ku.shape(), ku.device())? * self.noise)?)?;
        Ok(Degraded {
            input: u,
            target,
            t: None,
            noise: None,
            clean_input: Some(ku),
            mask: None,
        })
    }
}

/// The learnable layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Stencil,
    Mfc,
}

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::Stencil => "stencil",
            Layer::Mfc => "mfc",
        }
    }
}

/// One `models::Conv` layer, 1 -> 1, no bias; the stencil is applied periodically (pad by
/// `k/2` with wrapped pixels, convolve, keep the centre), like the blur.
struct BlurModel {
    conv: models::Conv,
    pad: usize,
}

impl BlurModel {
    fn new(layer: Layer, k: usize, vb: VarBuilder) -> Result<Self> {
        let kind = match layer {
            Layer::Stencil => models::ConvKind::Standard,
            Layer::Mfc => models::ConvKind::Mfc,
        };
        let conv = models::Conv::new(
            models::ConvSpec::new(1, 1, k).no_bias(),
            kind,
            vb.pp("conv"),
        )?;
        Ok(BlurModel {
            conv,
            pad: if layer == Layer::Stencil { k / 2 } else { 0 },
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let p = self.pad;
        if p == 0 {
            return self.conv.forward(x);
        }
        let (_, _, h, w) = x.dims4()?;
        let wrap = |t: &Tensor, dim: usize, n: usize| {
            Tensor::cat(
                &[t.narrow(dim, n - p, p)?, t.clone(), t.narrow(dim, 0, p)?],
                dim,
            )
        };
        let padded = wrap(&wrap(x, 3, w)?, 2, h)?;
        self.conv.forward(&padded)?.narrow(2, p, h)?.narrow(3, p, w)
    }
}

/// Held-out inputs and noise-free targets at every level, finest first.
struct TestSet {
    levels: Vec<(Tensor, Tensor)>,
}

impl TestSet {
    fn new(u: Tensor, ku: Tensor, levels: usize) -> Result<Self> {
        let mut out = vec![(u, ku)];
        for _ in 1..levels {
            let (u, y) = &out[out.len() - 1];
            let r = |t: &Tensor| grids::restrict(t, grids::Restriction::Average);
            out.push((r(u)?, r(y)?));
        }
        Ok(TestSet { levels: out })
    }

    /// `mean (f(R^l u) - R^l K u)^2` at level `l`.
    fn loss(&self, model: &BlurModel, level: usize) -> candle_core::Result<f64> {
        let (u, y) = &self.levels[level];
        (model.forward(u)? - y)?
            .sqr()?
            .mean_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()
    }
}

/// 000 Table 3's iterations of each strategy (its #WU column did not survive in our copy of
/// the seed).
fn paper_iterations(method: StrategyKind) -> usize {
    match method {
        StrategyKind::Single | StrategyKind::Multiscale => 200,
        StrategyKind::FullMultiscale => 145,
    }
}

/// One trained layer: its test-loss curve and its loss per mesh.
#[derive(Debug, Clone)]
pub struct Run {
    pub layer: Layer,
    pub method: StrategyKind,
    /// `(iterations done, #WU, finest-mesh test loss)`, starting at `(0, 0, initial loss)`.
    pub curve: Vec<(u64, f64, f64)>,
    /// `(mesh n, test loss)` of the final layer, finest first.
    pub per_mesh: Vec<(usize, f64)>,
    pub wall_s: f64,
    /// The iterations that measured per-term statistics (every `eval_every`, multiscale
    /// strategies): their per-term variance ratios `V_l / V_fine` (SPEC section 3).
    pub variance: Vec<train::HistoryPoint>,
}

impl Run {
    fn final_loss(&self) -> f64 {
        self.curve.last().map_or(f64::NAN, |c| c.2)
    }

    /// First `(iterations, #WU)` with test loss `<= target`.
    fn reach(&self, target: f64) -> Option<(u64, f64)> {
        self.curve
            .iter()
            .find(|c| c.2 <= target)
            .map(|c| (c.0, c.1))
    }
}

/// Records the finest-mesh test loss every `every` iterations and after the last.
struct CurveHooks<'a> {
    model: &'a BlurModel,
    test: &'a TestSet,
    every: u64,
    total: u64,
    curve: Vec<(u64, f64, f64)>,
    variance: Vec<train::HistoryPoint>,
    /// Seconds spent drawing batches so far.
    data_s: f64,
}

impl<U: ?Sized, S: ?Sized> fmg::Hooks<U, S> for CurveHooks<'_> {
    fn on_iteration(
        &mut self,
        rec: &fmg::IterRecord,
        _ctx: fmg::Context<'_, U, S>,
    ) -> fmg::HookResult<fmg::Control> {
        let done = rec.iteration + 1;
        self.data_s += rec.data_s;
        if let Some(ratios) = rec.measured_ratios() {
            self.variance.push(train::HistoryPoint {
                iteration: rec.iteration,
                stage: rec.stage,
                level: rec.level,
                loss: rec.loss,
                wu: rec.wu_total.to_f64(),
                wall_s: rec.wall_s,
                train_s: rec.wall_s,
                data_s: self.data_s,
                val_loss: None,
                variance: Some(ratios.to_vec()),
                stats_step_s: Some(rec.stats_s),
                stats_wu: Some(rec.stats_wu.to_f64()),
            });
        }
        if done.is_multiple_of(self.every) || done == self.total {
            let loss = self.test.loss(self.model, 0)?;
            self.curve.push((done, rec.wu_total.to_f64(), loss));
        }
        Ok(fmg::Control::Continue)
    }
}

#[allow(clippy::too_many_arguments)]
fn train(
    layer: Layer,
    method: StrategyKind,
    init: &[(Var, Tensor)],
    model: &BlurModel,
    pool: &(Tensor, Tensor),
    test: &TestSet,
    s: &Settings,
    seed: u64,
) -> Result<Run> {
    for (v, t) in init {
        v.set(t)?;
    }
    let vars: Vec<Var> = init.iter().map(|(v, _)| v.clone()).collect();
    let base = LevelPlan::multiscale(s.levels, s.n0)?;
    let stages = fmg::stages(
        method.with(base.batch.iter().sum(), StageSchedule::Halving),
        &base,
        s.iters,
    )?;
    let cfg = fmg::DriverConfig {
        lr: s.lr,
        lr_min: s.lr / 100.0,
        seed,
        fused_levels: true,
        // Per-term statistics (SPEC section 3) once per evaluation, for the multiscale runs.
        stats_every: if method == StrategyKind::Single {
            0
        } else {
            s.eval_every.max(1)
        },
        ..Default::default()
    };
    let driver = fmg::Driver::new(stages, cfg)?;
    let mut opt = candle_nn::AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: s.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut sampler = PairSampler {
        u: pool.0.clone(),
        ku: pool.1.clone(),
        noise: s.noise,
        rng: StdRng::seed_from_u64(data::mix_seed(seed, 1)),
    };
    let mut acct = mge::Accountant::new();
    let mut hooks = CurveHooks {
        model,
        test,
        every: s.eval_every.max(1) as u64,
        total: driver.total_iters(),
        curve: vec![(0, 0.0, test.loss(model, 0)?)],
        variance: Vec::new(),
        data_s: 0.0,
    };
    let f = |x: &Tensor, _t: Option<&Tensor>| model.forward(x);
    let loss = |p: &Tensor, t: &Tensor| (p - t)?.sqr();
    let clock = std::time::Instant::now();
    let problem = fmg::Problem {
        model: &f,
        loss: &loss,
        sampler: &mut sampler,
        vars: &vars,
    };
    crate::reproduce::runs::run_driver(&driver, problem, &mut opt, &mut acct, &mut hooks)?;
    let wall_s = clock.elapsed().as_secs_f64();
    let per_mesh = (0..s.levels)
        .map(|l| Ok((s.fine >> l, test.loss(model, l)?)))
        .collect::<Result<Vec<_>>>()?;
    tracing::info!(
        layer = layer.name(),
        method = method.name(),
        wall_s,
        "trained; loss per mesh {per_mesh:?}"
    );
    Ok(Run {
        layer,
        method,
        curve: hooks.curve,
        per_mesh,
        wall_s,
        variance: hooks.variance,
    })
}

/// Trains both layers with every method; the runs, layer-major.
pub fn experiment(s: &Settings, seed: u64) -> Result<Vec<Run>> {
    let field = MarkovField::new(seed);
    let psf = Psf::standard();
    let pool = render_pairs(&field, &psf, 0, s.pool, s.fine)?;
    let (tu, tk) = render_pairs(&field, &psf, 1 << 40, s.test, s.fine)?;
    let test = TestSet::new(tu, tk, s.levels)?;
    let mut runs = vec![];
    for layer in [Layer::Stencil, Layer::Mfc] {
        let vm = VarMap::new();
        // Seeded (candle's own initialisers draw from an unseeded generator): the same seed
        // gives the same initial weights, hence the same run.
        let model = BlurModel::new(
            layer,
            s.kernel,
            models::init::seeded_var_builder(
                &vm,
                data::mix_seed(seed, 2),
                DType::F32,
                &Device::Cpu,
            ),
        )?;
        let init = vm
            .all_vars()
            .into_iter()
            .map(|v| Ok((v.clone(), v.as_tensor().copy()?)))
            .collect::<Result<Vec<_>>>()?;
        for method in StrategyKind::ALL {
            runs.push(train(layer, method, &init, &model, &pool, &test, s, seed)?);
        }
    }
    Ok(runs)
}

/// 1.1 x the single-scale final finest-mesh test loss of `layer`.
fn target(runs: &[Run], layer: Layer) -> f64 {
    runs.iter()
        .find(|r| r.layer == layer && r.method == StrategyKind::Single)
        .map_or(f64::NAN, |r| 1.1 * r.final_loss())
}

/// Writes `results.csv`, `curves.csv`, `results.md` and the two plots into `dir`; returns the markdown.
pub fn write_outputs(dir: &Path, s: &Settings, seed: u64, runs: &[Run]) -> Result<String> {
    let mut csv = String::from(
        "layer,method,mesh,test_loss,iterations,wu,target,iters_to_target,wu_to_target,wall_s\n",
    );
    let mut curves = String::from("layer,method,iteration,wu,test_loss\n");
    for r in runs {
        let tgt = target(runs, r.layer);
        let (it, wu) = r
            .reach(tgt)
            .map_or((String::new(), String::new()), |(i, w)| {
                (i.to_string(), format!("{w:.2}"))
            });
        let last = r.curve.last().copied().unwrap_or((0, 0.0, f64::NAN));
        for (n, l) in &r.per_mesh {
            writeln!(
                csv,
                "{},{},{n},{l:.6e},{},{:.2},{tgt:.6e},{it},{wu},{:.2}",
                r.layer.name(),
                r.method.name(),
                last.0,
                last.1,
                r.wall_s
            )?;
        }
        for (i, w, l) in &r.curve {
            writeln!(
                curves,
                "{},{},{i},{w:.2},{l:.6e}",
                r.layer.name(),
                r.method.name()
            )?;
        }
    }
    std::fs::write(dir.join("results.csv"), csv).context("cannot write results.csv")?;
    std::fs::write(dir.join("curves.csv"), curves).context("cannot write curves.csv")?;

    let meshes: Vec<usize> = (0..s.levels).map(|l| s.fine >> l).collect();
    let mut md = format!(
        "# 000 blur estimation (Figure 4, Table 3), reproduced\n\n\
         Markov-field images on the {f}x{f} mesh, anisotropic Gaussian PSF (s = 0.012, 0.006, 30 deg) \
         applied periodically, noise 0.01; one layer 1 -> 1: a {k}x{k} stencil or an MFC. \
         L = {L}, N_0 = {n0}, I = {i} (Full-Multiscale: I, I/2, I/4 from the coarsest stage), \
         Adam lr {lr} cosine to lr/100. Test loss: mean squared error against the noise-free \
         blurred image, {t} held-out pairs restricted to each mesh. Target: 1.1 x single-scale's \
         final loss on the {f} mesh.\n\n## Loss of the trained layer per mesh (000 Figure 4)\n\n",
        f = s.fine,
        k = s.kernel,
        L = s.levels,
        n0 = s.n0,
        i = s.iters,
        lr = s.lr,
        t = s.test
    );
    write!(md, "| layer | method |")?;
    for n in &meshes {
        write!(md, " n={n} |")?;
    }
    writeln!(
        md,
        " max/min |\n|---|---|{}---|",
        "---|".repeat(meshes.len())
    )?;
    for r in runs {
        write!(md, "| {} | {} |", r.layer.name(), r.method.name())?;
        for (_, l) in &r.per_mesh {
            write!(md, " {l:.3e} |")?;
        }
        let (lo, hi) = r
            .per_mesh
            .iter()
            .fold((f64::INFINITY, 0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
        writeln!(md, " {:.1} |", hi / lo)?;
    }
    writeln!(
        md,
        "\n## Work to reach the target test loss (000 Table 3)\n"
    )?;
    writeln!(md, "| layer | method | iterations run | #WU run | final loss (n={}) | target | iterations to target | #WU to target | 000 iterations | wall s |", s.fine)?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|")?;
    for r in runs {
        let tgt = target(runs, r.layer);
        let last = r.curve.last().copied().unwrap_or((0, 0.0, f64::NAN));
        let (it, wu) = r
            .reach(tgt)
            .map_or(("not reached".to_string(), "-".to_string()), |(i, w)| {
                (i.to_string(), format!("{w:.0}"))
            });
        writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.3e} | {tgt:.3e} | {it} | {wu} | {} | {:.1} |",
            r.layer.name(),
            r.method.name(),
            last.0,
            last.1,
            last.2,
            paper_iterations(r.method),
            r.wall_s
        )?;
    }
    md.push_str("\n000 Table 3 gives iterations 200, 200 and 145 for SGD, Multiscale-SGD and Full-Multiscale-SGD (early-stopped); its #WU entries are missing from our copy of the seed.\n");
    let variance: Vec<_> = runs
        .iter()
        .map(|r| {
            let name = format!("{} {}", r.layer.name(), r.method.name());
            (seed, name, r.variance.clone())
        })
        .collect();
    md.push_str(&crate::reproduce::runs::write_variance(dir, &variance)?);
    std::fs::write(dir.join("results.md"), &md).context("cannot write results.md")?;

    let series = |f: &dyn Fn(&Run) -> Vec<(f64, f64)>| -> Vec<Series> {
        runs.iter()
            .map(|r| Series {
                name: format!("{} {}", r.layer.name(), r.method.name()),
                points: f(r),
            })
            .collect()
    };
    line_plot(
        &dir.join("blur_loss_vs_wu.png"),
        &Axes {
            title: "blur estimation: test loss on the finest mesh",
            x_label: "#WU",
            y_label: "test MSE",
            log_y: true,
        },
        &series(&|r| r.curve.iter().map(|c| (c.1, c.2)).collect()),
    )?;
    line_plot(
        &dir.join("blur_loss_per_mesh.png"),
        &Axes {
            title: "trained layer evaluated on each mesh",
            x_label: "log2 n",
            y_label: "test MSE",
            log_y: true,
        },
        &series(&|r| {
            r.per_mesh
                .iter()
                .map(|&(n, l)| ((n as f64).log2(), l))
                .collect()
        }),
    )?;
    Ok(md)
}

pub fn run(args: Args) -> Result<()> {
    if args.kernel.is_multiple_of(2) || args.kernel < 3 {
        anyhow::bail!("--kernel must be odd and at least 3, got {}", args.kernel);
    }
    let mut s = if args.quick {
        Settings::quick(args.kernel)
    } else {
        Settings::full(args.kernel)
    };
    s.lr = args.lr.unwrap_or(s.lr);
    let dir = crate::common::out_dir_or_default(args.out.as_deref(), "blur")?;
    let runs = experiment(&s, args.seed)?;
    let md = write_outputs(&dir, &s, args.seed, &runs)?;
    println!("{md}");
    println!("wrote {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psf_is_normalised_and_blurs_like_a_dense_periodic_convolution() {
        let psf = Psf::standard();
        let n = 16;
        let (r, w) = psf.stencil(n);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let u: Vec<f64> = (0..n * n).map(|i| ((i * 7919) % 13) as f64).collect();
        let got = psf.apply(&u, n);
        // Dense reference: the same weights gathered with signed offsets and rem_euclid.
        let side = 2 * r + 1;
        for i in 0..n as isize {
            for j in 0..n as isize {
                let mut want = 0.0;
                for a in -(r as isize)..=r as isize {
                    for b in -(r as isize)..=r as isize {
                        let wt = w[(a + r as isize) as usize * side + (b + r as isize) as usize];
                        want += wt
                            * u[((i + a).rem_euclid(n as isize) * n as isize
                                + (j + b).rem_euclid(n as isize))
                                as usize];
                    }
                }
                assert!((got[(i * n as isize + j) as usize] - want).abs() < 1e-12);
            }
        }
        // Mean preserved (sum-1 kernel), variance reduced (a blur).
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean(&got) - mean(&u)).abs() < 1e-9);
        let var = |v: &[f64]| v.iter().map(|x| (x - mean(v)).powi(2)).sum::<f64>();
        assert!(var(&got) < var(&u));
    }

    #[test]
    fn periodic_stencil_matches_a_direct_periodic_sum() {
        let vm = VarMap::new();
        let model = BlurModel::new(
            Layer::Stencil,
            3,
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let w: Vec<f32> = vm.all_vars()[0]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let n = 6;
        let u: Vec<f32> = (0..n * n).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::from_vec(u.clone(), (1, 1, n, n), &Device::Cpu).unwrap();
        let got: Vec<f32> = model
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for i in 0..n {
            for j in 0..n {
                let mut want = 0.0;
                for a in 0..3 {
                    for b in 0..3 {
                        want += w[a * 3 + b] * u[((i + n + a - 1) % n) * n + (j + n + b - 1) % n];
                    }
                }
                assert!(
                    (got[i * n + j] - want).abs() < 1e-5,
                    "({i},{j}): {} vs {want}",
                    got[i * n + j]
                );
            }
        }
    }

    #[test]
    fn tiny_experiment_runs_and_writes_its_files() {
        let s = Settings {
            fine: 16,
            levels: 2,
            n0: 2,
            iters: 4,
            pool: 4,
            test: 2,
            kernel: 3,
            eval_every: 2,
            lr: 1e-2,
            noise: 0.01,
        };
        let runs = experiment(&s, 3).unwrap();
        assert_eq!(runs.len(), 6);
        for r in &runs {
            assert_eq!(
                r.per_mesh.iter().map(|p| p.0).collect::<Vec<_>>(),
                vec![16, 8]
            );
            assert!(r.per_mesh.iter().all(|p| p.1.is_finite() && p.1 > 0.0));
            assert!(r
                .curve
                .windows(2)
                .all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1));
        }
        // #WU per iteration (N0 = 2): single 6; MGE 2 (1 + 1/4) + 4/4 = 7/2; FMG stages
        // 4 x 4/4 + 2 x 7/2.
        let wu: Vec<f64> = runs[..3]
            .iter()
            .map(|r| r.curve.last().unwrap().1)
            .collect();
        assert_eq!(wu, vec![24.0, 14.0, 11.0]);
        let dir = std::env::temp_dir().join(format!("xtask-blur-{}", std::process::id()));
        let dir = crate::common::ensure_out_dir(&dir).unwrap();
        let md = write_outputs(&dir, &s, 3, &runs).unwrap();
        assert!(md.contains("| mfc | full-multiscale |"));
        for f in [
            "results.csv",
            "curves.csv",
            "results.md",
            "blur_loss_vs_wu.png",
            "blur_loss_per_mesh.png",
            "variance.csv",
            "variance.png",
        ] {
            assert!(dir.join(f).metadata().unwrap().len() > 0, "{f}");
        }
        let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 6 * 2);
        // Per-term ratios of 2 terms, measured every 2 iterations of a stage with 2 levels:
        // MGE at iterations 0 and 2, FMG only at the first of its 2 fine-stage iterations.
        let variance = std::fs::read_to_string(dir.join("variance.csv")).unwrap();
        assert_eq!(variance.lines().count(), 1 + 2 * (2 + 1) * 2, "{variance}");
        // Every row names the run's seed.
        assert!(
            variance.lines().skip(1).all(|l| l.starts_with("3,")),
            "{variance}"
        );
        assert!(md.contains("Per-term variance ratios"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
