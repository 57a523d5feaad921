//! `fastconv::set_policy`: under `Policy::GemmOnly` every pass runs im2col + GEMM, as
//! `Algorithms::of` reports (and `Algorithms::under` whatever the policy in force), and gives
//! the default policy's results to float rounding. One test in a binary of its own, since the
//! policy is process-wide.

use candle_core::{DType, Device, Tensor, Var};
use fastconv::{Algorithm, Algorithms, ConvGeometry, Policy};

/// `y = conv2d(x, w)` and the gradients of `sum(y * r)` for `x` and `w`, flattened.
fn conv_and_gradients(x: &Var, w: &Var, r: &Tensor) -> [Vec<f32>; 3] {
    let y = fastconv::conv2d(x, w, 1, 1, 1).unwrap();
    let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    [
        flat(&y),
        flat(grads.get(x).unwrap()),
        flat(grads.get(w).unwrap()),
    ]
}

#[test]
fn gemm_only_runs_gemm_and_agrees_with_the_fastest_kernels() {
    assert_eq!(fastconv::policy(), Policy::Fastest);
    let (batch, c, n) = (4, 128, 16);
    let g = ConvGeometry::new(&[batch, c, n, n], &[c, c, 3, 3], 1, 1, 1).unwrap();
    let narrowing = ConvGeometry::new(&[2, 96, n, n], &[32, 96, 3, 3], 1, 1, 1).unwrap();
    let fastest = Algorithms::of(&g, DType::F32).unwrap();
    // Direct kernels with AVX-512, Winograd without.
    assert_ne!(fastest.forward, Algorithm::Gemm);
    assert_ne!(fastest.grad_weight, Algorithm::Gemm);

    let x = Var::randn(0f32, 1., (batch, c, n, n), &Device::Cpu).unwrap();
    let w = Var::randn(0f32, 0.05, (c, c, 3, 3), &Device::Cpu).unwrap();
    let r = Tensor::randn(0f32, 1., (batch, c, n, n), &Device::Cpu).unwrap();
    let want = conv_and_gradients(&x, &w, &r);

    fastconv::set_policy(Policy::GemmOnly);
    assert_eq!(fastconv::policy(), Policy::GemmOnly);
    let gemm = Algorithms {
        forward: Algorithm::Gemm,
        grad_input: Algorithm::Gemm,
        grad_weight: Algorithm::Gemm,
    };
    assert_eq!(Algorithms::of(&g, DType::F32), Some(gemm));
    // `under` answers for the policy asked, whichever is in force.
    assert_eq!(
        Algorithms::under(&g, DType::F32, Policy::Fastest),
        Some(fastest)
    );
    // A narrowing layer's input gradient stays `conv2d(dy, W')`: im2col + GEMM as well.
    assert_eq!(
        Algorithms::of(&narrowing, DType::F32),
        Some(Algorithms {
            grad_input: Algorithm::TransposedGemm,
            ..gemm
        })
    );
    let got = conv_and_gradients(&x, &w, &r);

    fastconv::set_policy(Policy::Fastest);
    assert_eq!(Algorithms::of(&g, DType::F32), Some(fastest));
    assert_eq!(
        Algorithms::under(&g, DType::F32, Policy::GemmOnly),
        Some(gemm)
    );
    for ((name, want), got) in ["y", "dx", "dw"].iter().zip(&want).zip(&got) {
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = want
            .iter()
            .zip(got)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-4 * scale,
            "{name}: max |fastest - gemm only| {err} against max |{name}| {scale}"
        );
    }
}
