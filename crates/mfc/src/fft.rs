//! Backend (a): the real 2-D FFT on the CPU (realfft + rustfft) as candle custom ops with exact
//! backward passes.
//!
//! Conventions (shared with [`crate::dft_matmul`]), for a real `x` of shape `[.., H, W]` and the
//! half spectrum `Z` of shape `[.., H, W/2+1]` (columns `m_x = 0 ..= W/2`, rows in FFT order):
//! - `rfft2`: `Z[m_y, m_x] = sum_{y,x} x[y, x] e^{-2 pi i (m_y y / H + m_x x / W)}` (unnormalised).
//! - `irfft2`: inverse complex FFT along H (factor `1/H`), then the complex-to-real inverse along W
//!   (factor `1/W`) that reads only the real part of columns `0` and `W/2` (even W). For the
//!   half spectrum of a real image this is the exact inverse of `rfft2`.
//! - Adjoints (SPEC section 2): with the Hermitian half-spectrum weights `w_m = 1` for `m_x = 0`
//!   and the Nyquist column `m_x = W/2` (even W), `w_m = 2` otherwise,
//!   `rfft2^T G = H W irfft2(G / w)` and `irfft2^T g = w rfft2(g) / (H W)`.
//!
//! All four maps (`rfft2`, `irfft2` and the two adjoints) are one op, `Transform`, over one pair of
//! kernels with the weights and `1/(HW)` folded into a per-column scale; each map's backward pass
//! is its adjoint map. Spectra are packed: re and im stacked on a new leading axis,
//! `[2, .., H, W/2+1]` ([`rfft2_packed`], [`irfft2_packed`]); [`rfft2`] splits that into a
//! [`Spectrum`] of two views (no copy).

use crate::backend::Spectrum;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use fastconv::{dispatch, CpuKernel};
use realfft::{num_complex::Complex, ComplexToReal, FftNum, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
use std::sync::{Arc, Mutex, OnceLock};

/// Real 2-D FFT of the last two axes on the CPU: `[.., H, W] -> Spectrum [.., H, W/2+1]`
/// (unnormalised, see the module docs), differentiable.
pub fn rfft2(x: &Tensor) -> candle_core::Result<Spectrum> {
    Spectrum::from_packed(&rfft2_packed(x)?)
}

/// [`rfft2`] with re and im stacked on a new leading axis, `[2, .., H, W/2+1]`.
pub fn rfft2_packed(x: &Tensor) -> candle_core::Result<Tensor> {
    let width = x.dim(candle_core::D::Minus1)?;
    x.contiguous()?.apply_op1(Transform {
        kind: Kind::Rfft2,
        width,
    })
}

/// Inverse of [`rfft2`] to real images of width `width` (`z.re.dim(-1)` must be `width/2+1`):
/// `[.., H, W/2+1] -> [.., H, width]`, normalised by `1/(H W)`, differentiable.
pub fn irfft2(z: &Spectrum, width: usize) -> candle_core::Result<Tensor> {
    let (re, im) = (z.re.contiguous()?, z.im.contiguous()?);
    re.apply_op2(&im, Irfft2 { width })
}

/// [`irfft2`] of a packed spectrum `[2, .., H, W/2+1]` (re stacked on im), differentiable.
pub fn irfft2_packed(z: &Tensor, width: usize) -> candle_core::Result<Tensor> {
    z.contiguous()?.apply_op1(Transform {
        kind: Kind::Irfft2,
        width,
    })
}

/// `irfft2` of `p` packed half-spectrum planes `[2, p, h, w/2+1]` to `[p, h, w]`, for fused ops.
pub(crate) fn irfft2_planes<T: Float>(packed: &[T], p: usize, h: usize, w: usize) -> Vec<T> {
    let (re, im) = packed.split_at(p * h * (w / 2 + 1));
    irfft2_cpu(re, im, p, h, w, &Kind::Irfft2.column_scales(h, w))
}

/// `irfft2^T g = w rfft2(g) / (H W)` as a packed spectrum, outside autograd (for the backward
/// passes of fused ops).
pub(crate) fn irfft2_adjoint(g: &Tensor, width: usize) -> candle_core::Result<Tensor> {
    g.contiguous()?.apply_op1_no_bwd(&Transform {
        kind: Kind::Irfft2T,
        width,
    })
}

/// Hermitian half-spectrum weight `w_m` of column `m` (1 on columns 0 and W/2 for even W, else 2).
fn half_weight(m: usize, width: usize) -> f64 {
    if m == 0 || 2 * m == width {
        1.0
    } else {
        2.0
    }
}

/// The four real-FFT maps, each the adjoint of another (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `x -> rfft2(x)`.
    Rfft2,
    /// `g -> irfft2^T g = w rfft2(g) / (H W)`.
    Irfft2T,
    /// `Z -> irfft2(Z)`.
    Irfft2,
    /// `G -> rfft2^T G = H W irfft2(G / w)`.
    Rfft2T,
}

impl Kind {
    fn adjoint(self) -> Self {
        match self {
            Self::Rfft2 => Self::Rfft2T,
            Self::Rfft2T => Self::Rfft2,
            Self::Irfft2 => Self::Irfft2T,
            Self::Irfft2T => Self::Irfft2,
        }
    }

    /// Real image to half spectrum (else half spectrum to real image).
    fn to_spectrum(self) -> bool {
        matches!(self, Self::Rfft2 | Self::Irfft2T)
    }

    /// Factor applied to spectrum column `m` (after the forward transform, or before the
    /// unnormalised inverse one) so that each kind is one pass of the plain kernels.
    fn column_scales<T: Float>(self, h: usize, w: usize) -> Vec<T> {
        let hw = (h * w) as f64;
        (0..w / 2 + 1)
            .map(|m| {
                let s = match self {
                    Self::Rfft2 => 1.0,
                    Self::Irfft2T => half_weight(m, w) / hw,
                    Self::Irfft2 => 1.0 / hw,
                    Self::Rfft2T => 1.0 / half_weight(m, w),
                };
                T::from_f64(s).expect("a float converts to the float type")
            })
            .collect()
    }
}

/// One real-FFT map on packed tensors: real `[.., H, W]` <-> packed half spectrum
/// `[2, .., H, W/2+1]`.
struct Transform {
    kind: Kind,
    width: usize,
}

/// The [`Kind::Irfft2`] map on two separate tensors (re, im), for [`irfft2`].
struct Irfft2 {
    width: usize,
}

/// Shape helpers: `(planes, h, w)` of a `[.., H, W]` shape.
fn planes_hw(dims: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
    if dims.len() < 2 {
        candle_core::bail!("mfc fft: need at least 2 dims, got {dims:?}");
    }
    let (h, w) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    if h == 0 || w == 0 {
        candle_core::bail!("mfc fft: empty spatial dims {dims:?}");
    }
    Ok((dims[..dims.len() - 2].iter().product(), h, w))
}

/// `(lead dims, planes, h, half width)` of a packed spectrum shape `[2, .., H, Wh]`.
pub(crate) fn packed_dims(
    dims: &[usize],
) -> candle_core::Result<(Vec<usize>, usize, usize, usize)> {
    if dims.len() < 3 || dims[0] != 2 {
        candle_core::bail!("mfc: packed spectrum must be [2, .., H, W/2+1], got {dims:?}");
    }
    let (p, h, wh) = planes_hw(&dims[1..])?;
    Ok((dims[1..dims.len() - 2].to_vec(), p, h, wh))
}

/// One [`Kind`] on `p` planes of `h` rows, real width `w`: the kernel of [`Transform`] (one
/// operand, a packed spectrum when the input is one) and of [`Irfft2`] (two operands, re and im).
struct Planes {
    kind: Kind,
    p: usize,
    h: usize,
    w: usize,
}

impl<T: Float> CpuKernel<T, 1> for Planes {
    fn run(&self, [v]: [&[T]; 1]) -> Vec<T> {
        let Planes { kind, p, h, w } = *self;
        let scales = kind.column_scales(h, w);
        if kind.to_spectrum() {
            rfft2_cpu(v, p, h, w, &scales)
        } else {
            let (re, im) = v.split_at(p * h * (w / 2 + 1));
            irfft2_cpu(re, im, p, h, w, &scales)
        }
    }
}

impl<T: Float> CpuKernel<T, 2> for Planes {
    fn run(&self, [re, im]: [&[T]; 2]) -> Vec<T> {
        let Planes { kind, p, h, w } = *self;
        irfft2_cpu(re, im, p, h, w, &kind.column_scales(h, w))
    }
}

impl Transform {
    /// The kernel and the output shape for an input of shape `dims`, checked.
    fn planes(&self, dims: &[usize]) -> candle_core::Result<(Planes, Shape)> {
        let (kind, w) = (self.kind, self.width);
        if kind.to_spectrum() {
            let (p, h, wx) = planes_hw(dims)?;
            if wx != w {
                candle_core::bail!("mfc fft: width {w} does not match input {dims:?}");
            }
            let mut out_dims = vec![2];
            out_dims.extend_from_slice(&dims[..dims.len() - 1]);
            out_dims.push(w / 2 + 1);
            Ok((Planes { kind, p, h, w }, Shape::from(out_dims)))
        } else {
            let (mut lead, p, h, wh) = packed_dims(dims)?;
            if w == 0 || w / 2 + 1 != wh {
                candle_core::bail!(
                    "mfc irfft2: width {w} does not match {wh} half-spectrum columns"
                );
            }
            lead.extend([h, w]);
            Ok((Planes { kind, p, h, w }, Shape::from(lead)))
        }
    }
}

impl CustomOp1 for Transform {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Rfft2 => "mfc-rfft2",
            Kind::Irfft2T => "mfc-irfft2-adjoint",
            Kind::Irfft2 => "mfc-irfft2",
            Kind::Rfft2T => "mfc-rfft2-adjoint",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (planes, shape) = self.planes(l.shape().dims())?;
        Ok((dispatch(self.name(), &planes, [(s, l)])?, shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let adjoint = Transform {
            kind: self.kind.adjoint(),
            width: self.width,
        };
        Ok(Some(grad.contiguous()?.apply_op1(adjoint)?))
    }
}

impl CustomOp2 for Irfft2 {
    fn name(&self) -> &'static str {
        "mfc-irfft2"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims();
        if dims != l2.shape().dims() {
            candle_core::bail!(
                "mfc irfft2: re {dims:?} and im {:?} differ",
                l2.shape().dims()
            );
        }
        let (p, h, wh) = planes_hw(dims)?;
        let w = self.width;
        if w == 0 || w / 2 + 1 != wh {
            candle_core::bail!("mfc irfft2: width {w} does not match {wh} half-spectrum columns");
        }
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 2") = w;
        let planes = Planes {
            kind: Kind::Irfft2,
            p,
            h,
            w,
        };
        let out = dispatch(self.name(), &planes, [(s1, l1), (s2, l2)])?;
        Ok((out, Shape::from(out_dims)))
    }

    fn bwd(
        &self,
        _re: &Tensor,
        _im: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?.apply_op1(Transform {
            kind: Kind::Irfft2T,
            width: self.width,
        })?;
        Ok((Some(g.get(0)?), Some(g.get(1)?)))
    }
}

/// Floating types with a process-wide cache of FFT plans.
pub(crate) trait Float: FftNum + realfft::num_traits::Float {
    fn planners() -> &'static Mutex<Planners<Self>>;
}

pub(crate) struct Planners<T: FftNum> {
    real: RealFftPlanner<T>,
    complex: FftPlanner<T>,
}

impl<T: FftNum> Planners<T> {
    fn new() -> Self {
        Self {
            real: RealFftPlanner::new(),
            complex: FftPlanner::new(),
        }
    }
}

impl Float for f32 {
    fn planners() -> &'static Mutex<Planners<f32>> {
        static P: OnceLock<Mutex<Planners<f32>>> = OnceLock::new();
        P.get_or_init(|| Mutex::new(Planners::new()))
    }
}

impl Float for f64 {
    fn planners() -> &'static Mutex<Planners<f64>> {
        static P: OnceLock<Mutex<Planners<f64>>> = OnceLock::new();
        P.get_or_init(|| Mutex::new(Planners::new()))
    }
}

/// The four plans an `H x W` transform needs.
struct Plans<T: FftNum> {
    r2c: Arc<dyn RealToComplex<T>>,
    c2r: Arc<dyn ComplexToReal<T>>,
    fwd_h: Arc<dyn Fft<T>>,
    inv_h: Arc<dyn Fft<T>>,
}

impl<T: Float> Plans<T> {
    fn new(h: usize, w: usize) -> Self {
        // A poisoned lock only means another thread panicked while planning; the planner's
        // cache is still usable.
        let mut p = T::planners().lock().unwrap_or_else(|e| e.into_inner());
        Self {
            r2c: p.real.plan_fft_forward(w),
            c2r: p.real.plan_fft_inverse(w),
            fwd_h: p.complex.plan_fft_forward(h),
            inv_h: p.complex.plan_fft_inverse(h),
        }
    }
}

/// Number of worker threads for `planes` planes of `plane_len` values.
fn workers(planes: usize, plane_len: usize) -> usize {
    if planes * plane_len < 1 << 14 {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(planes)
        .max(1)
}

/// Planes per worker when `planes` planes of `plane_len` values are split into contiguous
/// chunks, one per worker (at least 1).
pub(crate) fn planes_per_worker(planes: usize, plane_len: usize) -> usize {
    planes.div_ceil(workers(planes, plane_len)).max(1)
}

/// Run `f(i, job)` for the `i`-th of `jobs`, the jobs side by side on the current rayon pool (a
/// single job on the caller's thread). Jobs own disjoint parts of the output (chunks of `&mut`
/// slices), so the workers need no shared mutable state. On the pool, not on threads of their
/// own: those would compete for the cores with a training loop's spinning workers
/// (`train::threads::warm`; `reproduce blur --quick` took 8.7-9.9 s that way against 7.0 s).
pub(crate) fn run_jobs<J: Send, F: Fn(usize, J) + Sync>(jobs: impl IntoIterator<Item = J>, f: F) {
    use rayon::prelude::*;
    let mut jobs: Vec<J> = jobs.into_iter().collect();
    if jobs.len() <= 1 {
        if let Some(job) = jobs.pop() {
            f(0, job);
        }
        return;
    }
    jobs.into_par_iter()
        .enumerate()
        .for_each(|(i, job)| f(i, job));
}

/// `rfft2` of `p` planes `[h, w]`, column `m` of the result times `scales[m]`; output re planes
/// then im planes, each `[h, w/2+1]`.
fn rfft2_cpu<T: Float>(x: &[T], p: usize, h: usize, w: usize, scales: &[T]) -> Vec<T> {
    let wh = w / 2 + 1;
    let plans = Plans::<T>::new(h, w);
    let mut out = vec![T::zero(); 2 * p * h * wh];
    let per = planes_per_worker(p, h * w);
    let (out_re, out_im) = out.split_at_mut(p * h * wh);
    let jobs = out_re
        .chunks_mut(per * h * wh)
        .zip(out_im.chunks_mut(per * h * wh));
    run_jobs(jobs, |i, (re_chunk, im_chunk)| {
        let mut row = vec![T::zero(); w];
        let mut cols = vec![Complex::new(T::zero(), T::zero()); wh * h];
        let mut spec = vec![Complex::new(T::zero(), T::zero()); wh];
        let mut s_r = plans.r2c.make_scratch_vec();
        let mut s_c =
            vec![Complex::new(T::zero(), T::zero()); plans.fwd_h.get_inplace_scratch_len()];
        let planes = re_chunk
            .chunks_exact_mut(h * wh)
            .zip(im_chunk.chunks_exact_mut(h * wh));
        for (k, (re, im)) in planes.enumerate() {
            let plane = i * per + k;
            let xp = &x[plane * h * w..(plane + 1) * h * w];
            for y in 0..h {
                row.copy_from_slice(&xp[y * w..(y + 1) * w]);
                // Lengths match the plan by construction, so the call cannot fail.
                let _ = plans
                    .r2c
                    .process_with_scratch(&mut row, &mut spec, &mut s_r);
                for (m, c) in spec.iter().enumerate() {
                    cols[m * h + y] = *c;
                }
            }
            plans.fwd_h.process_with_scratch(&mut cols, &mut s_c);
            for (m, &sc) in scales.iter().enumerate() {
                for y in 0..h {
                    let c = cols[m * h + y];
                    re[y * wh + m] = c.re * sc;
                    im[y * wh + m] = c.im * sc;
                }
            }
        }
    });
    out
}

/// Unnormalised inverse of `p` half-spectrum planes `[h, w/2+1]` (re, im), column `m` first
/// multiplied by `scales[m]`, to real planes `[h, w]`.
fn irfft2_cpu<T: Float>(re: &[T], im: &[T], p: usize, h: usize, w: usize, scales: &[T]) -> Vec<T> {
    let wh = w / 2 + 1;
    let plans = Plans::<T>::new(h, w);
    let mut out = vec![T::zero(); p * h * w];
    let per = planes_per_worker(p, h * w);
    run_jobs(out.chunks_mut(per * h * w), |i, chunk| {
        let mut cols = vec![Complex::new(T::zero(), T::zero()); wh * h];
        let mut spec = vec![Complex::new(T::zero(), T::zero()); wh];
        let mut s_r = plans.c2r.make_scratch_vec();
        let mut s_c =
            vec![Complex::new(T::zero(), T::zero()); plans.inv_h.get_inplace_scratch_len()];
        for (k, yp) in chunk.chunks_exact_mut(h * w).enumerate() {
            let plane = i * per + k;
            let (rp, ip) = (
                &re[plane * h * wh..(plane + 1) * h * wh],
                &im[plane * h * wh..(plane + 1) * h * wh],
            );
            for y in 0..h {
                for (m, &sc) in scales.iter().enumerate() {
                    cols[m * h + y] = Complex::new(rp[y * wh + m] * sc, ip[y * wh + m] * sc);
                }
            }
            plans.inv_h.process_with_scratch(&mut cols, &mut s_c);
            for y in 0..h {
                for (m, s) in spec.iter_mut().enumerate() {
                    *s = cols[m * h + y];
                }
                // The complex-to-real inverse reads only the real part of these columns.
                spec[0].im = T::zero();
                if w.is_multiple_of(2) {
                    spec[wh - 1].im = T::zero();
                }
                let row = &mut yp[y * w..(y + 1) * w];
                let _ = plans.c2r.process_with_scratch(&mut spec, row, &mut s_r);
            }
        }
    });
    out
}
