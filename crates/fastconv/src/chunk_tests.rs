//! The multi-image GEMM path (several small images per GEMM) against direct f64 loops of the
//! defining formulas and against the one-image path, for every chunk size.

use crate::forward::forward_with;
use crate::geometry::ConvGeometry;
use crate::grad_input::grad_input_with;
use crate::grad_weight::{grad_weight_whole, grad_weight_with};
use proptest::prelude::*;

/// `len` pseudo-random values in `[-1, 1)` from `seed` (xorshift).
pub(crate) fn values(seed: u64, len: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// `v` rounded to f32.
pub(crate) fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&a| a as f32).collect()
}

/// `v` widened to f64.
pub(crate) fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| f64::from(a)).collect()
}

/// Relative error of `forward(x, w)` in f32 against the f64 loops of 001 eq. 1, for inputs and
/// weights drawn from `seed`.
pub(crate) fn forward_error(
    g: &ConvGeometry,
    seed: u64,
    forward: impl Fn(&[f32], &[f32]) -> Vec<f32>,
) -> f64 {
    let x = values(seed, g.batch * g.c_in * g.hw_in());
    let wt = values(seed ^ 1, g.c_out * g.k_rows());
    let dy = vec![0.0; g.batch * g.c_out * g.hw_out()];
    let [want, _, _] = reference(g, &x, &wt, &dy);
    max_err(&f64s(&forward(&f32s(&x), &f32s(&wt))), &want)
}

/// Relative error of [`crate::grad_input::grad_input`] (which takes the transposed, direct path
/// where it applies) against the col2im path in f32, for `dy` and weights drawn from `seed`.
pub(crate) fn input_gradient_error(g: &ConvGeometry, seed: u64) -> f64 {
    let dy = f32s(&values(seed, g.batch * g.c_out * g.hw_out()));
    let wt = f32s(&values(seed ^ 3, g.c_out * g.k_rows()));
    let want = grad_input_with(g, &dy, &wt, 1);
    max_err(
        &f64s(&crate::grad_input::grad_input(g, &dy, &wt)),
        &f64s(&want),
    )
}

/// `(y, dx, dw)` by direct loops over `y[n, o, i, j] = sum w[o, c, a, b] x[n, g cg + c, s i + a
/// - p, s j + b - p]` and its two adjoints.
pub(crate) fn reference(g: &ConvGeometry, x: &[f64], w: &[f64], dy: &[f64]) -> [Vec<f64>; 3] {
    let (cg, og) = (g.cg(), g.og());
    let mut y = vec![0.0; g.batch * g.c_out * g.hw_out()];
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for n in 0..g.batch {
        for o in 0..g.c_out {
            let grp = o / og;
            for i in 0..g.ho {
                for j in 0..g.wo {
                    let yi = ((n * g.c_out + o) * g.ho + i) * g.wo + j;
                    for c in 0..cg {
                        for a in 0..g.kh {
                            for b in 0..g.kw {
                                let ii = (g.stride * i + a) as isize - g.padding as isize;
                                let jj = (g.stride * j + b) as isize - g.padding as isize;
                                if ii < 0 || jj < 0 || ii as usize >= g.h || jj as usize >= g.w {
                                    continue;
                                }
                                let xi = ((n * g.c_in + grp * cg + c) * g.h + ii as usize) * g.w
                                    + jj as usize;
                                let wi = ((o * cg + c) * g.kh + a) * g.kw + b;
                                y[yi] += w[wi] * x[xi];
                                dx[xi] += w[wi] * dy[yi];
                                dw[wi] += dy[yi] * x[xi];
                            }
                        }
                    }
                }
            }
        }
    }
    [y, dx, dw]
}

pub(crate) fn max_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f64, |m, (p, q)| m.max((p - q).abs())) / scale
}

fn check(g: &ConvGeometry, seed: u64) {
    let x = values(seed, g.batch * g.c_in * g.hw_in());
    let w = values(seed + 1, g.c_out * g.k_rows());
    let dy = values(seed + 2, g.batch * g.c_out * g.hw_out());
    let [y, dx, dw] = reference(g, &x, &w, &dy);
    for images in 1..=g.batch + 1 {
        assert!(
            max_err(&forward_with(g, &x, &w, images), &y) < 1e-12,
            "y, {images} per GEMM, {g:?}"
        );
        assert!(
            max_err(&grad_input_with(g, &dy, &w, images), &dx) < 1e-12,
            "dx, {images} per GEMM, {g:?}"
        );
        assert!(
            max_err(&grad_weight_with(g, &x, &dy, images), &dw) < 1e-12,
            "dw, {images} per GEMM, {g:?}"
        );
        assert!(
            max_err(&grad_weight_whole(g, &x, &dy, images), &dw) < 1e-12,
            "dw, whole batch, {images} per GEMM, {g:?}"
        );
    }
    // f32 through the multi-image path against the same f64 reference.
    let (x32, w32, dy32) = (f32s(&x), f32s(&w), f32s(&dy));
    let images = g.batch.max(2);
    assert!(max_err(&f64s(&forward_with(g, &x32, &w32, images)), &y) < 1e-5);
    assert!(max_err(&f64s(&grad_input_with(g, &dy32, &w32, images)), &dx) < 1e-5);
    assert!(max_err(&f64s(&grad_weight_with(g, &x32, &dy32, images)), &dw) < 1e-5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Dense, grouped and pointwise layers on images of 1..6 pixels a side, batches 1..7,
    /// kernels 1/3/5, strides 1/2, paddings 0..=k/2+1.
    #[test]
    fn multi_image_gemms_match_direct_loops(
        n in 1usize..=7,
        (cg, og, groups) in prop_oneof![
            (1usize..=5, 1usize..=5, Just(1usize)),
            (1usize..=3, 1usize..=3, 2usize..=3),
        ],
        k in prop::sample::select(vec![1usize, 3, 3, 5]),
        stride in 1usize..=2,
        pad_raw in 0usize..=3,
        h in 1usize..=6,
        w in 1usize..=6,
        seed in 0u64..1000,
    ) {
        let pad = pad_raw.min(k / 2 + 1);
        prop_assume!(h + 2 * pad >= k && w + 2 * pad >= k);
        let g = ConvGeometry::new(&[n, cg * groups, h, w], &[og * groups, cg, k, k], pad, stride, groups).unwrap();
        check(&g, seed);
    }
}

/// The cases the UNet meets at the coarse meshes: 3x3 on 2^2, 4^2, 8^2 and 1x1 skips, batch 16,
/// which the automatic choice runs several images per GEMM.
#[test]
fn coarse_mesh_layers_take_the_multi_image_path_and_match() {
    for &(c_in, c_out, n, k, pad) in &[
        (8, 16, 2, 3, 1),
        (16, 8, 4, 3, 1),
        (4, 8, 8, 3, 1),
        (16, 8, 4, 1, 0),
    ] {
        let g = ConvGeometry::new(&[16, c_in, n, n], &[c_out, c_in, k, k], pad, 1, 1).unwrap();
        assert!(
            crate::batch::images_per_gemm(&g, 8, g.tile_bytes()) > 1,
            "{g:?}"
        );
        let x = values(3, 16 * c_in * n * n);
        let w = values(4, c_out * g.k_rows());
        let dy = values(5, 16 * c_out * g.hw_out());
        let [y, dx, dw] = reference(&g, &x, &w, &dy);
        assert!(max_err(&crate::forward::forward(&g, &x, &w), &y) < 1e-12);
        assert!(max_err(&crate::grad_input::grad_input(&g, &dy, &w), &dx) < 1e-12);
        assert!(max_err(&crate::grad_weight::grad_weight(&g, &x, &dy), &dw) < 1e-12);
    }
}

/// The weight gradient's partial sums added and transposed in blocks of 16 output channels by
/// 16 rows, and the whole batch's GEMM on all threads: output channels per group and `k_rows`
/// that are not multiples of 16, one and two groups, on pools of 1, 2 and 3 threads (as many
/// partial sums).
#[test]
fn weight_gradients_are_added_and_transposed_block_by_block() {
    for &(c_in, c_out, groups) in &[(8, 40, 1), (6, 40, 2), (2, 17, 1)] {
        let g = ConvGeometry::new(
            &[6, c_in, 2, 2],
            &[c_out, c_in / groups, 3, 3],
            1,
            1,
            groups,
        )
        .unwrap();
        let x = values(6, g.batch * c_in * g.hw_in());
        let dy = values(7, g.batch * c_out * g.hw_out());
        let w = vec![0.0; c_out * g.k_rows()];
        let [_, _, dw] = reference(&g, &x, &w, &dy);
        for threads in 1..=3 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for images in [1, 2] {
                let got = pool.install(|| grad_weight_with(&g, &x, &dy, images));
                assert!(
                    max_err(&got, &dw) < 1e-12,
                    "{threads} threads, {images} per GEMM, {g:?}"
                );
            }
            let got = pool.install(|| grad_weight_whole(&g, &x, &dy, 3));
            assert!(
                max_err(&got, &dw) < 1e-12,
                "{threads} threads, whole batch, {g:?}"
            );
        }
    }
}

/// [`crate::grad_weight::whole_batch`] on the paper UNet's layers at batch 16: the workers'
/// GEMMs into one `dW` where the weights outnumber the batch's pixels, partial sums elsewhere.
#[test]
fn the_whole_batch_takes_the_coarse_layers() {
    let layer = |c_in: usize, c_out: usize, n: usize, k: usize| {
        let g = ConvGeometry::new(&[16, c_in, n, n], &[c_out, c_in, k, k], k / 2, 1, 1).unwrap();
        let images = crate::batch::images_per_gemm(&g, 4, g.weight_grad_tile_bytes(4));
        crate::grad_weight::whole_batch(&g, 4, images)
    };
    assert!(layer(128, 128, 2, 3) && layer(256, 128, 2, 3) && layer(64, 64, 4, 3));
    assert!(layer(128, 64, 4, 3));
    // 1024 pixels against 288 weights per row; 1x1; 16^2 (one image per GEMM).
    assert!(!layer(32, 32, 8, 3) && !layer(128, 128, 2, 1) && !layer(128, 128, 16, 3));
}

/// [`grad_weight_whole`] gives the partial sums' weight gradient bit for bit (f32: `gemm` adds
/// each worker's complete sum to `dW`, as the partial sums are added), on pools of 1, 2 and 3
/// threads, for the coarse layers it runs.
#[test]
fn the_whole_batch_gives_the_partial_sums_bit_for_bit() {
    for &(c_in, c_out, n) in &[(32, 32, 2), (64, 16, 2), (32, 24, 4)] {
        let g = ConvGeometry::new(&[16, c_in, n, n], &[c_out, c_in, 3, 3], 1, 1, 1).unwrap();
        let x = f32s(&values(8, 16 * c_in * n * n));
        let dy = f32s(&values(9, 16 * c_out * n * n));
        for threads in 1..=3 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let images = crate::batch::images_per_gemm(&g, 4, g.weight_grad_tile_bytes(4));
                assert!(crate::grad_weight::whole_batch(&g, 4, images), "{g:?}");
                let whole = grad_weight_whole(&g, &x, &dy, images);
                let sums = grad_weight_with(&g, &x, &dy, images);
                assert!(
                    whole
                        .iter()
                        .map(|v| v.to_bits())
                        .eq(sums.iter().map(|v| v.to_bits())),
                    "{threads} threads, {g:?}"
                );
            });
        }
    }
}
