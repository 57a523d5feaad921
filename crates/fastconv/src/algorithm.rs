//! Which kernel computes each pass of a convolution on the CPU: one answer, which the dispatch
//! itself follows and which [`Algorithms::of`] reports.

use crate::elem::Elem;
use crate::geometry::ConvGeometry;
use crate::transposed::transposed_geometry;
use crate::Policy;
use candle_core::DType;

/// A kernel of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// im2col bands times the weight matrix with the `gemm` crate (`forward.rs`,
    /// `grad_weight.rs`); for the input gradient, `col2im(W^T dy)` (`grad_input.rs`).
    Gemm,
    /// The input gradient of a stride-1 layer as the forward convolution `conv2d(dy, W')`,
    /// `W'` the flipped, transposed kernel, by im2col + GEMM (`transposed.rs`).
    TransposedGemm,
    /// Direct convolution, 24 sums in registers per tile of 48 pixels x 8 channels
    /// (`direct.rs`, f32, AVX-512).
    Direct,
    /// Direct convolution on a coarse mesh, output channels in the lanes (`direct_coarse.rs`,
    /// f32, AVX-512).
    DirectCoarse,
    /// Direct weight gradient, output channels in the lanes (`direct_weight.rs`, f32,
    /// AVX-512).
    DirectWeight,
    /// Winograd's F(2x2, 3x3) (forward, input gradient) and F(3x3, 2x2) (weight gradient)
    /// (`winograd.rs`, f32).
    Winograd,
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gemm => "gemm",
            Self::TransposedGemm => "transposed gemm",
            Self::Direct => "direct",
            Self::DirectCoarse => "direct coarse",
            Self::DirectWeight => "direct weight",
            Self::Winograd => "winograd",
        })
    }
}

/// The kernels of the three passes of one convolution on this CPU: the forward
/// `y = conv2d(x, w)` (001 eq. 1), the input gradient `dx` and the weight gradient `dw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Algorithms {
    /// The forward convolution.
    pub forward: Algorithm,
    /// The input gradient `dx`.
    pub grad_input: Algorithm,
    /// The weight gradient `dw`.
    pub grad_weight: Algorithm,
}

impl Algorithms {
    /// The kernels [`crate::conv2d`] runs for `g` on the CPU in `dtype` under the policy in
    /// force ([`crate::policy`]; they depend on the CPU's features), or `None` for a dtype that
    /// goes to candle's `conv2d` (not f32 or f64).
    pub fn of(g: &ConvGeometry, dtype: DType) -> Option<Self> {
        Self::under(g, dtype, crate::policy())
    }

    /// The kernels [`crate::conv2d`] would run for `g` in `dtype` under `policy`, whichever
    /// policy is in force.
    pub fn under(g: &ConvGeometry, dtype: DType, policy: Policy) -> Option<Self> {
        match dtype {
            DType::F32 => Some(Self::of_elem::<f32>(g, policy)),
            DType::F64 => Some(Self::of_elem::<f64>(g, policy)),
            _ => None,
        }
    }

    fn of_elem<T: Elem>(g: &ConvGeometry, policy: Policy) -> Self {
        let grad_input = match transposed_geometry::<T>(g, policy) {
            Some(gt) => match T::forward_algorithm(&gt, policy) {
                Algorithm::Gemm => Algorithm::TransposedGemm,
                other => other,
            },
            None => Algorithm::Gemm,
        };
        Self {
            forward: T::forward_algorithm(g, policy),
            grad_input,
            grad_weight: T::grad_weight_algorithm(g, policy),
        }
    }
}

impl std::fmt::Display for Algorithms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} / {} / {}",
            self.forward, self.grad_input, self.grad_weight
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(batch: usize, c_in: usize, c_out: usize, n: usize, k: usize) -> ConvGeometry {
        ConvGeometry::new(&[batch, c_in, n, n], &[c_out, c_in, k, k], k / 2, 1, 1).unwrap()
    }

    #[test]
    fn f64_and_layers_no_kernel_takes_run_gemm() {
        use Algorithm::*;
        let wide = geometry(16, 128, 128, 8, 3);
        let all = |a| Algorithms {
            forward: a,
            grad_input: a,
            grad_weight: a,
        };
        assert_eq!(Algorithms::of(&wide, DType::F64), Some(all(Gemm)));
        // Strided: no direct kernel, no Winograd, no transposed input gradient.
        let strided = ConvGeometry::new(&[2, 64, 16, 16], &[64, 64, 3, 3], 1, 2, 1).unwrap();
        assert_eq!(Algorithms::of(&strided, DType::F32), Some(all(Gemm)));
        // A narrowing layer's input gradient is `conv2d(dy, W')` in f64.
        let narrowing = geometry(2, 96, 32, 16, 3);
        assert_eq!(
            Algorithms::of(&narrowing, DType::F64).map(|a| a.grad_input),
            Some(TransposedGemm)
        );
        assert_eq!(Algorithms::of(&wide, DType::BF16), None);
    }

    #[test]
    fn wide_3x3_layers_take_a_direct_kernel_or_winograd() {
        use Algorithm::*;
        let a = Algorithms::of(&geometry(16, 128, 128, 16, 3), DType::F32).unwrap();
        // 16-pixel rows and 8k (32k) output channels: the direct kernels, where they run.
        if crate::direct::cpu_has_avx512() {
            assert_eq!(
                (a.forward, a.grad_input, a.grad_weight),
                (Direct, Direct, DirectWeight)
            );
        } else {
            assert_eq!(
                (a.forward, a.grad_input, a.grad_weight),
                (Winograd, Winograd, Winograd)
            );
        }
        assert_eq!(
            a.to_string(),
            format!("{} / {} / {}", a.forward, a.grad_input, a.grad_weight)
        );
    }

    #[test]
    fn the_report_is_what_the_dispatch_runs() {
        for (c_in, c_out, n) in [
            (3, 32, 32),
            (32, 32, 8),
            (64, 64, 16),
            (128, 128, 8),
            (96, 32, 16),
        ] {
            let g = geometry(2, c_in, c_out, n, 3);
            let a = Algorithms::of(&g, DType::F32).unwrap();
            let x = vec![0f32; g.batch * g.c_in * g.hw_in()];
            let w = vec![0f32; g.c_out * g.cg() * 9];
            let dy = vec![0f32; g.batch * g.c_out * g.hw_out()];
            assert_eq!(
                f32::direct_forward(&g, &x, &w).is_some(),
                a.forward != Algorithm::Gemm
            );
            assert_eq!(
                f32::direct_grad_weight(&g, &x, &dy).is_some(),
                a.grad_weight != Algorithm::Gemm
            );
            assert_eq!(
                crate::transposed::transposed(&g, &w).is_some(),
                a.grad_input != Algorithm::Gemm
            );
        }
    }
}
