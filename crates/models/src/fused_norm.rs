//! Group normalisation fused with what follows it in our blocks, as one candle custom op on the
//! CPU (f32, f64) with an analytic backward:
//!
//! `z[n, c] = x[n, c] + s[n, c]` (a per-sample, per-channel shift: the noise embedding),
//! per sample `n` and group `g` of `C/G` channels `mu = mean(z)`, `var = mean((z - mu)^2)`,
//! `zhat = (z - mu) / sqrt(var + eps)`, `a[n, c] = gamma_c zhat + beta_c`, `y = act(a)`.
//!
//! Backward, with `da = dy act'(a)` and means over the group's `m = (C/G) H W` elements:
//! `dgamma_c = sum_{n,i,j} da zhat`, `dbeta_c = sum_{n,i,j} da`,
//! `dz = (da gamma - mean(da gamma) - zhat mean(da gamma zhat)) / sqrt(var + eps)`,
//! `dx = dz`, `ds[n, c] = sum_{i,j} dz[n, c]`.
//!
//! Statistics, normalisation, affine map, shift and activation run in one pass per group (two
//! for the statistics); the backward reuses the statistics the forward kept and needs two more
//! passes. In f32 the SiLU's exponential is inlined (`exp_f32`), so the element loops
//! vectorise. Other devices and dtypes run candle's composition of the same formulas
//! ([`composed`]).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use fastconv::CpuKernel;
use multiversion::multiversion;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

/// The activation applied after the affine map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormAct {
    /// `a`.
    Identity,
    /// `a sigmoid(a)`.
    Silu,
    /// `a` for `a > 0`, `slope a` otherwise (`slope = 0`: ReLU).
    LeakyRelu(f64),
}

impl NormAct {
    /// Candle's composition of the activation.
    fn apply(self, a: &Tensor) -> Result<Tensor> {
        match self {
            NormAct::Identity => Ok(a.clone()),
            NormAct::Silu => a.silu(),
            NormAct::LeakyRelu(k) => candle_nn::ops::leaky_relu(a, k),
        }
    }
}

/// `act(gamma (z - mu) / sqrt(var + eps) + beta)` with `z = x + shift` as in the module docs.
/// `x`: `[N, C, H, W]`; `shift`: `[N, C]` or none (zero); `affine`: `(gamma, beta)` of `[C]` or
/// none (`gamma = 1, beta = 0`); `groups` divides `C`. Differentiable in every tensor argument.
pub fn group_norm_act(
    x: &Tensor,
    shift: Option<&Tensor>,
    affine: Option<(&Tensor, &Tensor)>,
    groups: usize,
    eps: f64,
    act: NormAct,
) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if groups == 0 || c % groups != 0 {
        candle_core::bail!("group_norm_act: {c} channels cannot form {groups} groups");
    }
    let dtype = x.dtype();
    let args = shift
        .into_iter()
        .chain(affine.into_iter().flat_map(|(g, b)| [g, b]));
    let native = x.device().is_cpu()
        && matches!(dtype, DType::F32 | DType::F64)
        && args
            .clone()
            .all(|t| t.device().is_cpu() && t.dtype() == dtype);
    if !native {
        return composed(x, shift, affine, groups, eps, act);
    }
    let dev = x.device();
    let shift = match shift {
        Some(s) => s.reshape(n * c)?,
        None => Tensor::zeros(n * c, dtype, dev)?,
    };
    let (gamma, beta) = match affine {
        Some((g, b)) => (g.reshape(c)?, b.reshape(c)?),
        None => (Tensor::ones(c, dtype, dev)?, Tensor::zeros(c, dtype, dev)?),
    };
    let p = Tensor::cat(&[&shift, &gamma, &beta], 0)?;
    let geom = Geom {
        n,
        c,
        hw: h * w,
        groups,
        eps,
        act,
    };
    x.contiguous()?.apply_op2(
        &p,
        GroupNormActOp {
            geom,
            stats: Mutex::new(None),
        },
    )
}

/// [`group_norm_act`] by candle's tensor operations (the reference the fused op is tested
/// against, and the path on other devices and dtypes).
pub fn composed(
    x: &Tensor,
    shift: Option<&Tensor>,
    affine: Option<(&Tensor, &Tensor)>,
    groups: usize,
    eps: f64,
    act: NormAct,
) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let z = match shift {
        Some(s) => x.broadcast_add(&s.reshape((n, c, 1, 1))?)?,
        None => x.clone(),
    };
    let zg = z.reshape((n, groups, (c / groups) * h * w))?;
    let zc = zg.broadcast_sub(&zg.mean_keepdim(2)?)?;
    let var = zc.sqr()?.mean_keepdim(2)?;
    let zhat = zc
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .reshape((n, c, h, w))?;
    let a = match affine {
        Some((gamma, beta)) => zhat
            .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?
            .broadcast_add(&beta.reshape((1, c, 1, 1))?)?,
        None => zhat,
    };
    act.apply(&a)
}

/// Shapes and constants of one fused op.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    hw: usize,
    groups: usize,
    eps: f64,
    act: NormAct,
}

impl Geom {
    fn cg(&self) -> usize {
        self.c / self.groups
    }
    fn x_len(&self) -> usize {
        self.n * self.c * self.hw
    }
    /// `[shift (N C) | gamma (C) | beta (C)]`.
    fn p_len(&self) -> usize {
        self.n * self.c + 2 * self.c
    }
    /// `(shift, gamma, beta)` of sample `n`, group `g`, each `C/G` long.
    fn params<'a, T>(&self, p: &'a [T], n: usize, g: usize) -> (&'a [T], &'a [T], &'a [T]) {
        let (cg, nc) = (self.cg(), self.n * self.c);
        (
            &p[n * self.c + g * cg..][..cg],
            &p[nc + g * cg..][..cg],
            &p[nc + self.c + g * cg..][..cg],
        )
    }
    /// Mean and `1 / sqrt(var + eps)` of `z = x + shift` over one group (`x` its `cg hw` values),
    /// in two passes (the mean, then the centred squares), each summed by [`lane_sums`].
    fn stats<T: Float>(&self, x: &[T], shift: &[T]) -> (f64, f64) {
        let m = (self.cg() * self.hw) as f64;
        let mut sum = 0.0;
        for (xc, s) in x.chunks(self.hw).zip(shift) {
            sum += lane_sums(xc, xc, |v, _| [v])[0] + self.hw as f64 * s.f64();
        }
        let mu = sum / m;
        let mut ss = 0.0;
        for (xc, s) in x.chunks(self.hw).zip(shift) {
            let d = T::of(s.f64() - mu);
            ss += lane_sums(xc, xc, |v, _| {
                let z = v + d;
                [z * z]
            })[0];
        }
        (mu, 1.0 / (ss / m + self.eps).sqrt())
    }
}

/// Side-by-side partial sums in [`lane_sums`] (independent additions, so the loop vectorises).
const LANES: usize = 16;

/// The `K` sums `sum_i f(a_i, b_i)` over two slices of equal length, each term rounded to f64
/// and added into [`LANES`] partial sums in f64 (lane `l` takes the terms `l, l + LANES, ...`),
/// then the partial sums and the tail in order. One running sum waits for every addition
/// before it; independent lanes let the compiler keep a vector of them.
#[inline(always)]
fn lane_sums<T: Float, const K: usize>(a: &[T], b: &[T], f: impl Fn(T, T) -> [T; K]) -> [f64; K] {
    let mut acc = [[0.0f64; LANES]; K];
    let (aq, bq) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (aq.remainder(), bq.remainder());
    for (al, bl) in aq.zip(bq) {
        for i in 0..LANES {
            let r = f(al[i], bl[i]);
            for k in 0..K {
                acc[k][i] += r[k].f64();
            }
        }
    }
    let mut total = acc.map(|lanes| lanes.iter().sum::<f64>());
    for (&av, &bv) in ar.iter().zip(br) {
        let r = f(av, bv);
        for k in 0..K {
            total[k] += r[k].f64();
        }
    }
    total
}

/// f32 / f64. Group sums (statistics, the backward's reductions) accumulate in f64
/// ([`lane_sums`]); the per-element work (normalisation, affine map, activation, the backward's
/// `dz`) runs in `Self` with per-channel constants computed once in f64 and rounded to `Self`.
trait Float:
    Copy
    + Send
    + Sync
    + 'static
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    fn f64(self) -> f64;
    fn of(v: f64) -> Self;
    fn exp(self) -> Self;
}

/// `e^x` in f32 without a libm call, so that the element loops around it vectorise: the Cephes
/// `expf` scheme, `e^x = 2^k e^r` with `k = round(x / ln 2)` (by adding and subtracting
/// `1.5 2^23`), `r = x - k ln 2` in two parts and a degree-6 polynomial for `e^r`. `x` is
/// clamped to `[-87.3, 88.3]` (normal results; `e^x` of anything below is at most 1.2e-38,
/// above at least 2.2e38); NaN stays NaN. Relative error within a few ulp of the exact value
/// (tested against f64 `exp`).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    // `kr = ROUND + k` exactly (spacing 1 in [2^23, 2^24)), so its bits are ROUND's plus `k`.
    let kr = x * std::f32::consts::LOG2_E + ROUND;
    let k = kr - ROUND;
    let r = (x - k * 0.693_359_4) + k * 2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    // 2^k from `k + 127` in the exponent field, by integer arithmetic on the bits (no float to
    // integer conversion, so loops over this function vectorise).
    let biased = kr
        .to_bits()
        .wrapping_add(127u32.wrapping_sub(ROUND.to_bits()));
    e * f32::from_bits(biased << 23)
}

macro_rules! float {
    ($t:ty, $exp:expr) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn of(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
        }
    };
}
float!(f32, exp_f32);
float!(f64, f64::exp);

/// `a sigmoid(a)`.
#[inline(always)]
fn silu<T: Float>(a: T) -> T {
    a / (T::ONE + (-a).exp())
}

/// `d/da a sigmoid(a) = s (1 + a (1 - s))`, `s = sigmoid(a)`.
#[inline(always)]
fn silu_slope<T: Float>(a: T) -> T {
    let s = T::ONE / (T::ONE + (-a).exp());
    s * (T::ONE + a * (T::ONE - s))
}

#[inline(always)]
fn leaky<T: Float>(a: T, k: T) -> T {
    if a > T::ZERO {
        a
    } else {
        k * a
    }
}

#[inline(always)]
fn leaky_slope<T: Float>(a: T, k: T) -> T {
    if a > T::ZERO {
        T::ONE
    } else {
        k
    }
}

/// Runs `$body` with `$f` bound to the activation and `$df` to its derivative (closures over
/// `T`), one copy of the body per activation so the choice is made outside the element loops.
macro_rules! with_act {
    ($act:expr, $t:ty, |$f:ident, $df:ident| $body:block) => {
        match $act {
            NormAct::Identity => {
                let $f = |a: $t| a;
                let $df = |_: $t| <$t as Float>::ONE;
                $body
            }
            NormAct::Silu => {
                let $f = silu::<$t>;
                let $df = silu_slope::<$t>;
                $body
            }
            NormAct::LeakyRelu(k) => {
                let k = <$t as Float>::of(k);
                let $f = move |a: $t| leaky(a, k);
                let $df = move |a: $t| leaky_slope(a, k);
                $body
            }
        }
    };
}

/// `(op, operands)` for [`fastconv::dispatch`] after checking that each operand has its `len`
/// values.
fn check_lens<'a, const N: usize>(
    op: &'static str,
    operands: [(&'a CpuStorage, &'a Layout, usize); N],
) -> Result<[(&'a CpuStorage, &'a Layout); N]> {
    for (_, l, len) in operands {
        if l.shape().elem_count() != len {
            candle_core::bail!("{op}: operand of shape {:?} is not {len} long", l.dims());
        }
    }
    Ok(operands.map(|(s, l, _)| (s, l)))
}

/// The output and every group's `(mu, rstd)` (sample-major), which the backward reuses.
fn forward<T: Float>(g: &Geom, x: &[T], p: &[T]) -> (Vec<T>, Vec<(f64, f64)>) {
    let (cg, hw) = (g.cg(), g.hw);
    // Written, not zeroed first: the groups' chunks cover `y`, and `forward_group` writes each
    // of its values once.
    let mut y = Vec::with_capacity(g.x_len());
    let stats: Vec<(f64, f64)> = y.spare_capacity_mut()[..g.x_len()]
        .par_chunks_mut(cg * hw)
        .enumerate()
        .map(|(k, yg)| forward_group(g, k, x, p, yg))
        .collect();
    // SAFETY: every one of the `x_len` values was written above.
    unsafe { y.set_len(g.x_len()) };
    (y, stats)
}

/// One group `k` (sample-major) of [`forward`]: its output `yg` and its `(mu, rstd)`. Compiled
/// for AVX-512 and AVX2 as well and chosen at run time (the same operations in the same order
/// on every target, so the same values).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn forward_group<T: Float>(
    g: &Geom,
    k: usize,
    x: &[T],
    p: &[T],
    yg: &mut [MaybeUninit<T>],
) -> (f64, f64) {
    let (cg, hw) = (g.cg(), g.hw);
    let (n, grp) = (k / g.groups, k % g.groups);
    let xg = &x[k * cg * hw..][..cg * hw];
    let (shift, gamma, beta) = g.params(p, n, grp);
    let (mu, rstd) = g.stats(xg, shift);
    with_act!(g.act, T, |act, _slope| {
        for (ci, (yc, xc)) in yg.chunks_mut(hw).zip(xg.chunks(hw)).enumerate() {
            // a = gamma (x + shift - mu) rstd + beta = x scale + offset.
            let scale = gamma[ci].f64() * rstd;
            let offset = beta[ci].f64() + (shift[ci].f64() - mu) * scale;
            let (scale, offset) = (T::of(scale), T::of(offset));
            for (yv, &xv) in yc.iter_mut().zip(xc) {
                yv.write(act(xv * scale + offset));
            }
        }
    });
    (mu, rstd)
}

/// `[dx (N C H W) | dshift (N C) | dgamma (C) | dbeta (C)]`.
/// `stats`: the forward's `(mu, rstd)` per group, recomputed (the same values) when absent.
fn backward<T: Float>(
    g: &Geom,
    x: &[T],
    p: &[T],
    dy: &[T],
    stats: Option<&[(f64, f64)]>,
) -> Vec<T> {
    let (cg, hw, len) = (g.cg(), g.hw, g.x_len());
    // Written, not zeroed first: the groups write all of `dx`, and `dp` is written below.
    let mut out = Vec::with_capacity(len + g.p_len());
    let (dx, dp) = out.spare_capacity_mut()[..len + g.p_len()].split_at_mut(len);
    // Per group: (dshift, partial dgamma, partial dbeta) of its channels.
    let per_group: Vec<Vec<[f64; 3]>> = dx
        .par_chunks_mut(cg * hw)
        .enumerate()
        .map(|(k, dxg)| backward_group(g, k, [x, p, dy], stats, dxg))
        .collect();
    let (nc, c) = (g.n * g.c, g.c);
    let mut dgamma = vec![0.0f64; c];
    let mut dbeta = vec![0.0f64; c];
    for (k, chan) in per_group.iter().enumerate() {
        let (n, grp) = (k / g.groups, k % g.groups);
        for (ci, [ds, dgm, dbt]) in chan.iter().enumerate() {
            let ch = grp * cg + ci;
            dp[n * c + ch].write(T::of(*ds));
            dgamma[ch] += dgm;
            dbeta[ch] += dbt;
        }
    }
    for ch in 0..c {
        dp[nc + ch].write(T::of(dgamma[ch]));
        dp[nc + c + ch].write(T::of(dbeta[ch]));
    }
    // SAFETY: `dx` by every group; `dp` (`p_len = N C + 2 C`): `dshift[n, ch]` for every
    // sample and channel (each group's `cg` channels), then `dgamma` and `dbeta`.
    unsafe { out.set_len(len + g.p_len()) };
    out
}

/// One group `k` of [`backward`]: its `dx` into `dxg` and `(dshift, partial dgamma, partial
/// dbeta)` of each of its channels. Compiled per target as [`forward_group`].
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn backward_group<T: Float>(
    g: &Geom,
    k: usize,
    [x, p, dy]: [&[T]; 3],
    stats: Option<&[(f64, f64)]>,
    dxg: &mut [MaybeUninit<T>],
) -> Vec<[f64; 3]> {
    let (cg, hw) = (g.cg(), g.hw);
    let m = (cg * hw) as f64;
    let (n, grp) = (k / g.groups, k % g.groups);
    let xg = &x[k * cg * hw..][..cg * hw];
    let dyg = &dy[k * cg * hw..][..cg * hw];
    let (shift, gamma, beta) = g.params(p, n, grp);
    let (mu, rstd) = stats.map_or_else(|| g.stats(xg, shift), |s| s[k]);
    let mut chan = vec![[0.0f64; 3]; cg];
    let (mut s1, mut s2) = (0.0, 0.0);
    // Pass 1: dzhat = da gamma into dx, the channel sums and the group means.
    with_act!(g.act, T, |_act, slope| {
        for ci in 0..cg {
            let gm = gamma[ci].f64();
            // zhat = x rstd + zoff, a = gamma zhat + beta = x scale + offset.
            let zoff = (shift[ci].f64() - mu) * rstd;
            let (scale, offset) = (gm * rstd, gm * zoff + beta[ci].f64());
            let (r, zo, sc, of, gmt) = (
                T::of(rstd),
                T::of(zoff),
                T::of(scale),
                T::of(offset),
                T::of(gm),
            );
            let rg = ci * hw..(ci + 1) * hw;
            let (d, xc) = (&mut dxg[rg.clone()], &xg[rg.clone()]);
            // da first (no sums in this loop, so it vectorises), then the sums.
            for ((d, &xv), &dyv) in d.iter_mut().zip(xc).zip(&dyg[rg]) {
                d.write(dyv * slope(xv * sc + of));
            }
            // SAFETY: every value of `d` was written just above.
            let d = unsafe { &mut *(d as *mut [MaybeUninit<T>] as *mut [T]) };
            let [sda, sdaz] = lane_sums(d, xc, |da, xv| [da, da * (xv * r + zo)]);
            for d in d.iter_mut() {
                *d = *d * gmt;
            }
            chan[ci][1] = sdaz;
            chan[ci][2] = sda;
            s1 += sda * gm;
            s2 += sdaz * gm;
        }
    });
    // SAFETY: pass 1 wrote every channel's `hw` values, all of `dxg`.
    let dxg = unsafe { &mut *(dxg as *mut [MaybeUninit<T>] as *mut [T]) };
    let (mean1, mean2) = (s1 / m, s2 / m);
    // Pass 2: dz = rstd (dzhat - mean1 - zhat mean2) = dzhat A + x B + C with
    // zhat = x rstd + zoff; dshift = its channel sums.
    for ci in 0..cg {
        let zoff = (shift[ci].f64() - mu) * rstd;
        let (a, b, c) = (
            T::of(rstd),
            T::of(-rstd * rstd * mean2),
            T::of(-rstd * (mean1 + zoff * mean2)),
        );
        let rg = ci * hw..(ci + 1) * hw;
        let d = &mut dxg[rg.clone()];
        for (d, &xv) in d.iter_mut().zip(&xg[rg]) {
            *d = *d * a + xv * b + c;
        }
        chan[ci][0] = lane_sums(d, d, |dz, _| [dz])[0];
    }
    chan
}

/// `(x, p) -> y`, `p = [shift | gamma | beta]`; backward by [`GroupNormActBwd`], which
/// reuses the group statistics the forward kept.
struct GroupNormActOp {
    geom: Geom,
    stats: Mutex<Option<GroupStats>>,
}

/// `(mu, rstd)` of every (sample, group), sample-major.
type GroupStats = Arc<Vec<(f64, f64)>>;
/// `(x, p, dy) -> [dx | dp]`.
struct GroupNormActBwd(Geom, Option<GroupStats>);

impl<T: Float> CpuKernel<T, 2> for GroupNormActOp {
    fn run(&self, [x, p]: [&[T]; 2]) -> Vec<T> {
        let (y, stats) = forward(&self.geom, x, p);
        if let Ok(mut kept) = self.stats.lock() {
            *kept = Some(Arc::new(stats));
        }
        y
    }
}

impl<T: Float> CpuKernel<T, 3> for GroupNormActBwd {
    fn run(&self, [x, p, dy]: [&[T]; 3]) -> Vec<T> {
        backward(&self.0, x, p, dy, self.1.as_deref().map(Vec::as_slice))
    }
}

impl CustomOp2 for GroupNormActOp {
    fn name(&self) -> &'static str {
        "group-norm-act"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let op = self.name();
        let operands = check_lens(op, [(s1, l1, g.x_len()), (s2, l2, g.p_len())])?;
        Ok((fastconv::dispatch(op, self, operands)?, l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = &self.geom;
        let stats = self.stats.lock().ok().and_then(|s| s.clone());
        let packed = x.apply_op3_no_bwd(p, &dy.contiguous()?, &GroupNormActBwd(*g, stats))?;
        let dx = packed.narrow(0, 0, g.x_len())?.reshape(x.shape())?;
        let dp = packed.narrow(0, g.x_len(), g.p_len())?;
        Ok((Some(dx), Some(dp)))
    }
}

impl CustomOp3 for GroupNormActBwd {
    fn name(&self) -> &'static str {
        "group-norm-act-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let (xl, pl, op) = (g.x_len(), g.p_len(), self.name());
        let operands = check_lens(op, [(s1, l1, xl), (s2, l2, pl), (s3, l3, xl)])?;
        Ok((
            fastconv::dispatch(op, self, operands)?,
            Shape::from(xl + pl),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::exp_f32;
    use proptest::prelude::*;

    /// Relative error of [`exp_f32`] against f64 `exp` of the same f32 argument.
    fn rel_err(x: f32) -> f64 {
        let exact = (x as f64).exp();
        (exp_f32(x) as f64 - exact).abs() / exact
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Within 3e-7 (a few f32 ulp) of the exact value over the unclamped range.
        #[test]
        fn exp_f32_matches_f64_exp(x in -87.3f32..88.3) {
            prop_assert!(rel_err(x) < 3e-7, "exp({x}): {} vs {}, rel. error {}", exp_f32(x), (x as f64).exp(), rel_err(x));
        }
    }

    #[test]
    fn exp_f32_edges() {
        // Every 1/64 step over [-87, 88] (k = round(x / ln 2) crosses every integer), the
        // rounding boundaries and the clamped tails.
        let worst = (-87 * 64..=88 * 64)
            .map(|i| rel_err(i as f32 / 64.0))
            .fold(0.0f64, f64::max);
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(-1000.0) > 0.0 && exp_f32(-1000.0) < 1.3e-38);
        assert!(exp_f32(1000.0).is_finite() && exp_f32(1000.0) > 2.0e38);
        assert!(exp_f32(f32::NEG_INFINITY) >= 0.0 && exp_f32(f32::INFINITY).is_finite());
    }
}
