//! Backend (a)'s fused symbol product: `Z_{n,c}(k) -> S_c(k) Z_{n,c}(k)` on a packed half spectrum
//! `[2, N, C, H, W/2+1]`, with the symbol (000 eq. 21; SPEC section 2)
//! `S_c(k) = (alpha_c + i (d_x k_x + d_y k_y)) exp(-(q_xx k_x^2 + q_xy k_x k_y + q_yy k_y^2))`
//! built inside the op from the per-channel coefficients of
//! [`SymbolParams::coefficients`](crate::SymbolParams::coefficients) (`q = t Sigma`, `q_xy = 2 t Sigma_xy`)
//! and the same wavenumbers and Nyquist convention as [`Wavenumbers`](crate::Wavenumbers).
//!
//! One pass over the spectrum per direction instead of a dozen element-wise candle ops. Backward
//! (exact, real chain rule of `(a + ib)(c + id)`), with `G` the gradient of the output:
//! `dZ = conj(S) G`, i.e. `dZ_re = G_re S_re + G_im S_im`, `dZ_im = G_im S_re - G_re S_im`;
//! `dS_re = sum_n G_re Z_re + G_im Z_im`, `dS_im = sum_n G_im Z_re - G_re Z_im`; then with
//! `E = exp(-Q)`, `D = d . k`: `d alpha = sum_k dS_re E`, `d d_x = sum_k dS_im k_x E`,
//! `dQ = -E (alpha dS_re + D dS_im)`, `d q_xx = sum_k dQ k_x^2` (likewise `q_xy`, `q_yy`).
//! Parameter sums are accumulated in f64.

use crate::fft::{irfft2_adjoint, irfft2_planes, packed_dims, planes_per_worker, run_jobs, Float};
use crate::symbol::mode;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use fastconv::{dispatch, CpuKernel};
use std::f64::consts::PI;

/// Number of per-channel coefficients `(alpha, d_x, d_y, q_xx, q_xy, q_yy)`.
const NCOEF: usize = 6;

/// `S_c(k) Z` for a packed half spectrum `z = [2, .., C, H, W/2+1]` (re stacked on im) of real
/// images of width `width` on the periodic domain `extent = (L_x, L_y)`, with `coef [C, 6]` from
/// [`SymbolParams::coefficients`](crate::SymbolParams::coefficients); returns the packed product,
/// differentiable in `z` and `coef`. CPU only, f32 or f64.
pub fn symbol_product(
    z: &Tensor,
    coef: &Tensor,
    width: usize,
    extent: (f64, f64),
) -> candle_core::Result<Tensor> {
    apply(z, coef, width, extent, false)
}

/// `irfft2(S_c(k) Z)` in one op (same arguments as [`symbol_product`]), `[.., C, H, width]`:
/// the MFC's last step without the intermediate spectrum, differentiable in `z` and `coef`.
pub fn symbol_irfft2(
    z: &Tensor,
    coef: &Tensor,
    width: usize,
    extent: (f64, f64),
) -> candle_core::Result<Tensor> {
    apply(z, coef, width, extent, true)
}

fn apply(
    z: &Tensor,
    coef: &Tensor,
    width: usize,
    extent: (f64, f64),
    inverse: bool,
) -> candle_core::Result<Tensor> {
    let (lead, _, h, wh) = packed_dims(z.dims())?;
    let c = coef.dim(0)?;
    if width == 0 || width / 2 + 1 != wh || lead.last() != Some(&c) || coef.dims() != [c, NCOEF] {
        candle_core::bail!(
            "mfc symbol product: spectrum {:?}, coefficients {:?}, width {width}",
            z.dims(),
            coef.dims()
        );
    }
    let (lx, ly) = extent;
    if !(lx > 0.0 && ly > 0.0) {
        candle_core::bail!("mfc symbol product: bad extent {extent:?}");
    }
    let op = SymbolProduct {
        x: Axis::new(width, wh, lx),
        y: Axis::new(h, h, ly),
        inverse: inverse.then_some(width),
    };
    z.contiguous()?.apply_op2(&coef.contiguous()?, op)
}

/// Wavenumbers along one axis: `k^2` and the odd part `k` (zero on the Nyquist line).
#[derive(Debug, Clone)]
struct Axis {
    k2: Vec<f64>,
    k_odd: Vec<f64>,
}

impl Axis {
    /// The first `len` FFT indices of an `n`-point axis of length `l`: `k = 2 pi m / l`.
    fn new(n: usize, len: usize, l: f64) -> Self {
        let (k2, k_odd) = (0..len)
            .map(|i| {
                let (m, nyquist) = mode(i, n);
                let k = 2.0 * PI * m / l;
                (k * k, if nyquist { 0.0 } else { k })
            })
            .unzip();
        Self { k2, k_odd }
    }

    fn cast<T: Float>(&self) -> (Vec<T>, Vec<T>) {
        let c = |v: &[f64]| v.iter().map(|&a| T::from_f64(a).expect("float")).collect();
        (c(&self.k2), c(&self.k_odd))
    }
}

/// The forward op; `x` along the half-spectrum columns, `y` along the rows; with
/// `inverse = Some(width)` the product is followed by `irfft2` to that width.
#[derive(Debug, Clone)]
struct SymbolProduct {
    x: Axis,
    y: Axis,
    inverse: Option<usize>,
}

/// The backward op: `(G, Z, coef) -> [dZ (flat), dcoef (flat)]` in one flat tensor.
struct SymbolProductBwd(SymbolProduct);

/// The symbol on one channel's `[H, Wh]` plane, with its factors.
struct Plane<T> {
    re: Vec<T>,
    im: Vec<T>,
}

/// Wavenumber tables in the working float type.
struct Tables<T> {
    kx2: Vec<T>,
    kx: Vec<T>,
    ky2: Vec<T>,
    ky: Vec<T>,
}

impl<T: Float> Tables<T> {
    fn new(op: &SymbolProduct) -> Self {
        let ((kx2, kx), (ky2, ky)) = (op.x.cast(), op.y.cast());
        Self { kx2, kx, ky2, ky }
    }

    /// `(E, D) = (exp(-Q), d . k)` at row `i`, column `j` for coefficients `q`.
    #[inline]
    fn factors(&self, q: &[T], i: usize, j: usize) -> (T, T) {
        let quad = q[3] * self.kx2[j] + q[4] * (self.kx[j] * self.ky[i]) + q[5] * self.ky2[i];
        ((-quad).exp(), q[1] * self.kx[j] + q[2] * self.ky[i])
    }

    /// `S` on the plane for coefficients `q`.
    fn fill(&self, q: &[T], s: &mut Plane<T>) {
        let wh = self.kx.len();
        for i in 0..self.ky.len() {
            for j in 0..wh {
                let (e, d) = self.factors(q, i, j);
                s.re[i * wh + j] = q[0] * e;
                s.im[i * wh + j] = d * e;
            }
        }
    }
}

/// Sizes of a packed spectrum `[2, .., C, H, Wh]` with `channels` channels: `(planes, H, H Wh)`.
fn sizes(dims: &[usize], channels: usize) -> candle_core::Result<(usize, usize, usize)> {
    let (_, p, h, wh) = packed_dims(dims)?;
    if channels == 0 || p % channels != 0 {
        candle_core::bail!("mfc symbol product: {p} planes, {channels} channels");
    }
    Ok((p, h, h * wh))
}

/// The planes `[N, C, hw]` of `v` dealt out to the workers that own `per` consecutive channels
/// each: part `j` holds, for every image `n` in order, the block of planes of channels
/// `j per .. (j + 1) per` (fewer in the last part) as one slice, so each worker writes only
/// its own channels. No parts when `v` is empty.
fn deal<T>(v: &mut [T], c: usize, per: usize, hw: usize) -> Vec<Vec<&mut [T]>> {
    let mut parts: Vec<Vec<&mut [T]>> = Vec::new();
    for image in v.chunks_mut(c * hw) {
        for (j, block) in image.chunks_mut(per * hw).enumerate() {
            match parts.get_mut(j) {
                Some(part) => part.push(block),
                None => parts.push(vec![block]),
            }
        }
    }
    parts
}

impl SymbolProduct {
    /// The op's output: the packed product, or its `irfft2` when `inverse` is set.
    fn run<T: Float>(&self, z: &[T], q: &[T], p: usize, h: usize, hw: usize) -> Vec<T> {
        let out = self.forward(z, q, p, hw);
        match self.inverse {
            Some(w) => irfft2_planes(&out, p, h, w),
            None => out,
        }
    }

    fn forward<T: Float>(&self, z: &[T], q: &[T], p: usize, hw: usize) -> Vec<T> {
        let (c, tables) = (q.len() / NCOEF, Tables::<T>::new(self));
        let mut out = vec![T::zero(); 2 * p * hw];
        let per = planes_per_worker(c, p / c * hw);
        let (out_re, out_im) = out.split_at_mut(p * hw);
        let jobs = deal(out_re, c, per, hw)
            .into_iter()
            .zip(deal(out_im, c, per, hw));
        run_jobs(jobs, |i, (mut re_blocks, mut im_blocks)| {
            let mut s = Plane {
                re: vec![T::zero(); hw],
                im: vec![T::zero(); hw],
            };
            let count = re_blocks.first().map_or(0, |b| b.len() / hw);
            for (slot, ch) in (i * per..).take(count).enumerate() {
                tables.fill(&q[ch * NCOEF..(ch + 1) * NCOEF], &mut s);
                let blocks = re_blocks.iter_mut().zip(im_blocks.iter_mut());
                for (n, (block_re, block_im)) in blocks.enumerate() {
                    let plane = n * c + ch;
                    let (zr, zi) = (
                        &z[plane * hw..(plane + 1) * hw],
                        &z[(p + plane) * hw..(p + plane + 1) * hw],
                    );
                    let (or, oi) = (
                        &mut block_re[slot * hw..(slot + 1) * hw],
                        &mut block_im[slot * hw..(slot + 1) * hw],
                    );
                    for k in 0..hw {
                        let (a, b, sr, si) = (zr[k], zi[k], s.re[k], s.im[k]);
                        or[k] = a * sr - b * si;
                        oi[k] = a * si + b * sr;
                    }
                }
            }
        });
        out
    }

    /// `[dZ (2 p hw values), dcoef (6 C values)]` for output gradient `g` (packed like `z`).
    fn backward<T: Float>(&self, g: &[T], z: &[T], q: &[T], p: usize, hw: usize) -> Vec<T> {
        let (c, tables) = (q.len() / NCOEF, Tables::<T>::new(self));
        let wh = tables.kx.len();
        let mut out = vec![T::zero(); 2 * p * hw + NCOEF * c];
        let per = planes_per_worker(c, p / c * hw);
        let (dz, dcoef) = out.split_at_mut(2 * p * hw);
        let (dz_re, dz_im) = dz.split_at_mut(p * hw);
        let jobs = deal(dz_re, c, per, hw)
            .into_iter()
            .zip(deal(dz_im, c, per, hw))
            .zip(dcoef.chunks_mut(per * NCOEF));
        run_jobs(jobs, |i, ((mut re_blocks, mut im_blocks), dcoef)| {
            let mut s = Plane {
                re: vec![T::zero(); hw],
                im: vec![T::zero(); hw],
            };
            let mut ds = Plane {
                re: vec![T::zero(); hw],
                im: vec![T::zero(); hw],
            };
            let chans = (i * per..).zip(dcoef.chunks_exact_mut(NCOEF));
            for (slot, (ch, dcoef_ch)) in chans.enumerate() {
                let qc = &q[ch * NCOEF..(ch + 1) * NCOEF];
                tables.fill(qc, &mut s);
                ds.re.fill(T::zero());
                ds.im.fill(T::zero());
                let blocks = re_blocks.iter_mut().zip(im_blocks.iter_mut());
                for (n, (block_re, block_im)) in blocks.enumerate() {
                    let plane = n * c + ch;
                    let range = |o: usize| (o + plane) * hw..(o + plane + 1) * hw;
                    let (gr, gi, zr, zi) = (&g[range(0)], &g[range(p)], &z[range(0)], &z[range(p)]);
                    let (dr, di) = (
                        &mut block_re[slot * hw..(slot + 1) * hw],
                        &mut block_im[slot * hw..(slot + 1) * hw],
                    );
                    for k in 0..hw {
                        let (sr, si) = (s.re[k], s.im[k]);
                        dr[k] = gr[k] * sr + gi[k] * si;
                        di[k] = gi[k] * sr - gr[k] * si;
                        ds.re[k] = ds.re[k] + gr[k] * zr[k] + gi[k] * zi[k];
                        ds.im[k] = ds.im[k] + gi[k] * zr[k] - gr[k] * zi[k];
                    }
                }
                let f = |t: T| t.to_f64().expect("float");
                let mut acc = [0f64; NCOEF];
                for i in 0..tables.ky.len() {
                    for j in 0..wh {
                        let k = i * wh + j;
                        let (e, d) = tables.factors(qc, i, j);
                        let (dsr, dsi, e) = (f(ds.re[k]), f(ds.im[k]), f(e));
                        let dq = -e * (f(qc[0]) * dsr + f(d) * dsi);
                        let (kx, ky) = (self.x.k_odd[j], self.y.k_odd[i]);
                        acc[0] += dsr * e;
                        acc[1] += dsi * kx * e;
                        acc[2] += dsi * ky * e;
                        acc[3] += dq * self.x.k2[j];
                        acc[4] += dq * kx * ky;
                        acc[5] += dq * self.y.k2[i];
                    }
                }
                for (o, a) in dcoef_ch.iter_mut().zip(acc) {
                    *o = T::from_f64(a).expect("float");
                }
            }
        });
        out
    }
}

/// [`SymbolProduct`] on a spectrum of `p` planes `[h, Wh]` (`hw = h Wh` values each): the kernel
/// of the forward op (operands `z`, `coef`) and of the backward op (operands `G`, `z`, `coef`).
struct OnPlanes<'a> {
    op: &'a SymbolProduct,
    p: usize,
    h: usize,
    hw: usize,
}

impl<T: Float> CpuKernel<T, 2> for OnPlanes<'_> {
    fn run(&self, [z, q]: [&[T]; 2]) -> Vec<T> {
        self.op.run(z, q, self.p, self.h, self.hw)
    }
}

impl<T: Float> CpuKernel<T, 3> for OnPlanes<'_> {
    fn run(&self, [g, z, q]: [&[T]; 3]) -> Vec<T> {
        self.op.backward(g, z, q, self.p, self.hw)
    }
}

impl CustomOp2 for SymbolProduct {
    fn name(&self) -> &'static str {
        "mfc-symbol-product"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims();
        let (p, h, hw) = sizes(dims, l2.shape().dims().first().copied().unwrap_or(0))?;
        let planes = OnPlanes { op: self, p, h, hw };
        let out = dispatch(self.name(), &planes, [(s1, l1), (s2, l2)])?;
        let shape = match self.inverse {
            Some(w) => Shape::from([&dims[1..dims.len() - 1], &[w]].concat()),
            None => l1.shape().clone(),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        z: &Tensor,
        coef: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = match self.inverse {
            Some(w) => irfft2_adjoint(grad, w)?,
            None => grad.contiguous()?,
        };
        let flat = grad.apply_op3_no_bwd(z, coef, &SymbolProductBwd(self.clone()))?;
        let len = z.elem_count();
        Ok((
            Some(flat.narrow(0, 0, len)?.reshape(z.shape())?),
            Some(
                flat.narrow(0, len, coef.elem_count())?
                    .reshape(coef.shape())?,
            ),
        ))
    }
}

impl CustomOp3 for SymbolProductBwd {
    fn name(&self) -> &'static str {
        "mfc-symbol-product-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("mfc symbol product bwd: gradient and spectrum shapes differ");
        }
        let (p, h, hw) = sizes(
            l1.shape().dims(),
            l3.shape().dims().first().copied().unwrap_or(0),
        )?;
        let n = l1.shape().elem_count() + l3.shape().elem_count();
        let planes = OnPlanes {
            op: &self.0,
            p,
            h,
            hw,
        };
        let out = dispatch(self.name(), &planes, [(s1, l1), (s2, l2), (s3, l3)])?;
        Ok((out, Shape::from(n)))
    }
}
