//! Stride-1 3x3 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, *Fast
//! Algorithms for Convolutional Neural Networks*, 2016, eqs. 7-8): every 2x2 tile of the output
//! of 001 eq. 1,
//!
//! `Y = A^T [ sum_c (G w[o, c] G^T) ⊙ (B^T d[c] B) ] A`,
//!
//! `d[c]` the 4x4 patch of input channel `c` under the tile (zeros outside the image), with
//!
//! ```text
//! B^T = | 1  0 -1  0 |   G = | 1    0    0   |   A^T = | 1  1  1  0 |
//!       | 0  1  1  0 |       | 1/2  1/2  1/2 |         | 0  1 -1 -1 |
//!       | 0 -1  1  0 |       | 1/2 -1/2  1/2 |
//!       | 0  1  0 -1 |       | 0    0    1   |
//! ```
//!
//! The sum over `c` is, for each of the 16 positions `xi` of the 4x4 transformed tile, one GEMM
//! `M[xi] = U[xi] V[xi]`, `U[xi]` (`C_out x C_in`) the transformed weights and `V[xi]`
//! (`C_in x tiles`) the transformed patches: 16 multiply-adds per 4 output pixels and input
//! channel instead of 36, 2.25x fewer. The transforms cost `O(C (tiles))` against the GEMMs'
//! `O(C_out C_in tiles)`, so the layer needs enough channels to pay ([`applies`]).
//!
//! The weight gradient runs the transposed algorithm F(3x3, 2x2) ([`grad_weight`]).
//!
//! Taken in f32 for 3x3 stride-1 layers without groups where the direct kernels
//! ([`crate::direct`], [`crate::direct_coarse`], [`crate::direct_weight`]) do not apply; f64
//! (the tests' references) keeps the exact im2col path. The transforms round differently from
//! the direct sum: the result agrees with 001 eq. 1 to float tolerance, not bit for bit.

use crate::batch::{for_each_chunk, sum_over_chunks};
use crate::elem::Elem;
use crate::geometry::ConvGeometry;
use crate::matmul::{matmul, Mat, MatMut};
use std::ops::Range;

/// Positions of the transformed 4x4 tile: one GEMM each.
const POSITIONS: usize = 16;
/// Fewest input and output channels: below, the transforms cost more than the GEMMs save
/// (`docs/performance.md`, "Winograd F(2x2, 3x3)").
const MIN_CHANNELS: usize = 64;
/// Fewest output pixels per image: at 4^2 and 2^2 a tile is mostly padding and the GEMMs get
/// a few columns per image (the paper UNet's step at 8^2, whose 64- and 128-channel layers run
/// at 4^2 and 2^2, took 86 ms this way against 70 ms on the im2col path).
const MIN_PIXELS: usize = 64;
/// Fewest tiles per task, the columns of its 16 GEMMs: below, they are too small to beat one
/// im2col GEMM. On the AMD EPYC (AVX2), two threads, fwd+bwd against the GEMM path: 128 -> 128
/// at 8^2 took 1.24x its time with 16 tiles per task (batch 2), 0.98x with 32 (batch 4) and
/// 0.71x with 128 (batch 16, `bench conv`'s pairs); 64 -> 64 at 8^2 1.10x with 32, 0.94x with
/// 64 and 0.81x with 128; 64 -> 64 and 128 -> 128 at 16^2 with 64 (batch 2) 0.94x and 0.79x
/// (`docs/performance.md`, "Winograd on small meshes, vectorised").
const MIN_TILES: usize = 64;
/// Transformed tiles of one unit of work (`V` and `M`, or `V` and `D`), bytes: `16 (C_in +
/// C_out)` floats per tile. One position's GEMM operands, a sixteenth of it, stay in a core's L2.
const UNIT_BYTES: usize = 4096 * 1024;
/// Tiles per GEMM the work aims for: small images are taken several at a time.
const TARGET_TILES: usize = 256;

/// Whether [`forward`] runs `g`: [`computes`], at least [`MIN_CHANNELS`] input and output
/// channels, [`MIN_PIXELS`] output pixels and [`MIN_TILES`] tiles per task on the current rayon
/// pool.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    computes(g) && large_enough(g.c_in, g.c_out, g.hw_out(), Tiles::of(g).per_task(g.batch))
}

/// The size conditions of [`applies`].
fn large_enough(c_in: usize, c_out: usize, pixels: usize, tiles_per_task: usize) -> bool {
    c_in >= MIN_CHANNELS
        && c_out >= MIN_CHANNELS
        && pixels >= MIN_PIXELS
        && tiles_per_task >= MIN_TILES
}

/// Whether F(2x2, 3x3) computes `g` at all: a 3x3 kernel, stride 1, no groups, a non-empty
/// output.
fn computes(g: &ConvGeometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.stride == 1 && g.groups == 1 && g.batch > 0 && g.hw_out() > 0
}

/// The forward convolution of `g` (contiguous `x: [N, C_in, H, W]`, `w: [C_out, C_in, 3, 3]`)
/// into a fresh `[N, C_out, ho, wo]`; call only when [`applies`]`(g)`.
pub(crate) fn forward(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
    forward_with(g, x, w, UNIT_BYTES)
}

/// [`forward`] with units of work of at most `unit_bytes` of transformed tiles and products (at
/// least one row of tiles).
fn forward_with(g: &ConvGeometry, x: &[f32], w: &[f32], unit_bytes: usize) -> Vec<f32> {
    assert!(computes(g), "Winograd convolution called for {g:?}");
    assert!(x.len() == g.batch * g.c_in * g.hw_in() && w.len() == g.c_out * g.k_rows());
    let u = transform_weights(g, w);
    let tiles = Tiles::of(g);
    let (unit_rows, images) = tiles.work(g, unit_bytes);
    let (xs, ys) = (g.c_in * g.hw_in(), g.c_out * g.hw_out());
    let mut y = vec![0f32; g.batch * ys];
    for_each_chunk(&mut y, ys, images, |n0, yc, par| {
        let count = yc.len() / ys;
        let xc = &x[n0 * xs..][..count * xs];
        let rows = count * tiles.rows;
        let most = unit_rows.min(rows) * tiles.cols;
        f32::with_scratch(POSITIONS * (g.c_in + g.c_out) * most, |buf| {
            for r0 in (0..rows).step_by(unit_rows) {
                let unit = r0..rows.min(r0 + unit_rows);
                let nt = unit.len() * tiles.cols;
                let (v, m) = buf[..POSITIONS * (g.c_in + g.c_out) * nt]
                    .split_at_mut(POSITIONS * g.c_in * nt);
                input_tiles(g, &tiles, xc, unit.clone(), v);
                let (co, ci) = (g.c_out, g.c_in);
                for xi in 0..POSITIONS {
                    matmul(
                        MatMut::rm(&mut m[xi * co * nt..][..co * nt], co, nt, nt),
                        Mat::rm(&u[xi * co * ci..][..co * ci], co, ci, ci),
                        Mat::rm(&v[xi * ci * nt..][..ci * nt], ci, nt, nt),
                        false,
                        par,
                    );
                }
                output_tiles(g, &tiles, m, unit, yc);
            }
        });
    });
    y
}

/// The weight gradient `dw[o, c, a, b] = sum_{n, i, j} dy[n, o, i, j] xp[n, c, i + a, j + b]`
/// (the adjoint of 001 eq. 1 in `w`) of `g` as a fresh `[C_out, C_in, 3, 3]`, by F(3x3, 2x2), the
/// transpose of the forward's algorithm: each 2x2 tile of `dy` is the filter of a 3x3 output,
///
/// `dw[o, c] = G^T [ sum_{n, t} (A dy_t[o] A^T) ⊙ (B^T d_t[c] B) ] G`,
///
/// (from `sum_t <dy_t, Y_t> = sum_t <w, G^T [(A dy_t A^T) ⊙ (B^T d_t B)] G>` with `Y_t` the
/// forward's tile), the sum over tiles one GEMM per position: 16 multiply-adds per tile and
/// pair of channels instead of 36. Call only when [`applies`]`(g)`.
pub(crate) fn grad_weight(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    grad_weight_with(g, x, dy, UNIT_BYTES)
}

/// [`grad_weight`] with units of work of at most `unit_bytes` of transformed tiles (at least one
/// row of tiles).
fn grad_weight_with(g: &ConvGeometry, x: &[f32], dy: &[f32], unit_bytes: usize) -> Vec<f32> {
    assert!(computes(g), "Winograd weight gradient called for {g:?}");
    assert!(x.len() == g.batch * g.c_in * g.hw_in() && dy.len() == g.batch * g.c_out * g.hw_out());
    let (co, ci) = (g.c_out, g.c_in);
    let tiles = Tiles::of(g);
    let (unit_rows, images) = tiles.work(g, unit_bytes);
    let (xs, ys) = (ci * g.hw_in(), co * g.hw_out());
    // M[xi][o][c] = sum over tiles of D[xi][o][t] V[xi][c][t], per worker, then summed.
    let m = sum_over_chunks(
        g.batch,
        images,
        POSITIONS * co * ci,
        |n0, count, acc, par| {
            let (xc, dyc) = (&x[n0 * xs..][..count * xs], &dy[n0 * ys..][..count * ys]);
            let rows = count * tiles.rows;
            let most = unit_rows.min(rows) * tiles.cols;
            f32::with_scratch(POSITIONS * (ci + co) * most, |buf| {
                for r0 in (0..rows).step_by(unit_rows) {
                    let unit = r0..rows.min(r0 + unit_rows);
                    let nt = unit.len() * tiles.cols;
                    let (v, d) =
                        buf[..POSITIONS * (ci + co) * nt].split_at_mut(POSITIONS * ci * nt);
                    input_tiles(g, &tiles, xc, unit.clone(), v);
                    gradient_tiles(g, &tiles, dyc, unit, d);
                    for xi in 0..POSITIONS {
                        matmul(
                            MatMut::rm(&mut acc[xi * co * ci..][..co * ci], co, ci, ci),
                            Mat::rm(&d[xi * co * nt..][..co * nt], co, nt, nt),
                            Mat::rm(&v[xi * ci * nt..][..ci * nt], ci, nt, nt).t(),
                            true,
                            par,
                        );
                    }
                }
            });
        },
    );
    // dw[o, c] = G^T M[.][o][c] G: rows, then columns.
    let gt = |q: [f32; 4]| {
        [
            q[0] + 0.5 * (q[1] + q[2]),
            0.5 * (q[1] - q[2]),
            0.5 * (q[1] + q[2]) + q[3],
        ]
    };
    let mut dw = vec![0f32; co * ci * 9];
    for (oc, out) in dw.chunks_exact_mut(9).enumerate() {
        let mm: [[f32; 4]; 4] =
            std::array::from_fn(|r| std::array::from_fn(|s| m[(4 * r + s) * co * ci + oc]));
        let h: [[f32; 4]; 3] = {
            let cols: [[f32; 3]; 4] =
                std::array::from_fn(|s| gt([mm[0][s], mm[1][s], mm[2][s], mm[3][s]]));
            std::array::from_fn(|a| std::array::from_fn(|s| cols[s][a]))
        };
        for (a, row) in h.into_iter().enumerate() {
            out[3 * a..3 * a + 3].copy_from_slice(&gt(row));
        }
    }
    dw
}

/// `fn $name(args)`: `$body(args)` compiled for the widest vector level this CPU runs (AVX-512F,
/// else AVX2 with FMA). `$body` is `#[inline(always)]` and inlines into a `#[target_feature]`
/// function, so that its loops over the tiles of a row vectorise at that width; the crate itself
/// is built for baseline x86-64 (SSE2).
macro_rules! at_best_level {
    ($name:ident => $body:ident($($arg:ident: $ty:ty),*)) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU runs AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU runs AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

at_best_level!(input_tiles => transform_input(
    g: &ConvGeometry, tiles: &Tiles, x: &[f32], unit: Range<usize>, v: &mut [f32]
));
at_best_level!(gradient_tiles => transform_gradient(
    g: &ConvGeometry, tiles: &Tiles, dy: &[f32], unit: Range<usize>, d: &mut [f32]
));
at_best_level!(output_tiles => transform_output(
    g: &ConvGeometry, tiles: &Tiles, m: &[f32], unit: Range<usize>, y: &mut [f32]
));

/// The output's 2x2 tiles: `rows x cols` per image; the rows of a chunk of images are numbered
/// image by image, and a unit of work is a range of them.
struct Tiles {
    rows: usize,
    cols: usize,
}

impl Tiles {
    fn of(g: &ConvGeometry) -> Self {
        Tiles {
            rows: g.ho.div_ceil(2),
            cols: g.wo.div_ceil(2),
        }
    }

    fn per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// Images per task of a batch of `batch`: several small images, so that a GEMM gets about
    /// [`TARGET_TILES`] columns, while every thread of the current rayon pool still gets a task.
    fn images_per_task(&self, batch: usize) -> usize {
        let threads = rayon::current_num_threads().max(1);
        TARGET_TILES
            .div_ceil(self.per_image())
            .min(batch.div_ceil(threads))
            .max(1)
    }

    /// Tiles per task of a batch of `batch`.
    fn per_task(&self, batch: usize) -> usize {
        self.images_per_task(batch) * self.per_image()
    }

    /// `(rows of tiles per unit of work, images per task)`: units whose transformed tiles fit
    /// `unit_bytes` (at least one row), and [`Self::images_per_task`].
    fn work(&self, g: &ConvGeometry, unit_bytes: usize) -> (usize, usize) {
        let per_tile = POSITIONS * (g.c_in + g.c_out) * std::mem::size_of::<f32>();
        let unit_rows = (unit_bytes / (per_tile * self.cols)).max(1);
        (unit_rows, self.images_per_task(g.batch))
    }
}

/// `U[xi][o][c] = (G w[o, c] G^T)[xi]` (Lavin and Gray eq. 8).
fn transform_weights(g: &ConvGeometry, w: &[f32]) -> Vec<f32> {
    let (co, ci) = (g.c_out, g.c_in);
    let mut u = vec![0f32; POSITIONS * co * ci];
    for (oc, k) in w.chunks_exact(9).enumerate() {
        // G k (4x3), then (G k) G^T (4x4).
        let mut h = [[0f32; 3]; 4];
        for b in 0..3 {
            let (k0, k1, k2) = (k[b], k[3 + b], k[6 + b]);
            h[0][b] = k0;
            h[1][b] = 0.5 * (k0 + k1 + k2);
            h[2][b] = 0.5 * (k0 - k1 + k2);
            h[3][b] = k2;
        }
        for (r, row) in h.iter().enumerate() {
            let t = [
                row[0],
                0.5 * (row[0] + row[1] + row[2]),
                0.5 * (row[0] - row[1] + row[2]),
                row[2],
            ];
            for (s, v) in t.into_iter().enumerate() {
                u[(r * 4 + s) * co * ci + oc] = v;
            }
        }
    }
    u
}

/// `std::array::from_fn` for `N >= 1`, always inlined, so that the transforms' small arrays of
/// `L` tiles stay in vector registers (`from_fn` itself was left out of line for 4 tiles).
#[inline(always)]
fn array<T: Copy, const N: usize>(mut f: impl FnMut(usize) -> T) -> [T; N] {
    let mut out = [f(0); N];
    for (k, o) in out.iter_mut().enumerate().skip(1) {
        *o = f(k);
    }
    out
}

/// Tiles per vector step of the transforms: one AVX2 register of f32 per value of the tiles.
const STEP: usize = 8;
/// The shorter vector step of rows of fewer tiles left (at 8^2, a row has 4 tiles): one SSE
/// register.
const HALF_STEP: usize = 4;

/// `V[xi][c][t] = (B^T d[c] B)[xi]` for the tiles `t` of the rows of tiles `unit` of the chunk
/// `x` (images of `C_in` planes), `d[c]` the 4x4 input patch whose top-left pixel is `(2i - p,
/// 2j - p)` for the tile's first output pixel `(2i, 2j)`, zeros outside the image. The four
/// input rows under a row of tiles are first split, zero-padded, into their even and odd
/// columns: column `b` of tile `k`'s patch is then entry `k` of one of 4 contiguous slices per
/// row, and [`STEP`] (or [`HALF_STEP`]) tiles at a time transform as vectors.
#[inline(always)]
fn transform_input(g: &ConvGeometry, tiles: &Tiles, x: &[f32], unit: Range<usize>, v: &mut [f32]) {
    let (hw, p, cols) = (g.hw_in(), g.padding, tiles.cols);
    let nt = unit.len() * cols;
    let half = cols + 1;
    let mut split = vec![0f32; 4 * 2 * half];
    let mut positions: Vec<&mut [f32]> = v.chunks_exact_mut(g.c_in * nt).collect();
    for c in 0..g.c_in {
        for (q, tile_row) in unit.clone().enumerate() {
            let (n, i) = (tile_row / tiles.rows, tile_row % tiles.rows);
            let plane = &x[(n * g.c_in + c) * hw..][..hw];
            // Columns `-p ..`: the image's rows land at `p` (`p + w <= 2 cols + 2`).
            let top = (2 * i).wrapping_sub(p);
            split_rows(plane, (g.h, g.w), top, p, half, &mut split);
            // d[a][b][k]: row a, column b of tile k's patch (columns 2k + b).
            let d: [[&[f32]; 4]; 4] = array(|a| {
                let (even, odd) = split[a * 2 * half..][..2 * half].split_at(half);
                [&even[..cols], &odd[..cols], &even[1..], &odd[1..]]
            });
            scatter::<InputTile, 4, 4>(&d, cols, &mut positions, c * nt + q * cols);
        }
    }
}

/// Rows `top + a` of the `h x w` `plane` (rows outside it, `top` wrapped below 0 included,
/// read as zeros), each placed at column `left` of a row of zeros and split into its even
/// columns (the first half of the `a`-th chunk of `2 half` entries of `split`) and its odd ones
/// (the second half). The entries that no column of the image reaches are not written: `split`
/// starts zeroed and they stay zero, so that a row of a few pixels costs a few moves.
#[inline(always)]
fn split_rows(
    plane: &[f32],
    (h, w): (usize, usize),
    top: usize,
    left: usize,
    half: usize,
    split: &mut [f32],
) {
    for (a, halves) in split.chunks_exact_mut(2 * half).enumerate() {
        let r = top.wrapping_add(a);
        if r >= h {
            halves.fill(0.0);
            continue;
        }
        let src = &plane[r * w..][..w];
        let (even, odd) = halves.split_at_mut(half);
        // Column j of the image is column left + j of the row: pair (2m, 2m + 1) of the image
        // lands at entry m + left / 2 of (even, odd) for an even `left`, and at entries
        // m + left / 2 of odd and m + left / 2 + 1 of even for an odd one.
        let k = left / 2;
        let (first, second) = if left.is_multiple_of(2) {
            (&mut even[k..], &mut odd[k..])
        } else {
            (&mut odd[k..], &mut even[k + 1..])
        };
        for ((f, s), pair) in first
            .iter_mut()
            .zip(second.iter_mut())
            .zip(src.chunks_exact(2))
        {
            (*f, *s) = (pair[0], pair[1]);
        }
        if w % 2 == 1 {
            first[w / 2] = src[w - 1];
        }
    }
}

/// A transform of `R x C` blocks into the 16 positions of a 4x4 tile, for `L` tiles at once.
trait TileTransform<const R: usize, const C: usize> {
    fn apply<const L: usize>(block: &[[[f32; L]; C]; R]) -> [[f32; L]; POSITIONS];
}

/// `B^T d B` of a 4x4 input patch ([`input_tile`]).
struct InputTile;

impl TileTransform<4, 4> for InputTile {
    #[inline(always)]
    fn apply<const L: usize>(d: &[[[f32; L]; 4]; 4]) -> [[f32; L]; POSITIONS] {
        input_tile(d)
    }
}

/// `A dy A^T` of a 2x2 block of `dy` ([`gradient_tile`]).
struct GradientTile;

impl TileTransform<2, 2> for GradientTile {
    #[inline(always)]
    fn apply<const L: usize>(dy: &[[[f32; L]; 2]; 2]) -> [[f32; L]; POSITIONS] {
        gradient_tile(dy)
    }
}

/// `positions[xi][base + k] = T(block of tile k)[xi]` for the tiles `k < cols` of a row, whose
/// blocks are `src[a][b][k]`: [`STEP`] tiles at a time as vectors, then [`HALF_STEP`], then the
/// rest one by one.
#[inline(always)]
fn scatter<T: TileTransform<R, C>, const R: usize, const C: usize>(
    src: &[[&[f32]; C]; R],
    cols: usize,
    positions: &mut [&mut [f32]],
    base: usize,
) {
    let mut k0 = 0;
    while cols - k0 >= STEP {
        scatter_step::<T, R, C, STEP>(src, k0, positions, base);
        k0 += STEP;
    }
    if cols - k0 >= HALF_STEP {
        scatter_step::<T, R, C, HALF_STEP>(src, k0, positions, base);
        k0 += HALF_STEP;
    }
    for k in k0..cols {
        scatter_step::<T, R, C, 1>(src, k, positions, base);
    }
}

/// [`scatter`] for the `L` tiles `k0..k0 + L`.
#[inline(always)]
fn scatter_step<T: TileTransform<R, C>, const R: usize, const C: usize, const L: usize>(
    src: &[[&[f32]; C]; R],
    k0: usize,
    positions: &mut [&mut [f32]],
    base: usize,
) {
    let block: [[[f32; L]; C]; R] = array(|a| {
        array(|b| {
            let s = &src[a][b][k0..k0 + L];
            array(|l| s[l])
        })
    });
    for (xi, val) in T::apply(&block).iter().enumerate() {
        positions[xi][base + k0..][..L].copy_from_slice(val);
    }
}

/// `B^T d B` for `L` tiles at once: `d[a][b]` holds entry `(a, b)` of every tile's patch.
#[inline(always)]
fn input_tile<const L: usize>(d: &[[[f32; L]; 4]; 4]) -> [[f32; L]; POSITIONS] {
    let sub = |x: &[f32; L], y: &[f32; L]| -> [f32; L] { array(|l| x[l] - y[l]) };
    let add = |x: &[f32; L], y: &[f32; L]| -> [f32; L] { array(|l| x[l] + y[l]) };
    // B^T d: e[r][b].
    let e: [[[f32; L]; 4]; 4] = [
        array(|b| sub(&d[0][b], &d[2][b])),
        array(|b| add(&d[1][b], &d[2][b])),
        array(|b| sub(&d[2][b], &d[1][b])),
        array(|b| sub(&d[1][b], &d[3][b])),
    ];
    // (B^T d) B: position 4 r + s.
    array(|xi| {
        let (r, s) = (xi / 4, xi % 4);
        let e = &e[r];
        match s {
            0 => sub(&e[0], &e[2]),
            1 => add(&e[1], &e[2]),
            2 => sub(&e[2], &e[1]),
            _ => sub(&e[1], &e[3]),
        }
    })
}

/// `D[xi][o][t] = (A dy_t[o] A^T)[xi]` for the tiles `t` of the rows of tiles `unit` of the
/// chunk `dy` (images of `C_out` planes), `dy_t[o]` the 2x2 block of `dy[o]` at the tile, zeros
/// outside the output. The two rows of `dy` under a row of tiles are split into their even and
/// odd columns, and [`STEP`] (or [`HALF_STEP`]) tiles at a time transform as vectors.
#[inline(always)]
fn transform_gradient(
    g: &ConvGeometry,
    tiles: &Tiles,
    dy: &[f32],
    unit: Range<usize>,
    d: &mut [f32],
) {
    let (hw, cols) = (g.hw_out(), tiles.cols);
    let nt = unit.len() * cols;
    let mut split = vec![0f32; 2 * 2 * cols];
    let mut positions: Vec<&mut [f32]> = d.chunks_exact_mut(g.c_out * nt).collect();
    for o in 0..g.c_out {
        for (q, tile_row) in unit.clone().enumerate() {
            let (n, i) = (tile_row / tiles.rows, tile_row % tiles.rows);
            let plane = &dy[(n * g.c_out + o) * hw..][..hw];
            split_rows(plane, (g.ho, g.wo), 2 * i, 0, cols, &mut split);
            // t[a][b][k]: entry (a, b) of tile k's block of dy.
            let t: [[&[f32]; 2]; 2] = array(|a| {
                let (even, odd) = split[a * 2 * cols..][..2 * cols].split_at(cols);
                [even, odd]
            });
            scatter::<GradientTile, 2, 2>(&t, cols, &mut positions, o * nt + q * cols);
        }
    }
}

/// `A dy A^T` for `L` tiles at once: `dy[a][b]` holds entry `(a, b)` of every tile's 2x2 block;
/// `A = [1 0; 1 1; 1 -1; 0 -1]`.
#[inline(always)]
fn gradient_tile<const L: usize>(dy: &[[[f32; L]; 2]; 2]) -> [[f32; L]; POSITIONS] {
    // A u for a pair u = (u0, u1): (u0, u0 + u1, u0 - u1, -u1).
    let a = |u0: &[f32; L], u1: &[f32; L]| -> [[f32; L]; 4] {
        [
            *u0,
            array(|l| u0[l] + u1[l]),
            array(|l| u0[l] - u1[l]),
            array(|l| -u1[l]),
        ]
    };
    // A dy (rows): e[r][b]; then (A dy) A^T (columns): position 4 r + s.
    let e: [[[f32; L]; 4]; 2] = [a(&dy[0][0], &dy[1][0]), a(&dy[0][1], &dy[1][1])];
    array(|xi| {
        let (r, s) = (xi / 4, xi % 4);
        a(&e[0][r], &e[1][r])[s]
    })
}

/// `y[o]` on the rows of tiles `unit` of the chunk `y` (images of `C_out` planes) from the
/// products `M[xi][o][t]`: `A^T M A`, [`STEP`] (or [`HALF_STEP`]) tiles at a time, the pixels
/// inside the output.
#[inline(always)]
fn transform_output(g: &ConvGeometry, tiles: &Tiles, m: &[f32], unit: Range<usize>, y: &mut [f32]) {
    let (ho, wo, hw, cols) = (g.ho, g.wo, g.hw_out(), tiles.cols);
    let nt = unit.len() * cols;
    let stride = g.c_out * nt;
    let mut pair = vec![0f32; 2 * 2 * cols];
    for o in 0..g.c_out {
        for (q, tile_row) in unit.clone().enumerate() {
            let (n, i) = (tile_row / tiles.rows, tile_row % tiles.rows);
            let base = o * nt + q * cols;
            let mv: [&[f32]; POSITIONS] = array(|xi| &m[xi * stride + base..][..cols]);
            let (top, bottom) = pair.split_at_mut(2 * cols);
            let mut k0 = 0;
            while cols - k0 >= STEP {
                output_step::<STEP>(&mv, k0, top, bottom);
                k0 += STEP;
            }
            if cols - k0 >= HALF_STEP {
                output_step::<HALF_STEP>(&mv, k0, top, bottom);
                k0 += HALF_STEP;
            }
            for k in k0..cols {
                output_step::<1>(&mv, k, top, bottom);
            }
            let plane = &mut y[(n * g.c_out + o) * hw..][..hw];
            for (r, src) in [&*top, &*bottom].into_iter().enumerate() {
                if 2 * i + r < ho {
                    plane[(2 * i + r) * wo..][..wo].copy_from_slice(&src[..wo]);
                }
            }
        }
    }
}

/// The output pixels of the `L` tiles `k0..k0 + L` of a row from their products `mv[xi]`: the
/// top row of pixel pairs into `top`, the bottom one into `bottom` (columns `2 k, 2 k + 1`).
#[inline(always)]
fn output_step<const L: usize>(
    mv: &[&[f32]; POSITIONS],
    k0: usize,
    top: &mut [f32],
    bottom: &mut [f32],
) {
    let mk: [[f32; L]; POSITIONS] = array(|xi| {
        let s = &mv[xi][k0..k0 + L];
        array(|l| s[l])
    });
    let [t0, t1, b0, b1] = output_tile(&mk);
    for l in 0..L {
        let j = 2 * (k0 + l);
        (top[j], top[j + 1], bottom[j], bottom[j + 1]) = (t0[l], t1[l], b0[l], b1[l]);
    }
}

/// `A^T M A` for `L` tiles at once: the output pixels `(0, 0), (0, 1), (1, 0), (1, 1)` of every
/// tile, from `m[xi]` (position `xi` of every tile).
#[inline(always)]
fn output_tile<const L: usize>(m: &[[f32; L]; POSITIONS]) -> [[f32; L]; 4] {
    // A^T M (2x4): z[r][s].
    let z0: [[f32; L]; 4] = array(|s| array(|l| m[s][l] + m[4 + s][l] + m[8 + s][l]));
    let z1: [[f32; L]; 4] = array(|s| array(|l| m[4 + s][l] - m[8 + s][l] - m[12 + s][l]));
    // (A^T M) A (2x2).
    let even = |z: &[[f32; L]; 4]| -> [f32; L] { array(|l| z[0][l] + z[1][l] + z[2][l]) };
    let odd = |z: &[[f32; L]; 4]| -> [f32; L] { array(|l| z[1][l] - z[2][l] - z[3][l]) };
    [even(&z0), odd(&z0), even(&z1), odd(&z1)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_tests::{f32s, f64s, forward_error, max_err, reference, values};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// F(2x2, 3x3) and its transpose F(3x3, 2x2) in f32 against the f64 loops of 001 eq. 1
        /// and of its adjoint in `w` (relative 1e-5): odd and even sizes (tiles cut by the
        /// border; rows of up to 12 tiles, vector steps of 8 and 4 and the rest), paddings 0..2,
        /// images of 1 pixel up, 1..32 channels (the kernels compute any; [`applies`] takes
        /// them from 64), batches 1..5, units of one row of tiles up to whole chunks of images.
        #[test]
        fn winograd_matches_the_defining_loops(
            n in 1usize..5, c_in in 1usize..32, c_out in 1usize..32, h in 1usize..14,
            w in 1usize..24, padding in 0usize..3,
            unit in prop_oneof![Just(1usize), Just(20_000), Just(UNIT_BYTES)],
            seed in any::<u64>(),
        ) {
            let Ok(g) = ConvGeometry::new(&[n, c_in, h, w], &[c_out, c_in, 3, 3], padding, 1, 1)
            else {
                return Ok(());
            };
            prop_assume!(g.hw_out() > 0);
            prop_assert!(computes(&g));
            prop_assert_eq!(
                applies(&g),
                large_enough(c_in, c_out, g.hw_out(), Tiles::of(&g).per_task(n))
            );
            let err = forward_error(&g, seed, |x, w| forward_with(&g, x, w, unit));
            prop_assert!(err < 1e-5, "forward: relative error {err} for {g:?}");
            let x = values(seed, n * g.c_in * g.hw_in());
            let dy = values(seed ^ 5, n * g.c_out * g.hw_out());
            let [_, _, want] = reference(&g, &x, &vec![0.0; g.c_out * g.k_rows()], &dy);
            let got = f64s(&grad_weight_with(&g, &f32s(&x), &f32s(&dy), unit));
            let err = max_err(&got, &want);
            prop_assert!(err < 1e-5, "weight gradient: relative error {err} for {g:?}");
        }
    }

    /// The dispatch runs it for a 128-channel layer on a mesh that no direct kernel takes (70
    /// tiles per image, rows of 7: a vector step of 4 and 3 single tiles): the forward and the
    /// weight gradient match the f64 loops, and the input gradient, `conv2d(dy, W')` through
    /// [`crate::transposed`], the col2im path (relative 1e-5).
    #[test]
    fn layers_of_128_channels_run_it_forward_and_backward() {
        use crate::elem::Elem;
        let g = ConvGeometry::new(&[2, 128, 19, 13], &[128, 128, 3, 3], 1, 1, 1).unwrap();
        assert!(applies(&g) && f32::has_direct(&g, crate::Policy::Fastest));
        let err = forward_error(&g, 7, |x, w| f32::direct_forward(&g, x, w).unwrap());
        assert!(err < 1e-5, "relative error {err}");
        let err = crate::chunk_tests::input_gradient_error(&g, 8);
        assert!(err < 1e-5, "relative error {err}");
        let (x, dy) = (values(9, 2 * 128 * 247), values(10, 2 * 128 * 247));
        let [_, _, want] = reference(&g, &x, &vec![0.0; 128 * 128 * 9], &dy);
        let got = f32::direct_grad_weight(&g, &f32s(&x), &f32s(&dy)).unwrap();
        let err = max_err(&f64s(&got), &want);
        assert!(err < 1e-5, "relative error {err}");
    }

    /// Other kernels, strides, groups, layers of fewer than 64 input or output channels and
    /// tasks of fewer than 64 tiles keep their paths (on two threads: two tasks from batch 2).
    #[test]
    fn which_layers_take_winograd() {
        type Layer = (usize, (usize, usize), usize, usize, usize, usize);
        // (batch, (C_in, C_out), kernel side, stride, groups, mesh n).
        let layer = |(batch, (c_in, c_out), k, stride, groups, n): Layer| {
            ConvGeometry::new(
                &[batch, c_in, n, n],
                &[c_out, c_in / groups, k, k],
                k / 2,
                stride,
                groups,
            )
            .unwrap()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            // 8^2: 16 tiles per image; 16^2: 64.
            for g in [
                layer((16, (128, 128), 3, 1, 1, 8)),
                layer((16, (64, 64), 3, 1, 1, 8)),
                layer((8, (192, 64), 3, 1, 1, 8)),
                layer((16, (128, 256), 3, 1, 1, 8)),
                layer((2, (128, 128), 3, 1, 1, 16)),
            ] {
                assert!(applies(&g), "{g:?}");
            }
            for g in [
                // Under MIN_TILES: tasks of 2 and 1 images of 16 tiles.
                layer((4, (128, 128), 3, 1, 1, 8)),
                layer((2, (128, 128), 3, 1, 1, 8)),
                layer((16, (128, 128), 5, 1, 1, 8)),
                layer((16, (128, 128), 1, 1, 1, 8)),
                layer((16, (128, 128), 3, 2, 1, 8)),
                layer((16, (256, 256), 3, 1, 2, 8)),
                layer((16, (32, 256), 3, 1, 1, 8)),
                layer((16, (96, 32), 3, 1, 1, 8)),
                layer((16, (128, 3), 3, 1, 1, 8)),
                // Under MIN_PIXELS, though with 16 images of 4 tiles per task.
                layer((32, (256, 128), 3, 1, 1, 4)),
            ] {
                assert!(!applies(&g), "{g:?}");
            }
        });
    }
}
