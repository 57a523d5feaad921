//! `cargo xtask reproduce example1`: gradient differences between meshes against the noise
//! level (001 Example 1 / Figure 2; 000 Example 1, Tables 1-2), for a 3-tap / 3x3 convolution
//! and a mesh-free convolution (MFC), with the target independent of the noise and sharing it.
//!
//! Loss (001 eq. 14-15): `l_h(theta) = mean_i (f(u^h; theta))_i t_i`, a Riemann mean, with
//! `t = y` (setting `independent`: a smooth field independent of the noise, 001's setting) or
//! `t = u` (setting `shared`: the target is the noisy input). `u = s + sigma z`: a smooth
//! Gaussian random field `s` plus white noise `z ~ N(0, 1)` on the finest mesh, all restricted
//! together by averaging (2 or 2x2 cells). `delta_g(n) = ||grad l_{1/n} - grad l_{2/n}||`
//! (001 eq. 16), reported against the finer mesh `n`, averaged over a few samples.
//!
//! - 2-D: `s`, `y` are [`data::GaussianRandomField`] images (spectrum `|k|^-4`, 8 modes per axis)
//!   at the pixel centres of the 256 mesh; the 3x3 convolution is periodic; the MFC is
//!   [`mfc::Mfc`] (1 -> 1, fixed parameters, kernel 2 pixels of the 64 mesh wide), gradients by
//!   autograd over all its parameters.
//! - 1-D: `s`, `y` are 1-D random Fourier series `sum_{k<=8} a_k cos(2 pi k x) + b_k sin(2 pi k x)`,
//!   `a_k, b_k ~ N(0, k^-4)`, on the 1024 mesh; the 3-tap convolution is periodic; the 1-D MFC is
//!   the 1-D analogue of 000 eq. 21, `S(k) = (alpha + i d k) exp(-t k^2)`, `k = 2 pi m`, applied by
//!   a dense DFT (Nyquist mode: derivative part zeroed), with the closed-form gradients
//!   `dS/dalpha = G`, `dS/dd = i k G`, `dS/dtau = -t k^2 S` (`G = exp(-t k^2)`, `t = e^tau`).

use crate::report::plot::{line_plot, Axes, Series};
use anyhow::{Context as _, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use data::{GaussianRandomField, ImageSource};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::f64::consts::PI;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder (default `runs/example1/<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Samples averaged per point.
    #[arg(long, default_value_t = 4)]
    pub samples: u64,
    /// Random seed of the fields and the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub const SIGMAS: [f64; 4] = [0.0, 0.01, 0.1, 1.0];
const FINE_1D: usize = 1024;
const FINE_2D: usize = 256;
const COARSE: usize = 16;
/// Kernel width of the MFC in pixels of the 64 mesh (`t = (w / 64)^2 / 2`).
const MFC_WIDTH: f64 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Conv3,
    Mfc,
}

impl Layer {
    fn name(self) -> &'static str {
        match self {
            Layer::Conv3 => "conv3",
            Layer::Mfc => "mfc",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Independent,
    Shared,
}

impl Setting {
    fn name(self) -> &'static str {
        match self {
            Setting::Independent => "independent",
            Setting::Shared => "shared",
        }
    }
}

/// One row of `results.csv`.
#[derive(Debug, Clone)]
pub struct Row {
    pub dim: usize,
    pub layer: Layer,
    pub setting: Setting,
    pub sigma: f64,
    pub n: usize,
    pub delta_g: f64,
}

/// A square (2-D) or line (1-D) grid function: `side^dim` values, row-major.
#[derive(Debug, Clone)]
struct Grid {
    dim: usize,
    side: usize,
    v: Vec<f64>,
}

impl Grid {
    /// Average over cells of 2 (1-D) or 2x2 (2-D) pixels.
    fn restrict(&self) -> Grid {
        let s = self.side / 2;
        let v = match self.dim {
            1 => (0..s)
                .map(|i| 0.5 * (self.v[2 * i] + self.v[2 * i + 1]))
                .collect(),
            _ => (0..s * s)
                .map(|k| {
                    let (i, j) = (2 * (k / s), 2 * (k % s));
                    let at = |a: usize, b: usize| self.v[a * self.side + b];
                    0.25 * (at(i, j) + at(i + 1, j) + at(i, j + 1) + at(i + 1, j + 1))
                })
                .collect(),
        };
        Grid {
            dim: self.dim,
            side: s,
            v,
        }
    }

    /// Value at `(i, j)` shifted periodically (`i` ignored in 1-D).
    fn at(&self, i: isize, j: isize) -> f64 {
        let n = self.side as isize;
        let (i, j) = (i.rem_euclid(n) as usize, j.rem_euclid(n) as usize);
        match self.dim {
            1 => self.v[j],
            _ => self.v[i * self.side + j],
        }
    }

    fn tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.v.clone(),
            (1, 1, self.side, self.side),
            &Device::Cpu,
        )?)
    }
}

/// `Grid` hierarchy from the finest mesh down to `COARSE`, finest first.
fn hierarchy(fine: Grid) -> Vec<Grid> {
    let mut levels = vec![fine];
    while levels[levels.len() - 1].side > COARSE {
        let next = levels[levels.len() - 1].restrict();
        levels.push(next);
    }
    levels
}

fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let v: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
}

/// 1-D random Fourier series (module doc) at the pixel centres of the `n` mesh.
fn field_1d(rng: &mut StdRng, n: usize) -> Vec<f64> {
    let coef: Vec<(f64, f64, f64)> = (1..=8)
        .map(|k| {
            (
                k as f64,
                normal(rng) * (k as f64).powi(-2),
                normal(rng) * (k as f64).powi(-2),
            )
        })
        .collect();
    (0..n)
        .map(|i| {
            let x = (i as f64 + 0.5) / n as f64;
            coef.iter()
                .map(|(k, a, b)| a * (2.0 * PI * k * x).cos() + b * (2.0 * PI * k * x).sin())
                .sum()
        })
        .collect()
}

/// The clean field `s` and target `y` of sample `index` on the finest mesh of `dim`.
fn smooth_pair(dim: usize, seed: u64, index: u64) -> Result<(Grid, Grid)> {
    match dim {
        1 => {
            let mut rng = StdRng::seed_from_u64(data::mix_seed(seed, index));
            let s = field_1d(&mut rng, FINE_1D);
            let y = field_1d(&mut rng, FINE_1D);
            Ok((
                Grid {
                    dim,
                    side: FINE_1D,
                    v: s,
                },
                Grid {
                    dim,
                    side: FINE_1D,
                    v: y,
                },
            ))
        }
        _ => {
            let img = |sd: u64| -> Result<Grid> {
                let src = GaussianRandomField::new(sd, 4.0).with_max_frequency(8);
                let t = src.image(index, FINE_2D)?.to_dtype(DType::F64)?;
                Ok(Grid {
                    dim,
                    side: FINE_2D,
                    v: t.flatten_all()?.to_vec1()?,
                })
            };
            Ok((img(seed)?, img(seed ^ 0xA5A5_5A5A)?))
        }
    }
}

/// Gradient of `mean(conv(u) t)` for a periodic 3-tap / 3x3 cross-correlation:
/// `g_{a,b} = mean_i u_{i+(a,b)} t_i` (closed form, independent of the weights).
fn conv_gradient(u: &Grid, t: &Grid) -> Vec<f64> {
    let n = u.side as isize;
    let rows: Vec<isize> = if u.dim == 1 { vec![0] } else { vec![-1, 0, 1] };
    let count = u.v.len() as f64;
    let mut g = vec![];
    for &a in &rows {
        for b in -1..=1isize {
            let mut s = 0.0;
            for i in 0..(if u.dim == 1 { 1 } else { n }) {
                for j in 0..n {
                    s += u.at(i + a, j + b) * t.at(i, j);
                }
            }
            g.push(s / count);
        }
    }
    g
}

/// Parameters of the fixed MFC (1-D uses alpha, d_x, tau).
struct MfcParams {
    alpha: f64,
    d: (f64, f64),
    tau: f64,
}

fn mfc_params() -> MfcParams {
    let h0 = 1.0 / 64.0;
    MfcParams {
        alpha: 0.8,
        d: (0.6 * h0, -0.4 * h0),
        tau: ((MFC_WIDTH * h0).powi(2) / 2.0).ln(),
    }
}

/// 1-D MFC gradient of `mean(MFC(u) t)` with respect to `(alpha, d, tau)`:
/// `(1/n^2) Re sum_m conj(t^_m) dS/dp(k_m) u^_m` with a dense DFT.
fn mfc_gradient_1d(u: &Grid, t: &Grid, p: &MfcParams) -> Vec<f64> {
    let n = u.side;
    let dft = |v: &[f64]| -> Vec<(f64, f64)> {
        (0..n)
            .map(|m| {
                v.iter().enumerate().fold((0.0, 0.0), |(re, im), (j, x)| {
                    let th = -2.0 * PI * ((m * j) % n) as f64 / n as f64;
                    (re + x * th.cos(), im + x * th.sin())
                })
            })
            .collect()
    };
    let (uh, th) = (dft(&u.v), dft(&t.v));
    let time = p.tau.exp();
    let mut g = [0.0; 3];
    for m in 0..n {
        let mm = if 2 * m < n {
            m as f64
        } else {
            m as f64 - n as f64
        };
        let k = 2.0 * PI * mm;
        let kd = if 2 * m == n { 0.0 } else { k };
        let gk = (-time * k * k).exp();
        // conj(t^) u^ = (a + i b).
        let (a, b) = (
            th[m].0 * uh[m].0 + th[m].1 * uh[m].1,
            th[m].0 * uh[m].1 - th[m].1 * uh[m].0,
        );
        // Re[(x + i y)(a + i b)] = x a - y b for dS/dp = x + i y.
        let (s_re, s_im) = (p.alpha * gk, p.d.0 * kd * gk);
        g[0] += gk * a;
        g[1] += -kd * gk * b;
        g[2] += -time * k * k * (s_re * a - s_im * b);
    }
    let nn = (n * n) as f64;
    g.iter().map(|v| v / nn).collect()
}

/// 2-D MFC gradient of `mean(MFC(u) t)` over all parameters of an [`mfc::Mfc`] (autograd).
struct Mfc2d {
    layer: mfc::Mfc,
    varmap: VarMap,
}

impl Mfc2d {
    fn new(p: &MfcParams) -> Result<Mfc2d> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let layer = mfc::Mfc::new(1, 1, &mfc::MfcConfig::default(), vb)?;
        let values: [(&str, Vec<f64>); 8] = [
            ("weight", vec![1.0]),
            ("bias", vec![0.1]),
            ("alpha", vec![p.alpha]),
            ("d", vec![p.d.0, p.d.1]),
            ("phi", vec![0.4]),
            ("a", vec![0.3]),
            ("b", vec![-0.2]),
            ("tau", vec![p.tau]),
        ];
        {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned varmap"))?;
            for (name, v) in values {
                let var = data
                    .get(name)
                    .with_context(|| format!("mfc has no variable {name}"))?;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu)?)?;
            }
        }
        Ok(Mfc2d { layer, varmap })
    }

    fn gradient(&self, u: &Grid, t: &Grid) -> Result<Vec<f64>> {
        let loss = self
            .layer
            .forward(&u.tensor()?)?
            .mul(&t.tensor()?)?
            .mean_all()?;
        let grads = loss.backward()?;
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned varmap"))?;
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let mut g = vec![];
        for name in names {
            if let Some(t) = grads.get(data[name].as_tensor()) {
                g.extend(t.flatten_all()?.to_vec1::<f64>()?);
            }
        }
        Ok(g)
    }
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// All rows for one dimension: every layer, setting and sigma, `delta_g` for each finer mesh.
fn measure(dim: usize, samples: u64, seed: u64) -> Result<Vec<Row>> {
    let params = mfc_params();
    let mfc2 = Mfc2d::new(&params)?;
    let mut rows = vec![];
    for &sigma in &SIGMAS {
        // sums[layer][setting][pair]
        let mut sums: Vec<Vec<Vec<f64>>> = vec![vec![vec![]; 2]; 2];
        for index in 0..samples {
            let (s, y) = smooth_pair(dim, seed, index)?;
            let mut rng = StdRng::seed_from_u64(data::mix_seed(seed ^ 0x5151, index));
            let u = Grid {
                v: s.v.iter().map(|v| v + sigma * normal(&mut rng)).collect(),
                ..s
            };
            let (us, ys) = (hierarchy(u), hierarchy(y));
            for (li, layer) in [Layer::Conv3, Layer::Mfc].into_iter().enumerate() {
                for (si, setting) in [Setting::Independent, Setting::Shared]
                    .into_iter()
                    .enumerate()
                {
                    let grads = us
                        .iter()
                        .zip(&ys)
                        .map(|(u, y)| {
                            let t = if setting == Setting::Shared { u } else { y };
                            match (layer, dim) {
                                (Layer::Conv3, _) => Ok(conv_gradient(u, t)),
                                (Layer::Mfc, 1) => Ok(mfc_gradient_1d(u, t, &params)),
                                (Layer::Mfc, _) => mfc2.gradient(u, t),
                            }
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let d: Vec<f64> = grads.windows(2).map(|w| dist(&w[0], &w[1])).collect();
                    let acc = &mut sums[li][si];
                    if acc.is_empty() {
                        acc.resize(d.len(), 0.0);
                    }
                    acc.iter_mut()
                        .zip(&d)
                        .for_each(|(a, v)| *a += v / samples as f64);
                }
            }
        }
        for (li, layer) in [Layer::Conv3, Layer::Mfc].into_iter().enumerate() {
            for (si, setting) in [Setting::Independent, Setting::Shared]
                .into_iter()
                .enumerate()
            {
                let fine = if dim == 1 { FINE_1D } else { FINE_2D };
                for (pair, &delta_g) in sums[li][si].iter().enumerate() {
                    rows.push(Row {
                        dim,
                        layer,
                        setting,
                        sigma,
                        n: fine >> pair,
                        delta_g,
                    });
                }
            }
        }
    }
    Ok(rows)
}

/// Observed order `p` of `delta_g ~ n^-p`: least-squares slope of `log2 delta_g` against
/// `log2 n` over the three finest meshes.
pub fn observed_order(points: &[(usize, f64)]) -> f64 {
    let mut pts: Vec<(f64, f64)> = points
        .iter()
        .map(|&(n, d)| ((n as f64).log2(), d.max(1e-300).log2()))
        .collect();
    pts.sort_by(|a, b| b.0.total_cmp(&a.0));
    pts.truncate(3);
    let k = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / k,
        pts.iter().map(|p| p.1).sum::<f64>() / k,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    -sxy / sxx
}

pub fn run(args: Args) -> Result<()> {
    let dir = crate::common::out_dir_or_default(args.out.as_deref(), "example1")?;
    let mut rows = vec![];
    for dim in [1, 2] {
        tracing::info!("example1: {dim}-D, {} samples", args.samples);
        rows.extend(measure(dim, args.samples.max(1), args.seed)?);
    }
    let mut csv = String::from("dim,layer,setting,sigma,n,delta_g\n");
    for r in &rows {
        writeln!(
            csv,
            "{},{},{},{},{},{:.6e}",
            r.dim,
            r.layer.name(),
            r.setting.name(),
            r.sigma,
            r.n,
            r.delta_g
        )?;
    }
    std::fs::write(dir.join("results.csv"), csv)?;

    let mut md = String::from(
        "# 001 Example 1 / Figure 2 (000 Tables 1-2), reproduced\n\n\
         `delta_g(n) = ||grad l_{1/n} - grad l_{2/n}||`, loss `mean(f(u) t)`, `u = s + sigma z` \
         restricted by averaging; `t = y` smooth and independent of the noise (`independent`) or \
         `t = u` (`shared`). Order `p`: `delta_g ~ n^-p` fitted over the three finest meshes \
         (p > 0: differences shrink; p < 0: they grow with the mesh).\n",
    );
    for dim in [1, 2] {
        let ns: Vec<usize> = {
            let mut v: Vec<usize> = rows.iter().filter(|r| r.dim == dim).map(|r| r.n).collect();
            v.sort();
            v.dedup();
            v
        };
        writeln!(md, "\n## {dim}-D\n")?;
        write!(md, "| layer | setting | sigma |")?;
        for n in &ns {
            write!(md, " n={n} |")?;
        }
        writeln!(md, " order p |")?;
        writeln!(md, "|---|---|---|{}---|", "---|".repeat(ns.len()))?;
        for layer in [Layer::Conv3, Layer::Mfc] {
            for setting in [Setting::Independent, Setting::Shared] {
                let mut series = vec![];
                for &sigma in &SIGMAS {
                    let pts: Vec<(usize, f64)> = rows
                        .iter()
                        .filter(|r| {
                            r.dim == dim
                                && r.layer == layer
                                && r.setting == setting
                                && r.sigma == sigma
                        })
                        .map(|r| (r.n, r.delta_g))
                        .collect();
                    write!(md, "| {} | {} | {sigma} |", layer.name(), setting.name())?;
                    for n in &ns {
                        let v = pts
                            .iter()
                            .find(|p| p.0 == *n)
                            .map(|p| p.1)
                            .unwrap_or(f64::NAN);
                        write!(md, " {v:.2e} |")?;
                    }
                    writeln!(md, " {:.2} |", observed_order(&pts))?;
                    series.push(Series {
                        name: format!("sigma = {sigma}"),
                        points: pts.iter().map(|&(n, d)| ((n as f64).log2(), d)).collect(),
                    });
                }
                let file = format!("example1_{dim}d_{}_{}.png", layer.name(), setting.name());
                let title = format!("{dim}-D {}, {} target", layer.name(), setting.name());
                line_plot(
                    &dir.join(&file),
                    &Axes {
                        title: &title,
                        x_label: "log2 n (finer mesh of the pair)",
                        y_label: "delta_g",
                        log_y: true,
                    },
                    &series,
                )?;
            }
        }
    }
    std::fs::write(dir.join("results.md"), &md)?;
    println!("{md}");
    println!("wrote {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_gradient_is_the_shifted_inner_product() {
        // u = index, t = 1 on 4 points: g_b = mean(u_{i+b}) = 1.5 for every shift.
        let u = Grid {
            dim: 1,
            side: 4,
            v: vec![0.0, 1.0, 2.0, 3.0],
        };
        let t = Grid {
            dim: 1,
            side: 4,
            v: vec![1.0, 0.0, 0.0, 0.0],
        };
        // Only t_0 = 1: g_b = u_b / 4 with periodic wrap.
        assert_eq!(conv_gradient(&u, &t), vec![3.0 / 4.0, 0.0, 1.0 / 4.0]);
    }

    #[test]
    fn mfc_1d_gradient_matches_finite_differences() {
        let mut rng = StdRng::seed_from_u64(3);
        let u = Grid {
            dim: 1,
            side: 32,
            v: field_1d(&mut rng, 32),
        };
        let t = Grid {
            dim: 1,
            side: 32,
            v: field_1d(&mut rng, 32),
        };
        let p = MfcParams {
            alpha: 0.7,
            d: (0.03, 0.0),
            tau: (0.002f64).ln(),
        };
        // Loss by the same DFT formula: (1/n^2) Re sum conj(t^) S u^.
        let loss = |p: &MfcParams| {
            let n = 32;
            let mut s = 0.0;
            for i in 0..n {
                // Direct convolution form: apply S in Fourier space by a dense inverse DFT.
                let mut v = 0.0;
                for m in 0..n {
                    let mm = if 2 * m < n {
                        m as f64
                    } else {
                        m as f64 - n as f64
                    };
                    let k = 2.0 * PI * mm;
                    let kd = if 2 * m == n { 0.0 } else { k };
                    let g = (-p.tau.exp() * k * k).exp();
                    for j in 0..n {
                        let th = 2.0 * PI * (mm * (i as f64 - j as f64)) / n as f64;
                        v += u.v[j] * g * (p.alpha * th.cos() - p.d.0 * kd * th.sin());
                    }
                }
                s += v / n as f64 * t.v[i];
            }
            s / n as f64
        };
        let g = mfc_gradient_1d(&u, &t, &p);
        let e = 1e-6;
        let fd = [
            (loss(&MfcParams {
                alpha: p.alpha + e,
                ..p
            }) - loss(&MfcParams {
                alpha: p.alpha - e,
                ..p
            })) / (2.0 * e),
            (loss(&MfcParams {
                d: (p.d.0 + e, 0.0),
                ..p
            }) - loss(&MfcParams {
                d: (p.d.0 - e, 0.0),
                ..p
            })) / (2.0 * e),
            (loss(&MfcParams {
                tau: p.tau + e,
                ..p
            }) - loss(&MfcParams {
                tau: p.tau - e,
                ..p
            })) / (2.0 * e),
        ];
        for (a, b) in g.iter().zip(&fd) {
            assert!(
                (a - b).abs() < 1e-6 * (1.0 + b.abs()),
                "analytic {g:?} vs finite differences {fd:?}"
            );
        }
    }

    #[test]
    fn observed_order_of_a_power_law() {
        let pts: Vec<(usize, f64)> = [32usize, 64, 128, 256]
            .iter()
            .map(|&n| (n, 5.0 / (n as f64).powi(2)))
            .collect();
        assert!((observed_order(&pts) - 2.0).abs() < 1e-9);
    }
}
