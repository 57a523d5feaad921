//! The element types our kernels run on (f32, f64) and their thread-local scratch buffers.

use crate::geometry::ConvGeometry;
use std::cell::Cell;

/// A float the `gemm` crate multiplies, with a per-thread reusable scratch buffer.
pub(crate) trait Elem: Copy + Send + Sync + 'static + std::ops::AddAssign {
    const ZERO: Self;
    const ONE: Self;
    /// Run `f` on a scratch slice of `len` elements (contents unspecified) owned by this thread.
    /// Re-entrant: a nested call on the same thread gets a fresh buffer.
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
    /// Whether [`Self::direct_forward`] runs `g` (f32 only: [`crate::direct::applies`],
    /// [`crate::direct_coarse::applies`] or [`crate::winograd::applies`]).
    fn has_direct(_g: &ConvGeometry) -> bool {
        false
    }
    /// The forward convolution of `g` by [`crate::direct`], [`crate::direct_coarse`] or
    /// [`crate::winograd`] (the first that applies), `None` when none does.
    fn direct_forward(_g: &ConvGeometry, _x: &[Self], _w: &[Self]) -> Option<Vec<Self>> {
        None
    }
    /// The weight gradient of `g` by [`crate::direct_weight`] or [`crate::winograd`] (the first
    /// that applies), `None` when neither does.
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
    fn has_direct(g: &ConvGeometry) -> bool {
        crate::direct::applies(g) || coarse(g) || crate::winograd::applies(g)
    },
    fn direct_forward(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Option<Vec<f32>> {
        if crate::direct::applies(g) {
            return Some(crate::direct::forward(g, x, w));
        }
        #[cfg(target_arch = "x86_64")]
        if coarse(g) {
            return Some(crate::direct_coarse::forward(g, x, w));
        }
        crate::winograd::applies(g).then(|| crate::winograd::forward(g, x, w))
    },
    fn direct_grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Option<Vec<f32>> {
        #[cfg(target_arch = "x86_64")]
        if crate::direct_weight::applies(g) {
            return Some(crate::direct_weight::grad_weight(g, x, dy));
        }
        crate::winograd::applies(g).then(|| crate::winograd::grad_weight(g, x, dy))
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
