//! Fast 2-D convolution on the CPU for candle tensors.
//!
//! [`conv2d`]`(x, w, padding, stride, groups)` computes
//! `y[n, o, i, j] = sum_{c, a, b} w[o, c, a, b] x[n, g(o) C/G + c, s i + a - p, s j + b - p]`
//! (zero padding, `g(o)` the group of `o`), the convolution of 001 eq. 1 / 000 eq. 1, as im2col
//! bands (sized for L2) times the weight matrix with the `gemm` crate, images split across the
//! rayon threads. Its backward pass runs two more custom ops on the same machinery: the input
//! gradient `col2im(W^T dy)` and the weight gradient `sum_n dy[n] im2col(x[n])^T`. In f32 on
//! CPUs with AVX-512, stride-1 layers with 8k output channels and rows of 16 or more pixels run
//! a direct convolution instead (no im2col matrix), and so does their input gradient, as the
//! forward convolution of `dy` with the flipped kernel; their weight gradient does too when
//! the output channels are a multiple of 32. Coarse-mesh layers (rows under 16 pixels, at least
//! 64 pixels, 32k output channels, small weights) run a second direct kernel with the output
//! channels in the lanes, again for the forward and the input gradient. Other f32 3x3 stride-1
//! layers with at least 64 input and output channels, 8^2 output pixels and 64 tiles of 2x2
//! output pixels per task on the rayon pool (all of them on CPUs without AVX-512; at 8^2, batch
//! 16 on two threads) run Winograd's F(2x2, 3x3) for the forward and the input gradient and its
//! transpose F(3x3, 2x2) for the weight gradient: 2.25x fewer multiply-adds.
//! f32 and f64 on the CPU run here; other devices and dtypes use candle's `conv2d`.
//! [`Algorithms::of`] says which kernel each pass of a layer runs on this CPU
//! ([`Algorithms::under`]: under a given policy); [`set_policy`] restricts every layer to
//! im2col + GEMM ([`Policy::GemmOnly`]), e.g. to time the others.
//!
//! Sources: `001 eq. 1` is the convolution of *Multiscale Training of Convolutional Neural
//! Networks* (`000 eq. 1` in its earlier version).
//!
//! | file | what |
//! |---|---|
//! | `algorithm.rs` | which kernel runs each pass of a layer ([`Algorithm`], [`Algorithms::of`]), the answer the dispatch follows |
//! | `op.rs` | the candle custom ops: forward with and without bias, and the gradient ops |
//! | `policy.rs` | which kernels a convolution may choose from ([`Policy`], [`set_policy`]) |
//! | `dispatch.rs` | the f32/f64 dispatch of a custom op's CPU forward ([`dispatch`]), also used by `mfc` and `models` |
//! | `forward.rs` | forward `y[n, o] = W_o cols(x[n])` per group (001 eq. 1 as a GEMM) |
//! | `direct.rs` | forward of a stride-1 convolution without im2col (f32, AVX-512): 24 sums in registers per tile of 48 pixels x 8 channels |
//! | `direct_coarse.rs` | forward of a stride-1 convolution on a coarse mesh (rows under 16 pixels) without im2col: 32 or 64 output channels in the lanes, pixels broadcast from the padded image (f32, AVX-512) |
//! | `direct_weight.rs` | weight gradient of stride-1 layers with 32k output channels without im2col: output channels in the lanes, taps broadcast from the padded image (f32, AVX-512) |
//! | `winograd.rs` | forward and weight gradient of a 3x3 stride-1 convolution by Winograd's F(2x2, 3x3) and F(3x3, 2x2): 16 GEMMs over transformed 4x4 tiles (f32, 64 or more channels, large enough layers) |
//! | `grad_input.rs` | input gradient `dx[n] = col2im(W^T dy[n])` |
//! | `transposed.rs` | input gradient of a narrowing stride-1 layer as `conv2d(dy, W')`, `W'` the flipped, transposed kernel |
//! | `grad_weight.rs` | weight gradient `dW_g = sum_n dy_g[n] cols(x[n])^T`: per-worker partial sums, or on coarse meshes the workers' GEMMs into one `dW` (same values) |
//! | `bias.rs` | fused bias `y[n, o, :] += b[o]` and `db[o] = sum dy[n, o, i, j]` |
//! | `im2col.rs` | im2col and its adjoint col2im on a band of output rows; for small images, all rows at once as the layer's `Gather` chooses: a copy per channel (1x1), a zero-padded copy of each channel (stride 1, outputs 2, 4 or 8 pixels wide) or a gather table |
//! | `geometry.rs` | shapes of one convolution and the tiling of the im2col buffer |
//! | `batch.rs` | work split over the batch and the rayon threads |
//! | `matmul.rs` | bounds-checked strided views and the `gemm` call |
//! | `elem.rs` | element types (f32, f64) and thread-local scratch buffers |
//! | `error.rs` | typed shape errors, converted to `candle_core::Error` |
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! let x = Var::randn(0f32, 1., (2, 3, 8, 8), &Device::Cpu)?;
//! let w = Var::randn(0f32, 1., (4, 3, 3, 3), &Device::Cpu)?;
//! let y = fastconv::conv2d(&x, &w, 1, 1, 1)?;
//! assert_eq!(y.dims(), &[2, 4, 8, 8]);
//! let grads = y.sqr()?.sum_all()?.backward()?;
//! assert_eq!(grads.get(&w).map(|g| g.dims().to_vec()), Some(vec![4, 3, 3, 3]));
//! # Ok::<(), candle_core::Error>(())
//! ```

mod algorithm;
mod batch;
mod bias;
#[cfg(test)]
mod chunk_tests;
mod direct;
#[cfg(target_arch = "x86_64")]
mod direct_coarse;
#[cfg(target_arch = "x86_64")]
mod direct_weight;
mod dispatch;
mod elem;
mod error;
mod forward;
mod geometry;
mod grad_input;
mod grad_weight;
mod im2col;
mod matmul;
mod op;
mod policy;
mod transposed;
mod winograd;

pub use algorithm::{Algorithm, Algorithms};
pub use dispatch::{dispatch, CpuKernel, StorageError};
pub use error::ConvError;
pub use geometry::ConvGeometry;
pub use policy::{policy, set_policy, Policy};

use candle_core::{DType, Result, Tensor};

/// 2-D cross-correlation `[N, C_in, H, W] * [C_out, C_in / groups, kh, kw] -> [N, C_out, H', W']`,
/// `H' = (H + 2 padding - kh) / stride + 1`, with the semantics of candle's
/// `Tensor::conv2d(w, padding, stride, 1, groups)` (001 eq. 1), differentiable in `x` and `w`.
/// Bias: [`conv2d_bias`]. On the CPU in f32/f64 it runs our im2col + GEMM kernels; otherwise it
/// forwards to candle.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
    groups: usize,
) -> Result<Tensor> {
    let native = x.device().is_cpu()
        && w.device().is_cpu()
        && x.dtype() == w.dtype()
        && matches!(x.dtype(), DType::F32 | DType::F64);
    if !native {
        return x.conv2d(w, padding, stride, 1, groups);
    }
    let geom = ConvGeometry::new(x.dims(), w.dims(), padding, stride, groups)?;
    x.contiguous()?
        .apply_op2(&w.contiguous()?, op::Conv2dOp(geom))
}

/// [`conv2d`] plus a per-output-channel bias: `y[n, o, i, j] = conv2d(x, w)[n, o, i, j] + b[o]`,
/// `b` of shape `[C_out]`, differentiable in `x`, `w` and `b`. On the CPU in f32/f64 the bias
/// is added inside the convolution op and its gradient `db[o] = sum_{n,i,j} dy[n, o, i, j]` is
/// computed by our kernel (no broadcast node in the graph); otherwise it is candle's
/// `conv2d(...).broadcast_add(b)`.
pub fn conv2d_bias(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    padding: usize,
    stride: usize,
    groups: usize,
) -> Result<Tensor> {
    let native = x.device().is_cpu()
        && w.device().is_cpu()
        && b.device().is_cpu()
        && x.dtype() == w.dtype()
        && x.dtype() == b.dtype()
        && matches!(x.dtype(), DType::F32 | DType::F64);
    if !native {
        return x
            .conv2d(w, padding, stride, 1, groups)?
            .broadcast_add(&b.reshape((1, (), 1, 1))?);
    }
    let geom = ConvGeometry::new(x.dims(), w.dims(), padding, stride, groups)?;
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, op::Conv2dBiasOp(geom))
}
