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
//! for the statistics); the backward recomputes the statistics and needs two more. Other devices
//! and dtypes run candle's composition of the same formulas ([`composed`]).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use fastconv::CpuKernel;
use rayon::prelude::*;

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
    /// `act(a)` (the sigmoid in the precision of `T`).
    fn value<T: Float>(self, a: f64) -> f64 {
        match self {
            NormAct::Identity => a,
            NormAct::Silu => a * T::sigmoid(a),
            NormAct::LeakyRelu(k) => {
                if a > 0.0 {
                    a
                } else {
                    k * a
                }
            }
        }
    }

    /// `act'(a)`: SiLU `s (1 + a (1 - s))` with `s = sigmoid(a)` (in the precision of `T`).
    fn slope<T: Float>(self, a: f64) -> f64 {
        match self {
            NormAct::Identity => 1.0,
            NormAct::Silu => {
                let s = T::sigmoid(a);
                s * (1.0 + a * (1.0 - s))
            }
            NormAct::LeakyRelu(k) => {
                if a > 0.0 {
                    1.0
                } else {
                    k
                }
            }
        }
    }

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
    x.contiguous()?.apply_op2(&p, GroupNormActOp(geom))
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
    /// Mean and `1 / sqrt(var + eps)` of `z = x + shift` over one group (`x` its `cg hw` values).
    fn stats<T: Float>(&self, x: &[T], shift: &[T]) -> (f64, f64) {
        let m = (self.cg() * self.hw) as f64;
        let mut sum = 0.0;
        for (xc, s) in x.chunks(self.hw).zip(shift) {
            let s = s.f64();
            sum += xc.iter().map(|v| v.f64() + s).sum::<f64>();
        }
        let mu = sum / m;
        let mut ss = 0.0;
        for (xc, s) in x.chunks(self.hw).zip(shift) {
            let s = s.f64() - mu;
            ss += xc.iter().map(|v| (v.f64() + s).powi(2)).sum::<f64>();
        }
        (mu, 1.0 / (ss / m + self.eps).sqrt())
    }
}

/// f32 / f64; sums and the normalisation are computed in f64, the sigmoid in `Self`'s precision
/// (`exp` in f64 was a sixth of the f32 op's time).
trait Float: Copy + Send + Sync + 'static {
    fn f64(self) -> f64;
    fn of(v: f64) -> Self;
    /// `1 / (1 + exp(-a))` evaluated in `Self`.
    fn sigmoid(a: f64) -> f64;
}

macro_rules! float {
    ($t:ty) => {
        impl Float for $t {
            fn f64(self) -> f64 {
                self as f64
            }
            fn of(v: f64) -> Self {
                v as $t
            }
            fn sigmoid(a: f64) -> f64 {
                (1.0 / (1.0 + (-(a as $t)).exp())) as f64
            }
        }
    };
}
float!(f32);
float!(f64);

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

fn forward<T: Float>(g: &Geom, x: &[T], p: &[T]) -> Vec<T> {
    let (cg, hw) = (g.cg(), g.hw);
    let mut y = vec![T::of(0.0); g.x_len()];
    y.par_chunks_mut(cg * hw).enumerate().for_each(|(k, yg)| {
        let (n, grp) = (k / g.groups, k % g.groups);
        let xg = &x[k * cg * hw..][..cg * hw];
        let (shift, gamma, beta) = g.params(p, n, grp);
        let (mu, rstd) = g.stats(xg, shift);
        for (ci, (yc, xc)) in yg.chunks_mut(hw).zip(xg.chunks(hw)).enumerate() {
            let scale = gamma[ci].f64() * rstd;
            let offset = beta[ci].f64() + (shift[ci].f64() - mu) * scale;
            for (yv, xv) in yc.iter_mut().zip(xc) {
                *yv = T::of(g.act.value::<T>(xv.f64() * scale + offset));
            }
        }
    });
    y
}

/// `[dx (N C H W) | dshift (N C) | dgamma (C) | dbeta (C)]`.
fn backward<T: Float>(g: &Geom, x: &[T], p: &[T], dy: &[T]) -> Vec<T> {
    let (cg, hw, len) = (g.cg(), g.hw, g.x_len());
    let m = (cg * hw) as f64;
    let mut out = vec![T::of(0.0); len + g.p_len()];
    let (dx, dp) = out.split_at_mut(len);
    // Per group: (dshift, partial dgamma, partial dbeta) of its channels.
    let per_group: Vec<Vec<[f64; 3]>> = dx
        .par_chunks_mut(cg * hw)
        .enumerate()
        .map(|(k, dxg)| {
            let (n, grp) = (k / g.groups, k % g.groups);
            let xg = &x[k * cg * hw..][..cg * hw];
            let dyg = &dy[k * cg * hw..][..cg * hw];
            let (shift, gamma, beta) = g.params(p, n, grp);
            let (mu, rstd) = g.stats(xg, shift);
            let mut chan = vec![[0.0f64; 3]; cg];
            let (mut s1, mut s2) = (0.0, 0.0);
            // Pass 1: dzhat = da gamma into dx, the channel sums and the group means.
            for ci in 0..cg {
                let (gm, bt, sh) = (gamma[ci].f64(), beta[ci].f64(), shift[ci].f64() - mu);
                let (mut sda, mut sdaz) = (0.0, 0.0);
                let r = ci * hw..(ci + 1) * hw;
                for ((d, xv), dyv) in dxg[r.clone()].iter_mut().zip(&xg[r.clone()]).zip(&dyg[r]) {
                    let zhat = (xv.f64() + sh) * rstd;
                    let da = dyv.f64() * g.act.slope::<T>(gm * zhat + bt);
                    sda += da;
                    sdaz += da * zhat;
                    *d = T::of(da * gm);
                }
                chan[ci][1] = sdaz;
                chan[ci][2] = sda;
                s1 += sda * gm;
                s2 += sdaz * gm;
            }
            let (mean1, mean2) = (s1 / m, s2 / m);
            // Pass 2: dz = rstd (dzhat - mean1 - zhat mean2), and dshift = its channel sums.
            for ci in 0..cg {
                let sh = shift[ci].f64() - mu;
                let r = ci * hw..(ci + 1) * hw;
                let mut sdz = 0.0;
                for (d, xv) in dxg[r.clone()].iter_mut().zip(&xg[r]) {
                    let zhat = (xv.f64() + sh) * rstd;
                    let dz = rstd * (d.f64() - mean1 - zhat * mean2);
                    sdz += dz;
                    *d = T::of(dz);
                }
                chan[ci][0] = sdz;
            }
            chan
        })
        .collect();
    let (nc, c) = (g.n * g.c, g.c);
    let mut dgamma = vec![0.0f64; c];
    let mut dbeta = vec![0.0f64; c];
    for (k, chan) in per_group.iter().enumerate() {
        let (n, grp) = (k / g.groups, k % g.groups);
        for (ci, [ds, dgm, dbt]) in chan.iter().enumerate() {
            let ch = grp * cg + ci;
            dp[n * c + ch] = T::of(*ds);
            dgamma[ch] += dgm;
            dbeta[ch] += dbt;
        }
    }
    for ch in 0..c {
        dp[nc + ch] = T::of(dgamma[ch]);
        dp[nc + c + ch] = T::of(dbeta[ch]);
    }
    out
}

/// `(x, p) -> y`, `p = [shift | gamma | beta]`; backward by [`GroupNormActBwd`].
struct GroupNormActOp(Geom);
/// `(x, p, dy) -> [dx | dp]`.
struct GroupNormActBwd(Geom);

impl<T: Float> CpuKernel<T, 2> for GroupNormActOp {
    fn run(&self, [x, p]: [&[T]; 2]) -> Vec<T> {
        forward(&self.0, x, p)
    }
}

impl<T: Float> CpuKernel<T, 3> for GroupNormActBwd {
    fn run(&self, [x, p, dy]: [&[T]; 3]) -> Vec<T> {
        backward(&self.0, x, p, dy)
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
        let g = &self.0;
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
        let g = &self.0;
        let packed = x.apply_op3_no_bwd(p, &dy.contiguous()?, &GroupNormActBwd(*g))?;
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
