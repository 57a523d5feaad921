//! The element types our kernels run on (f32, f64) and their thread-local scratch buffers.

use crate::algorithm::Algorithm;
use crate::geometry::ConvGeometry;
use crate::Policy;
use std::cell::Cell;

/// A float the `gemm` crate multiplies, with a per-thread reusable scratch buffer.
pub(crate) trait Elem: Copy + Send + Sync + 'static + std::ops::AddAssign {
    const ZERO: Self;
    const ONE: Self;
    /// Run `f` on a scratch slice of `len` elements (contents unspecified) owned by this thread.
    /// Re-entrant: a nested call on the same thread gets a fresh buffer.
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
    /// The kernel of the forward convolution of `g` ([`Algorithm::Gemm`] unless f32 has a
    /// direct or Winograd kernel for it).
    fn forward_algorithm(_g: &ConvGeometry, _policy: Policy) -> Algorithm {
        Algorithm::Gemm
    }
    /// The kernel of the weight gradient of `g`.
    fn grad_weight_algorithm(_g: &ConvGeometry, _policy: Policy) -> Algorithm {
        Algorithm::Gemm
    }
    /// Whether [`Self::direct_forward`] runs `g`.
    fn has_direct(g: &ConvGeometry, policy: Policy) -> bool {
        Self::forward_algorithm(g, policy) != Algorithm::Gemm
    }
    /// The forward convolution of `g` by the kernel of [`Self::forward_algorithm`], `None`
    /// when that is [`Algorithm::Gemm`].
    fn direct_forward(_g: &ConvGeometry, _x: &[Self], _w: &[Self]) -> Option<Vec<Self>> {
        None
    }
    /// The weight gradient of `g` by the kernel of [`Self::grad_weight_algorithm`], `None`
    /// when that is [`Algorithm::Gemm`].
    fn direct_grad_weight(_g: &ConvGeometry, _x: &[Self], _dy: &[Self]) -> Option<Vec<Self>> {
        None
    }
}

macro_rules! impl_elem {
    ($t:ty, $tls:ident $(, $direct:item)*) => {
        thread_local! {
            static $tls: Cell<Vec<$t>> = const { Cell::new(Vec::new()) };
        }
        impl Elem for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                let mut buf = $tls.with(Cell::take);
                if buf.len() < len {
                    buf.resize(len, 0.0);
                }
                let r = f(&mut buf[..len]);
                $tls.with(|c| {
                    // Keep the larger of the two buffers if a nested call stored one meanwhile.
                    let other = c.take();
                    c.set(if other.len() > buf.len() { other } else { buf });
                });
                r
            }
            $($direct)*
        }
    };
}

impl_elem!(
    f32,
    SCRATCH_F32,
    fn forward_algorithm(g: &ConvGeometry, policy: Policy) -> Algorithm {
        if policy == Policy::GemmOnly {
            Algorithm::Gemm
        } else if crate::direct::applies(g) {
            Algorithm::Direct
        } else if coarse(g) {
            Algorithm::DirectCoarse
        } else if crate::winograd::applies(g) {
            Algorithm::Winograd
        } else {
            Algorithm::Gemm
        }
    },
    fn grad_weight_algorithm(g: &ConvGeometry, policy: Policy) -> Algorithm {
        if policy == Policy::GemmOnly {
            return Algorithm::Gemm;
        }
        #[cfg(target_arch = "x86_64")]
        if crate::direct_weight::applies(g) {
            return Algorithm::DirectWeight;
        }
        if crate::winograd::applies(g) {
            Algorithm::Winograd
        } else {
            Algorithm::Gemm
        }
    },
    fn direct_forward(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Option<Vec<f32>> {
        match Self::forward_algorithm(g, crate::policy()) {
            Algorithm::Direct => Some(crate::direct::forward(g, x, w)),
            #[cfg(target_arch = "x86_64")]
            Algorithm::DirectCoarse => Some(crate::direct_coarse::forward(g, x, w)),
            Algorithm::Winograd => Some(crate::winograd::forward(g, x, w)),
            _ => None,
        }
    },
    fn direct_grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Option<Vec<f32>> {
        match Self::grad_weight_algorithm(g, crate::policy()) {
            #[cfg(target_arch = "x86_64")]
            Algorithm::DirectWeight => Some(crate::direct_weight::grad_weight(g, x, dy)),
            Algorithm::Winograd => Some(crate::winograd::grad_weight(g, x, dy)),
            _ => None,
        }
    }
);
impl_elem!(f64, SCRATCH_F64);

/// Whether [`crate::direct_coarse`] runs `g` (x86-64 only).
fn coarse(g: &ConvGeometry) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::direct_coarse::applies(g)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = g;
        false
    }
}

/// `len` zeros written into fresh memory, never `calloc`ed. A `calloc`ed block of pages reads
/// as the kernel's shared zero page, so a kernel that accumulates into it (`dx += ...`) takes a
/// copy-on-write fault per page, each with a TLB shootdown to every core the process runs on.
/// Writing the zeros first faults each page in once, without the shootdown.
pub(crate) fn written_zeros<T: Elem>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    // Hides the fresh allocation from LLVM, which may fold `malloc` + `memset(0)` into `calloc`.
    std::hint::black_box(&mut v);
    v.resize(len, T::ZERO);
    v
}
