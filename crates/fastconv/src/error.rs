//! Typed errors for shape validation; converted into `candle_core::Error` at the op boundary.

/// Why a convolution cannot run on the given shapes.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConvError {
    /// Input or weight is not rank 4.
    #[error("conv2d expects rank-4 input [N,C,H,W] and weight [O,C/g,kh,kw], got {x:?} and {w:?}")]
    Rank { x: Vec<usize>, w: Vec<usize> },
    /// `groups` is zero or does not divide the channel counts, or the weight's second axis is wrong.
    #[error("conv2d groups={groups}: input channels {c_in}, output channels {c_out}, weight channels {w_c}")]
    Groups {
        groups: usize,
        c_in: usize,
        c_out: usize,
        w_c: usize,
    },
    /// Stride zero.
    #[error("conv2d stride must be at least 1")]
    Stride,
    /// The padded input is smaller than the kernel.
    #[error("conv2d kernel {kh}x{kw} larger than padded input {h}x{w} (padding {padding})")]
    KernelTooLarge {
        kh: usize,
        kw: usize,
        h: usize,
        w: usize,
        padding: usize,
    },
    /// A tensor handed to one of the ops does not have the shape the op was built for.
    #[error("conv2d op {op}: expected shape {expected:?}, got {got:?}")]
    Shape {
        op: &'static str,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
}

impl From<ConvError> for candle_core::Error {
    fn from(e: ConvError) -> Self {
        candle_core::Error::wrap(e)
    }
}
