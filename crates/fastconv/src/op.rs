//! The candle custom ops: forward `(x, w) -> y` and `(x, w, b) -> y + b` with backward, and the
//! gradient ops `(dy, w) -> dx`, `(x, dy) -> dw`, `dy -> db` (first-order only).

use crate::elem::Elem;
use crate::error::ConvError;
use crate::geometry::ConvGeometry;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// A two-operand kernel on contiguous slices of one float type.
trait Kernel {
    const NAME: &'static str;
    fn dims(&self) -> [Vec<usize>; 3];
    fn run<T: Elem>(&self, a: &[T], b: &[T]) -> Vec<T>;
}

fn contiguous<'a, T: Elem>(op: &'static str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let data = T::slice(s).ok_or(ConvError::Storage {
        op,
        what: "operands must both be f32 or both f64",
    })?;
    let (start, end) = l.contiguous_offsets().ok_or(ConvError::Storage {
        op,
        what: "operand not contiguous",
    })?;
    Ok(&data[start..end])
}

fn cpu_fwd_of<K: Kernel>(
    k: &K,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let [a_dims, b_dims, out_dims] = k.dims();
    for (l, expected) in [(l1, a_dims), (l2, b_dims)] {
        if l.dims() != expected.as_slice() {
            return Err(ConvError::Shape {
                op: K::NAME,
                expected,
                got: l.dims().to_vec(),
            }
            .into());
        }
    }
    let out = match s1 {
        CpuStorage::F64(_) => f64::storage(k.run(
            contiguous::<f64>(K::NAME, s1, l1)?,
            contiguous(K::NAME, s2, l2)?,
        )),
        _ => f32::storage(k.run(
            contiguous::<f32>(K::NAME, s1, l1)?,
            contiguous(K::NAME, s2, l2)?,
        )),
    };
    Ok((out, Shape::from(out_dims)))
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

impl Kernel for Conv2dOp {
    const NAME: &'static str = "fastconv-conv2d";
    fn dims(&self) -> [Vec<usize>; 3] {
        [self.0.x_dims(), self.0.w_dims(), self.0.y_dims()]
    }
    fn run<T: Elem>(&self, x: &[T], w: &[T]) -> Vec<T> {
        crate::forward::forward(&self.0, x, w)
    }
}

impl Kernel for GradInputOp {
    const NAME: &'static str = "fastconv-conv2d-grad-input";
    fn dims(&self) -> [Vec<usize>; 3] {
        [self.0.y_dims(), self.0.w_dims(), self.0.x_dims()]
    }
    fn run<T: Elem>(&self, dy: &[T], w: &[T]) -> Vec<T> {
        crate::grad_input::grad_input(&self.0, dy, w)
    }
}

impl Kernel for GradWeightOp {
    const NAME: &'static str = "fastconv-conv2d-grad-weight";
    fn dims(&self) -> [Vec<usize>; 3] {
        [self.0.x_dims(), self.0.y_dims(), self.0.w_dims()]
    }
    fn run<T: Elem>(&self, x: &[T], dy: &[T]) -> Vec<T> {
        crate::grad_weight::grad_weight(&self.0, x, dy)
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
        cpu_fwd_of(self, s1, l1, s2, l2)
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = dy.apply_op2_no_bwd(w, &GradInputOp(self.0))?;
        let dw = x.apply_op2_no_bwd(&dy, &GradWeightOp(self.0))?;
        Ok((Some(dx), Some(dw)))
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
        cpu_fwd_of(self, s1, l1, s2, l2)
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
        cpu_fwd_of(self, s1, l1, s2, l2)
    }
}

impl CustomOp3 for Conv2dBiasOp {
    fn name(&self) -> &'static str {
        "fastconv-conv2d-bias"
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
        let op = self.name();
        let expected = vec![self.0.c_out];
        if l3.dims() != expected.as_slice() {
            return Err(ConvError::Shape {
                op,
                expected,
                got: l3.dims().to_vec(),
            }
            .into());
        }
        let (storage, shape) = cpu_fwd_of(&Conv2dOp(self.0), s1, l1, s2, l2)?;
        let hw = self.0.hw_out();
        let out = match storage {
            CpuStorage::F64(mut y) => {
                crate::bias::add_bias(&mut y, contiguous::<f64>(op, s3, l3)?, hw);
                CpuStorage::F64(y)
            }
            CpuStorage::F32(mut y) => {
                crate::bias::add_bias(&mut y, contiguous::<f32>(op, s3, l3)?, hw);
                CpuStorage::F32(y)
            }
            _ => {
                return Err(ConvError::Storage {
                    op,
                    what: "operands must all be f32 or all f64",
                }
                .into())
            }
        };
        Ok((out, shape))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = dy.apply_op2_no_bwd(w, &GradInputOp(self.0))?;
        let dw = x.apply_op2_no_bwd(&dy, &GradWeightOp(self.0))?;
        let db = dy.apply_op1_no_bwd(&GradBiasOp(self.0))?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

impl CustomOp1 for GradBiasOp {
    fn name(&self) -> &'static str {
        "fastconv-conv2d-grad-bias"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let expected = self.0.y_dims();
        if l.dims() != expected.as_slice() {
            return Err(ConvError::Shape {
                op,
                expected,
                got: l.dims().to_vec(),
            }
            .into());
        }
        let (c, hw) = (self.0.c_out, self.0.hw_out());
        let out = match s {
            CpuStorage::F64(_) => {
                f64::storage(crate::bias::grad_bias(contiguous::<f64>(op, s, l)?, c, hw))
            }
            _ => f32::storage(crate::bias::grad_bias(contiguous::<f32>(op, s, l)?, c, hw)),
        };
        Ok((out, Shape::from(c)))
    }
}
