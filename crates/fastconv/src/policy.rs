//! Which kernels [`crate::conv2d`] may choose from: a process-wide switch, like PyTorch's
//! `torch.backends.mkldnn.enabled`, to time the specialised kernels against im2col + GEMM
//! (`cargo xtask bench conv` does) or to rule them out when a result looks wrong.

use std::sync::atomic::{AtomicU8, Ordering};

/// The kernels a convolution may run ([`set_policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Policy {
    /// For each pass the kernel [`crate::Algorithms::of`] finds fastest on this CPU: direct,
    /// Winograd or im2col + GEMM (the default).
    #[default]
    Fastest,
    /// im2col + GEMM only ([`crate::Algorithm::Gemm`] and, for the input gradient of a
    /// narrowing layer, [`crate::Algorithm::TransposedGemm`]): the reference path.
    GemmOnly,
}

static POLICY: AtomicU8 = AtomicU8::new(Policy::Fastest as u8);

/// Sets the policy for every pass (forward, input or weight gradient) dispatched from now on, in
/// every thread; [`Algorithms::of`](crate::Algorithms::of) reports under it. The results agree
/// under both policies to float rounding.
///
/// ```
/// use fastconv::{Algorithm, Algorithms, ConvGeometry, Policy};
/// let g = ConvGeometry::new(&[16, 128, 16, 16], &[128, 128, 3, 3], 1, 1, 1)?;
/// fastconv::set_policy(Policy::GemmOnly);
/// let gemm = Algorithms::of(&g, candle_core::DType::F32);
/// fastconv::set_policy(Policy::Fastest);
/// assert_eq!(gemm.map(|a| a.forward), Some(Algorithm::Gemm));
/// # Ok::<(), fastconv::ConvError>(())
/// ```
pub fn set_policy(policy: Policy) {
    POLICY.store(policy as u8, Ordering::Relaxed);
}

/// The policy in force ([`Policy::Fastest`] unless [`set_policy`] changed it).
pub fn policy() -> Policy {
    if POLICY.load(Ordering::Relaxed) == Policy::GemmOnly as u8 {
        Policy::GemmOnly
    } else {
        Policy::Fastest
    }
}
