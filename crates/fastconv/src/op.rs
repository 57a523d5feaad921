//! The candle custom ops: forward `(x, w) -> y` and `(x, w, b) -> y + b` with backward, and the
//! gradient ops `(dy, w) -> dx`, `(x, dy) -> dw`, `dy -> db` (first-order only).

use crate::dispatch::{dispatch, CpuKernel};
use crate::elem::Elem;
use crate::error::ConvError;
use crate::geometry::ConvGeometry;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// An op's kernel on `N` contiguous operands of one float type, with the shapes it was built for.
trait Kernel<const N: usize>: CpuKernel<f32, N> + CpuKernel<f64, N> {
    const NAME: &'static str;
    /// The operands' shapes and the output's.
    fn dims(&self) -> ([Vec<usize>; N], Vec<usize>);
}

/// The CPU forward of kernel `k`: shape checks, then [`dispatch`] on the operands' dtype.
fn cpu_fwd_of<K: Kernel<N>, const N: usize>(
    k: &K,
    operands: [(&CpuStorage, &Layout); N],
) -> Result<(CpuStorage, Shape)> {
    let (in_dims, out_dims) = k.dims();
    for ((_, l), expected) in operands.iter().zip(in_dims) {
        if l.dims() != expected.as_slice() {
            return Err(ConvError::Shape {
                op: K::NAME,
                expected,
                got: l.dims().to_vec(),
            }
            .into());
        }
    }
    Ok((dispatch(K::NAME, k, operands)?, Shape::from(out_dims)))
}

/// `(x, w, b) -> y = conv2d(x, w) + b[o]`; backward gives `dx`, `dw` as [`Conv2dOp`] and
/// `db[o] = sum_{n,i,j} dy[n, o, i, j]` by [`GradBiasOp`].
pub(crate) struct Conv2dBiasOp(pub ConvGeometry);
/// `dy -> db`, `db[o] = sum_{n,i,j} dy[n, o, i, j]`.
pub(crate) struct GradBiasOp(pub ConvGeometry);

/// `(x, w) -> y = conv2d(x, w)`; backward gives `dx` by [`GradInputOp`] and `dw` by [`GradWeightOp`].
pub(crate) struct Conv2dOp(pub ConvGeometry);

/// `(dy, w) -> dx`, the adjoint of the forward in `x`.
pub(crate) struct GradInputOp(pub ConvGeometry);
/// `(x, dy) -> dw`, the adjoint of the forward in `w`.
pub(crate) struct GradWeightOp(pub ConvGeometry);

/// `dx` for the backward of a convolution with geometry `g`, or `None` when `x` is a constant
/// (neither a variable nor computed from one), whose gradient nobody reads: the input image of a
/// network's first layer.
fn grad_input(g: &ConvGeometry, x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
    if !x.track_op() {
        return Ok(None);
    }
    Ok(Some(dy.apply_op2_no_bwd(w, &GradInputOp(*g))?))
}

/// `dw`, or `None` when `w` is a constant (a frozen weight).
fn grad_weight(g: &ConvGeometry, x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
    if !w.track_op() {
        return Ok(None);
    }
    Ok(Some(x.apply_op2_no_bwd(dy, &GradWeightOp(*g))?))
}

impl Kernel<2> for Conv2dOp {
    const NAME: &'static str = "fastconv-conv2d";
    fn dims(&self) -> ([Vec<usize>; 2], Vec<usize>) {
        ([self.0.x_dims(), self.0.w_dims()], self.0.y_dims())
    }
}
impl<T: Elem> CpuKernel<T, 2> for Conv2dOp {
    fn run(&self, [x, w]: [&[T]; 2]) -> Vec<T> {
        crate::forward::forward(&self.0, x, w)
    }
}

impl Kernel<2> for GradInputOp {
    const NAME: &'static str = "fastconv-conv2d-grad-input";
    fn dims(&self) -> ([Vec<usize>; 2], Vec<usize>) {
        ([self.0.y_dims(), self.0.w_dims()], self.0.x_dims())
    }
}
impl<T: Elem> CpuKernel<T, 2> for GradInputOp {
    fn run(&self, [dy, w]: [&[T]; 2]) -> Vec<T> {
        crate::grad_input::grad_input(&self.0, dy, w)
    }
}

impl Kernel<2> for GradWeightOp {
    const NAME: &'static str = "fastconv-conv2d-grad-weight";
    fn dims(&self) -> ([Vec<usize>; 2], Vec<usize>) {
        ([self.0.x_dims(), self.0.y_dims()], self.0.w_dims())
    }
}
impl<T: Elem> CpuKernel<T, 2> for GradWeightOp {
    fn run(&self, [x, dy]: [&[T]; 2]) -> Vec<T> {
        crate::grad_weight::grad_weight(&self.0, x, dy)
    }
}

impl Kernel<3> for Conv2dBiasOp {
    const NAME: &'static str = "fastconv-conv2d-bias";
    fn dims(&self) -> ([Vec<usize>; 3], Vec<usize>) {
        let g = &self.0;
        ([g.x_dims(), g.w_dims(), vec![g.c_out]], g.y_dims())
    }
}
impl<T: Elem> CpuKernel<T, 3> for Conv2dBiasOp {
    fn run(&self, [x, w, b]: [&[T]; 3]) -> Vec<T> {
        let mut y = crate::forward::forward(&self.0, x, w);
        crate::bias::add_bias(&mut y, b, self.0.hw_out());
        y
    }
}

impl Kernel<1> for GradBiasOp {
    const NAME: &'static str = "fastconv-conv2d-grad-bias";
    fn dims(&self) -> ([Vec<usize>; 1], Vec<usize>) {
        ([self.0.y_dims()], vec![self.0.c_out])
    }
}
impl<T: Elem> CpuKernel<T, 1> for GradBiasOp {
    fn run(&self, [dy]: [&[T]; 1]) -> Vec<T> {
        crate::bias::grad_bias(dy, self.0.c_out, self.0.hw_out())
    }
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_fwd_of(self, [(s1, l1), (s2, l2)])
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        Ok((
            grad_input(&self.0, x, w, &dy)?,
            grad_weight(&self.0, x, w, &dy)?,
        ))
    }
}

impl CustomOp2 for GradInputOp {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_fwd_of(self, [(s1, l1), (s2, l2)])
    }
}

impl CustomOp2 for GradWeightOp {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_fwd_of(self, [(s1, l1), (s2, l2)])
    }
}

impl CustomOp3 for Conv2dBiasOp {
    fn name(&self) -> &'static str {
        Self::NAME
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
        cpu_fwd_of(self, [(s1, l1), (s2, l2), (s3, l3)])
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let db = if b.track_op() {
            Some(dy.apply_op1_no_bwd(&GradBiasOp(self.0))?)
        } else {
            None
        };
        Ok((
            grad_input(&self.0, x, w, &dy)?,
            grad_weight(&self.0, x, w, &dy)?,
            db,
        ))
    }
}

impl CustomOp1 for GradBiasOp {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_fwd_of(self, [(s, l)])
    }
}
