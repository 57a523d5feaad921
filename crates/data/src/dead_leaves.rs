//! Dead-leaves images: random occluding disks with power-law radii on the periodic unit square
//! (Matheron's model; Lee, Mumford & Huang 2001; SPEC section 6).
//!
//! Image `index` is a continuous-domain function: a seeded list of disks, front to back, and the
//! value at a point is the colour of the first disk that contains it. Rendering on an `n x n`
//! mesh averages `s x s` evenly spaced sub-samples in each cell, so the image approximates the
//! cell average and a 2x2 average of the mesh-`n` image stays within `O(h)` (in the mean absolute
//! sense, since only the `O(1/h)` cells crossed by an edge differ) of the mesh-`n/2` image.
//!
//! The sub-samples are painted by the disks front to back, each disk testing the uncovered
//! sub-samples of the 32 x 32 buckets its bounding box touches; a disk whose buckets are all
//! covered costs one look at a bit mask. The images are those of a per-point scan of bucket
//! lists (the reference renderer of the tests) bit for bit.

use crate::source::{check_size, mix_seed, ImageSource};
use crate::Result;
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Side of the bucket grid that accelerates point location (one bit per bucket in a `u32`).
const BUCKETS: usize = 32;

/// Dead-leaves source: `disks` disks with centres uniform on `[0,1)^2`, radii with density
/// `p(r) ∝ r^-3` on `[r_min, r_max]` (the scale-invariant exponent), colours uniform in `[0,1]`
/// per channel; disk 0 is in front. Infinite (`len() == None`).
#[derive(Debug, Clone)]
pub struct DeadLeaves {
    seed: u64,
    channels: usize,
    r_min: f64,
    r_max: f64,
    disks: usize,
    subsamples: usize,
}

/// One image's disks, front to back: centre, squared radius, the buckets `[x, y]` that the
/// disk's bounding box touches along each axis (bit `b`: bucket `b`), and the palette.
struct Disks {
    centres: Vec<(f64, f64)>,
    radii2: Vec<f64>,
    reach: Vec<[u32; 2]>,
    /// The disks' colours, then the background's: entry `k` of the palette is
    /// `colours[k * channels..(k + 1) * channels]`, the background's `k` is the disk count.
    colours: Vec<f32>,
}

/// `floor(v)` for the finite values of the bucket spans, without the libm call (baseline x86-64
/// has no rounding instruction): truncation, one down for negative non-integers.
fn floor(v: f64) -> i64 {
    let t = v as i64;
    if (t as f64) > v {
        t - 1
    } else {
        t
    }
}

/// The buckets touched by `[v - r, v + r]` along one axis, wrapped periodically, as the bits
/// of a mask (bit `b`: bucket `b`; all of them when the range spans the square).
fn buckets_reached(v: f64, r: f64) -> u32 {
    let (lo, hi) = (
        floor((v - r) * BUCKETS as f64),
        floor((v + r) * BUCKETS as f64),
    );
    let len = hi - lo + 1;
    if len >= BUCKETS as i64 {
        u32::MAX
    } else {
        ((1u32 << len) - 1).rotate_left(lo.rem_euclid(BUCKETS as i64) as u32)
    }
}

impl DeadLeaves {
    /// Dead leaves with the defaults `r_min = 0.01`, `r_max = 0.25`, 4000 disks (uncovered area
    /// about `exp(-9)`), 4x4 sub-samples per pixel, one channel.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            channels: 1,
            r_min: 0.01,
            r_max: 0.25,
            disks: 4000,
            subsamples: 4,
        }
    }

    /// Sets the number of channels (1 = grey, 3 = colour); 0 is taken as 1.
    pub fn with_channels(mut self, channels: usize) -> Self {
        self.channels = channels.max(1);
        self
    }

    /// Sets the radius range `[r_min, r_max]` (unit-square lengths); `r_min` is kept positive
    /// and `r_max >= r_min`.
    pub fn with_radii(mut self, r_min: f64, r_max: f64) -> Self {
        self.r_min = r_min.max(1e-4);
        self.r_max = r_max.max(self.r_min);
        self
    }

    /// Sets the number of sub-samples per pixel side (1 = sample the pixel centre).
    pub fn with_subsamples(mut self, s: usize) -> Self {
        self.subsamples = s.max(1);
        self
    }

    /// Inverse CDF of `p(r) ∝ r^-3` on `[r_min, r_max]`:
    /// `r = (r_min^-2 - u (r_min^-2 - r_max^-2))^(-1/2)`.
    fn radius(&self, u: f64) -> f64 {
        let (a, b) = (self.r_min.powi(-2), self.r_max.powi(-2));
        (a - u * (a - b)).powf(-0.5)
    }

    fn disks(&self, index: u64) -> Disks {
        let mut rng = StdRng::seed_from_u64(mix_seed(self.seed, index));
        let c = self.channels;
        let background: Vec<f32> = (0..c).map(|_| rng.random::<f32>()).collect();
        let mut centres = Vec::with_capacity(self.disks);
        let mut radii2 = Vec::with_capacity(self.disks);
        let mut reach = Vec::with_capacity(self.disks);
        let mut colours = Vec::with_capacity((self.disks + 1) * c);
        for _ in 0..self.disks {
            let (x, y) = (rng.random::<f64>(), rng.random::<f64>());
            let r = self.radius(rng.random::<f64>());
            centres.push((x, y));
            radii2.push(r * r);
            reach.push([buckets_reached(x, r), buckets_reached(y, r)]);
            colours.extend((0..c).map(|_| rng.random::<f32>()));
        }
        colours.extend(background);
        Disks {
            centres,
            radii2,
            reach,
            colours,
        }
    }
}

/// `d - round(d)` (round half away from zero): the periodic difference. For |d| < 1, the only
/// case of points and centres in [0, 1), without the libm call and without a branch (`d - 0`,
/// `d - 1` or `d + 1`: the same result bit for bit), so that loops over it vectorise.
fn wrap(d: f64) -> f64 {
    let a = d.abs();
    if a < 1.0 {
        let shift = if a < 0.5 { 0.0 } else { 1f64.copysign(d) };
        d - shift
    } else {
        d - d.round()
    }
}

impl ImageSource for DeadLeaves {
    fn channels(&self) -> usize {
        self.channels
    }

    fn len(&self) -> Option<usize> {
        None
    }

    /// Pixel `(i, j)` is the mean over `a, b < s` of the value at
    /// `((j + (b + 1/2)/s) h, (i + (a + 1/2)/s) h)`, `h = 1/n`.
    fn image(&self, index: u64, n: usize) -> Result<Tensor> {
        check_size(n)?;
        let out = self.render(index, n, BAND_SAMPLES);
        Ok(Tensor::from_vec(out, (self.channels, n, n), &Device::Cpu)?)
    }
}

/// Sub-samples painted at once (16 MiB of palette entries): larger images go in bands of
/// bucket rows.
const BAND_SAMPLES: usize = 1 << 22;

/// The bucket of coordinate `v` along one axis (point `(x, y)` is in bucket
/// `bucket(y) * BUCKETS + bucket(x)`).
fn bucket(v: f64) -> usize {
    ((v * BUCKETS as f64) as usize).min(BUCKETS - 1)
}

/// The sub-sample coordinates along one axis, `(k + (a + 1/2)/s) h` for pixel `k` and
/// sub-sample `a` at index `k s + a`. They grow with the index, so the sub-samples in bucket
/// `b` are the index range `bounds[b]..bounds[b + 1]`.
struct Axis {
    coords: Vec<f64>,
    bounds: [usize; BUCKETS + 1],
}

impl Axis {
    fn new(n: usize, s: usize) -> Self {
        let h = 1.0 / n as f64;
        let coords: Vec<f64> = (0..n)
            .flat_map(|k| (0..s).map(move |a| (k as f64 + (a as f64 + 0.5) / s as f64) * h))
            .collect();
        let mut bounds = [0; BUCKETS + 1];
        let mut q = 0;
        for b in 0..BUCKETS {
            while q < coords.len() && bucket(coords[q]) <= b {
                q += 1;
            }
            bounds[b + 1] = q;
        }
        Self { coords, bounds }
    }

    fn range(&self, b: usize) -> std::ops::Range<usize> {
        self.bounds[b]..self.bounds[b + 1]
    }
}

impl DeadLeaves {
    /// The image as `c x n x n` values, painted in bands of whole bucket rows of at most
    /// `band_samples` sub-samples (at least one bucket row per band).
    fn render(&self, index: u64, n: usize, band_samples: usize) -> Vec<f32> {
        let disks = self.disks(index);
        let (c, s) = (self.channels, self.subsamples);
        let axis = Axis::new(n, s);
        let m = n * s;
        let weight = 1.0 / (s * s) as f32;
        let mut out = vec![0f32; c * n * n];
        let mut hits = Vec::new();
        let mut first = 0;
        while first < BUCKETS {
            let mut last = first + 1;
            while last < BUCKETS && (axis.bounds[last + 1] - axis.bounds[first]) * m <= band_samples
            {
                last += 1;
            }
            let rows = axis.bounds[first]..axis.bounds[last];
            disks.paint(&axis, first..last, &mut hits);
            // Each pixel sums its sub-samples in order (row a, then column b), as always, also
            // when a band ends inside a pixel; the pixels of a row are summed side by side.
            for (line, row) in hits.chunks(m).zip(rows) {
                let i = row / s;
                for ch in 0..c {
                    let sums = &mut out[(ch * n + i) * n..][..n];
                    for b in 0..s {
                        for (sum, &hit) in sums.iter_mut().zip(line[b..].iter().step_by(s)) {
                            *sum += disks.colours[hit as usize * c + ch] * weight;
                        }
                    }
                }
            }
            first = last;
        }
        out
    }
}

impl Disks {
    /// The palette entry of the front-most disk containing each sub-sample of the bucket rows
    /// `band` (periodic distance, `wrap(x - cx)^2 + wrap(y - cy)^2 < r^2`), or the background's,
    /// into `hits` (rows of `axis.coords.len()` sub-samples).
    ///
    /// A point only tests the disks whose bucket span holds its bucket, as a scan of a bucket
    /// list would; here the disks are taken front to back and paint the points still uncovered,
    /// so that every disk costs one look at the buckets it touches once they are covered.
    fn paint(&self, axis: &Axis, band: std::ops::Range<usize>, hits: &mut Vec<u32>) {
        let m = axis.coords.len();
        let row0 = axis.bounds[band.start];
        let background = self.centres.len() as u32;
        hits.clear();
        hits.resize((axis.bounds[band.end] - row0) * m, background);
        let mut left = [0usize; BUCKETS * BUCKETS];
        // Bit `bx` of `open[by]`: bucket `(by, bx)` has uncovered points (none outside the band).
        let mut open = [0u32; BUCKETS];
        for by in band {
            for bx in 0..BUCKETS {
                left[by * BUCKETS + bx] = axis.range(by).len() * axis.range(bx).len();
                open[by] |= u32::from(left[by * BUCKETS + bx] > 0) << bx;
            }
        }
        let mut uncovered: usize = left.iter().sum();
        // The sub-sample columns and rows that a disk's extent reaches, with `wrap(v - c)^2`
        // (`ex2 + ey2 >= ex2` in floating point too: the others cannot be inside); the columns
        // of bucket column `bx` are `columns[stretches[bx].clone()]`.
        let mut columns: Vec<(usize, f64)> = Vec::new();
        let mut rows: Vec<(usize, f64)> = Vec::new();
        let mut stretches: [std::ops::Range<usize>; BUCKETS] = std::array::from_fn(|_| 0..0);
        let reached =
            |range: std::ops::Range<usize>, c: f64, r2: f64, out: &mut Vec<(usize, f64)>| {
                out.extend(range.filter_map(|q| {
                    let e = wrap(axis.coords[q] - c);
                    (e * e < r2).then_some((q, e * e))
                }))
            };
        for (d, (&[xs, ys], (&(cx, cy), &r2))) in self
            .reach
            .iter()
            .zip(self.centres.iter().zip(&self.radii2))
            .enumerate()
        {
            if uncovered == 0 {
                return;
            }
            // Once its buckets are covered (those outside the band never open), a disk costs
            // this look.
            let needed = bits(ys).fold(0, |mask, by| mask | (open[by] & xs));
            if needed == 0 {
                continue;
            }
            columns.clear();
            for bx in bits(needed) {
                let start = columns.len();
                reached(axis.range(bx), cx, r2, &mut columns);
                stretches[bx] = start..columns.len();
            }
            for by in bits(ys) {
                let todo = open[by] & xs;
                if todo == 0 {
                    continue;
                }
                rows.clear();
                reached(axis.range(by), cy, r2, &mut rows);
                for bx in bits(todo) {
                    let mut taken = 0;
                    for &(row, ey2) in &rows {
                        let line = &mut hits[(row - row0) * m..][..m];
                        // Without branches: whether a point is inside is a coin toss.
                        for &(q, ex2) in &columns[stretches[bx].clone()] {
                            let hit = &mut line[q];
                            let take = (*hit == background) & (ex2 + ey2 < r2);
                            *hit ^= (*hit ^ d as u32) & 0u32.wrapping_sub(take as u32);
                            taken += usize::from(take);
                        }
                    }
                    let cell = by * BUCKETS + bx;
                    left[cell] -= taken;
                    uncovered -= taken;
                    if left[cell] == 0 {
                        open[by] &= !(1 << bx);
                    }
                }
            }
        }
    }
}

/// The indices of the set bits of `mask`, lowest first.
fn bits(mut mask: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let bit = mask.trailing_zeros() as usize;
        mask &= mask.wrapping_sub(1);
        (bit < 32).then_some(bit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The renderer as it was before the flat bucket list and the inlined `round` (per-cell
    /// vectors, `d - d.round()`), transcribed: the new one must give the same images bit for bit.
    fn reference(src: &DeadLeaves, index: u64, n: usize) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(mix_seed(src.seed, index));
        let c = src.channels;
        let background: Vec<f32> = (0..c).map(|_| rng.random::<f32>()).collect();
        let (mut centres, mut radii2, mut colours) = (vec![], vec![], vec![]);
        let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); BUCKETS * BUCKETS];
        for d in 0..src.disks {
            let (x, y) = (rng.random::<f64>(), rng.random::<f64>());
            let r = src.radius(rng.random::<f64>());
            centres.push((x, y));
            radii2.push(r * r);
            colours.extend((0..c).map(|_| rng.random::<f32>()));
            let span = |v: f64| -> Vec<usize> {
                let (lo, hi) = (
                    ((v - r) * BUCKETS as f64).floor() as i64,
                    ((v + r) * BUCKETS as f64).floor() as i64,
                );
                if hi - lo + 1 >= BUCKETS as i64 {
                    (0..BUCKETS).collect()
                } else {
                    (lo..=hi)
                        .map(|k| k.rem_euclid(BUCKETS as i64) as usize)
                        .collect()
                }
            };
            let xs = span(x);
            for by in span(y) {
                for &bx in &xs {
                    buckets[by * BUCKETS + bx].push(d as u32);
                }
            }
        }
        let colour_at = |x: f64, y: f64| -> &[f32] {
            let cell = ((y * BUCKETS as f64) as usize).min(BUCKETS - 1) * BUCKETS
                + ((x * BUCKETS as f64) as usize).min(BUCKETS - 1);
            let wrap = |d: f64| d - d.round();
            for &d in &buckets[cell] {
                let d = d as usize;
                let (cx, cy) = centres[d];
                let (dx, dy) = (wrap(x - cx), wrap(y - cy));
                if dx * dx + dy * dy < radii2[d] {
                    return &colours[d * c..(d + 1) * c];
                }
            }
            &background
        };
        let s = src.subsamples;
        let h = 1.0 / n as f64;
        let weight = 1.0 / (s * s) as f32;
        let mut out = vec![0f32; c * n * n];
        for i in 0..n {
            for j in 0..n {
                for a in 0..s {
                    let y = (i as f64 + (a as f64 + 0.5) / s as f64) * h;
                    for b in 0..s {
                        let x = (j as f64 + (b as f64 + 0.5) / s as f64) * h;
                        for (ch, v) in colour_at(x, y).iter().enumerate() {
                            out[(ch * n + i) * n + j] += v * weight;
                        }
                    }
                }
            }
        }
        out
    }

    proptest::proptest! {
        /// The libm-free `floor` of the bucket spans equals `f64::floor` (spans lie in
        /// `[-64, 96]`; the range checked is wider, integers and their neighbours included).
        #[test]
        fn floor_matches_libm(v in -1.0e6f64..1.0e6, k in -200i64..200) {
            proptest::prop_assert_eq!(floor(v), v.floor() as i64);
            let k = k as f64;
            for w in [k, k.next_down(), k.next_up(), -0.0] {
                proptest::prop_assert_eq!(floor(w), w.floor() as i64);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]
        /// Any sub-sample count, radii (disks wider than the square included), mesh and band
        /// height (down to one bucket row per band, which splits pixels when a bucket is
        /// thinner than a pixel): the reference renderer's image bit for bit.
        #[test]
        fn any_image_in_any_bands_matches_the_reference(
            seed in 0u64..1000,
            index in 0u64..1000,
            channels in 1usize..4,
            r_min in 0.001f64..0.1,
            spread in 1.0f64..20.0,
            s in 1usize..=10,
            n in 1usize..40,
            band_log2 in 0u32..23,
        ) {
            let src = DeadLeaves::new(seed)
                .with_channels(channels)
                .with_radii(r_min, r_min * spread)
                .with_subsamples(s);
            let got = src.render(index, n, 1 << band_log2);
            let want = reference(&src, index, n);
            proptest::prop_assert!(
                got.iter().map(|v| v.to_bits()).eq(want.iter().map(|v| v.to_bits())),
                "{:?} image {} at {} in bands of {} sub-samples", src, index, n, 1 << band_log2
            );
        }
    }

    #[test]
    fn images_are_bit_identical_to_the_reference_renderer() {
        let sources = [
            DeadLeaves::new(0),
            DeadLeaves::new(7).with_channels(3),
            DeadLeaves::new(3).with_radii(0.05, 0.7).with_subsamples(1),
            DeadLeaves::new(11)
                .with_radii(0.002, 0.01)
                .with_subsamples(3),
            DeadLeaves::new(5).with_subsamples(9),
        ];
        for src in &sources {
            for (index, n) in [(0u64, 1usize), (1, 8), (2, 13), (5, 32), (9, 64)] {
                let got: Vec<f32> = src
                    .image(index, n)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let want = reference(src, index, n);
                // One bucket row per band as well as the whole image at once.
                let banded = src.render(index, n, 1);
                assert_eq!(got.len(), want.len());
                for ((a, b), c) in got.iter().zip(&want).zip(&banded) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{src:?} image {index} at {n}");
                    assert_eq!(
                        c.to_bits(),
                        b.to_bits(),
                        "{src:?} image {index} at {n}, banded"
                    );
                }
            }
        }
    }
}
