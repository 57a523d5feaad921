//! Dead-leaves images: random occluding disks with power-law radii on the periodic unit square
//! (Matheron's model; Lee, Mumford & Huang 2001; SPEC section 6).
//!
//! Image `index` is a continuous-domain function: a seeded list of disks, front to back, and the
//! value at a point is the colour of the first disk that contains it. Rendering on an `n x n`
//! mesh averages `s x s` evenly spaced sub-samples in each cell, so the image approximates the
//! cell average and a 2x2 average of the mesh-`n` image stays within `O(h)` (in the mean absolute
//! sense, since only the `O(1/h)` cells crossed by an edge differ) of the mesh-`n/2` image.

use crate::source::{check_size, mix_seed, ImageSource};
use crate::Result;
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Side of the bucket grid that accelerates point location.
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

/// One image's disks plus a bucket grid of the disks that touch each cell, front to back:
/// the disks of cell `k` are `bucket_disks[bucket_start[k]..bucket_start[k + 1]]` (one flat
/// list instead of a vector per cell: two passes over the disks, no per-disk allocation).
struct Leaves {
    centres: Vec<(f64, f64)>,
    radii2: Vec<f64>,
    /// The disks' colours, then the background's: entry `k` of the palette is
    /// `colours[k * channels..(k + 1) * channels]`, the background's `k` is the disk count.
    colours: Vec<f32>,
    bucket_start: Vec<u32>,
    bucket_disks: Vec<u32>,
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

/// Bucket range `(lo, hi)` touched by `[v - r, v + r]` (to be wrapped periodically), or all
/// buckets.
fn span(v: f64, r: f64) -> (i64, i64) {
    let (lo, hi) = (
        floor((v - r) * BUCKETS as f64),
        floor((v + r) * BUCKETS as f64),
    );
    if hi - lo + 1 >= BUCKETS as i64 {
        (0, BUCKETS as i64 - 1)
    } else {
        (lo, hi)
    }
}

/// The buckets of a span, wrapped periodically.
fn cells((lo, hi): (i64, i64)) -> impl Iterator<Item = usize> {
    (lo..=hi).map(|k| k.rem_euclid(BUCKETS as i64) as usize)
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

    fn leaves(&self, index: u64) -> Leaves {
        let mut rng = StdRng::seed_from_u64(mix_seed(self.seed, index));
        let c = self.channels;
        let background: Vec<f32> = (0..c).map(|_| rng.random::<f32>()).collect();
        let mut centres = Vec::with_capacity(self.disks);
        let mut radii = Vec::with_capacity(self.disks);
        let mut colours = Vec::with_capacity((self.disks + 1) * c);
        for _ in 0..self.disks {
            let (x, y) = (rng.random::<f64>(), rng.random::<f64>());
            let r = self.radius(rng.random::<f64>());
            centres.push((x, y));
            radii.push(r);
            colours.extend((0..c).map(|_| rng.random::<f32>()));
        }
        colours.extend(background);
        // Cells touched by each disk's bounding box, wrapped periodically: count, then fill in
        // disk order (front to back within every cell).
        let spans: Vec<[(i64, i64); 2]> = centres
            .iter()
            .zip(&radii)
            .map(|(&(x, y), &r)| [span(x, r), span(y, r)])
            .collect();
        let cells_total = BUCKETS * BUCKETS;
        let mut bucket_start = vec![0u32; cells_total + 1];
        for &[sx, sy] in &spans {
            for by in cells(sy) {
                for bx in cells(sx) {
                    bucket_start[by * BUCKETS + bx + 1] += 1;
                }
            }
        }
        for k in 0..cells_total {
            bucket_start[k + 1] += bucket_start[k];
        }
        let mut fill: Vec<u32> = bucket_start[..cells_total].to_vec();
        let mut bucket_disks = vec![0u32; bucket_start[cells_total] as usize];
        for (d, &[sx, sy]) in spans.iter().enumerate() {
            for by in cells(sy) {
                for bx in cells(sx) {
                    let k = by * BUCKETS + bx;
                    bucket_disks[fill[k] as usize] = d as u32;
                    fill[k] += 1;
                }
            }
        }
        Leaves {
            centres,
            radii2: radii.iter().map(|r| r * r).collect(),
            colours,
            bucket_start,
            bucket_disks,
        }
    }
}

/// Sub-samples per pixel side up to which a pixel's sub-samples share one scan of their bucket.
const SHARED_SCAN_MAX: usize = 8;

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

impl Leaves {
    /// The bucket of point `(x, y)`.
    fn cell(x: f64, y: f64) -> usize {
        ((y * BUCKETS as f64) as usize).min(BUCKETS - 1) * BUCKETS
            + ((x * BUCKETS as f64) as usize).min(BUCKETS - 1)
    }

    /// The disks of bucket `cell`, front to back.
    fn disks(&self, cell: usize) -> &[u32] {
        &self.bucket_disks[self.bucket_start[cell] as usize..self.bucket_start[cell + 1] as usize]
    }

    /// The palette entry of the background: no disk contains the point.
    fn background(&self) -> u32 {
        self.centres.len() as u32
    }

    /// The front-most disk containing `(xs[b], ys[a])` (periodic distance), or the background,
    /// into `hits[a * s + b]`, for points that all lie in bucket `cell` (`s = xs.len() =
    /// ys.len() <= SHARED_SCAN_MAX`): one scan of the bucket's disks for all of them (the same
    /// tests `wrap(x - cx)^2 + wrap(y - cy)^2 < r^2`, in the same arithmetic, as one scan per
    /// point; a point keeps the first disk that contains it).
    fn disks_at(&self, cell: usize, xs: &[f64], ys: &[f64], hits: &mut [u32]) {
        match xs.len() {
            1 => self.scan::<1>(cell, xs, ys, hits),
            2 => self.scan::<2>(cell, xs, ys, hits),
            3 => self.scan::<3>(cell, xs, ys, hits),
            4 => self.scan::<4>(cell, xs, ys, hits),
            5 => self.scan::<5>(cell, xs, ys, hits),
            6 => self.scan::<6>(cell, xs, ys, hits),
            7 => self.scan::<7>(cell, xs, ys, hits),
            // At most SHARED_SCAN_MAX by the caller.
            _ => self.scan::<SHARED_SCAN_MAX>(cell, xs, ys, hits),
        }
    }

    /// [`Self::disks_at`] for `S` points a side: every disk is tested against all `S x S` points
    /// at once (a mask, no branch per point), and the points it is the first to contain take it.
    fn scan<const S: usize>(&self, cell: usize, xs: &[f64], ys: &[f64], hits: &mut [u32]) {
        let (xs, ys): (&[f64; S], &[f64; S]) = (xs.try_into().unwrap(), ys.try_into().unwrap());
        hits[..S * S].fill(self.background());
        let mut left: u64 = u64::MAX >> (64 - S * S);
        for &d in self.disks(cell) {
            let (cx, cy) = self.centres[d as usize];
            let r2 = self.radii2[d as usize];
            let dx2: [f64; S] = std::array::from_fn(|b| {
                let e = wrap(xs[b] - cx);
                e * e
            });
            let dy2: [f64; S] = std::array::from_fn(|a| {
                let e = wrap(ys[a] - cy);
                e * e
            });
            let mut inside = 0u64;
            for (a, &ey2) in dy2.iter().enumerate() {
                for (b, &ex2) in dx2.iter().enumerate() {
                    inside |= u64::from(ex2 + ey2 < r2) << (a * S + b);
                }
            }
            let mut first = inside & left;
            if first != 0 {
                left &= !first;
                while first != 0 {
                    hits[first.trailing_zeros() as usize] = d;
                    first &= first - 1;
                }
                if left == 0 {
                    return;
                }
            }
        }
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
        let leaves = self.leaves(index);
        let (c, s) = (self.channels, self.subsamples);
        let h = 1.0 / n as f64;
        let weight = 1.0 / (s * s) as f32;
        let mut out = vec![0f32; c * n * n];
        // The palette entries of one row of pixels: pixel j's sub-samples are
        // `row[j * s * s..(j + 1) * s * s]`, row a then column b.
        let mut row = vec![0u32; n * s * s];
        let (mut xs, mut ys) = (vec![0f64; s], vec![0f64; s]);
        for i in 0..n {
            for (a, y) in ys.iter_mut().enumerate() {
                *y = (i as f64 + (a as f64 + 0.5) / s as f64) * h;
            }
            for (j, hits) in row.chunks_mut(s * s).enumerate() {
                for (b, x) in xs.iter_mut().enumerate() {
                    *x = (j as f64 + (b as f64 + 0.5) / s as f64) * h;
                }
                // Buckets grow with x and y: the pixel lies in one bucket when its first and
                // last sub-samples do.
                let cell = Leaves::cell(xs[0], ys[0]);
                if s <= SHARED_SCAN_MAX && cell == Leaves::cell(xs[s - 1], ys[s - 1]) {
                    leaves.disks_at(cell, &xs, &ys, hits);
                } else {
                    for (k, hit) in hits.iter_mut().enumerate() {
                        let (x, y) = (xs[k % s], ys[k / s]);
                        let cell = Leaves::cell(x, y);
                        leaves.disks_at(cell, &[x], &[y], std::slice::from_mut(hit));
                    }
                }
            }
            // Each pixel sums its sub-samples in order (row a, then column b), as always; the
            // pixels of the row are summed side by side.
            for ch in 0..c {
                let sums = &mut out[(ch * n + i) * n..][..n];
                for k in 0..s * s {
                    for (sum, hits) in sums.iter_mut().zip(row.chunks(s * s)) {
                        *sum += leaves.colours[hits[k] as usize * c + ch] * weight;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, (c, n, n), &Device::Cpu)?)
    }
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
        /// Every shared-scan width (1 to 8 sub-samples a side, and one scan per point above),
        /// any radii and mesh: the reference renderer's image bit for bit.
        #[test]
        fn every_scan_width_matches_the_reference(
            seed in 0u64..1000,
            index in 0u64..1000,
            channels in 1usize..4,
            r_min in 0.001f64..0.1,
            spread in 1.0f64..20.0,
            s in 1usize..=SHARED_SCAN_MAX + 1,
            n in 1usize..40,
        ) {
            let src = DeadLeaves::new(seed)
                .with_channels(channels)
                .with_radii(r_min, r_min * spread)
                .with_subsamples(s);
            let got: Vec<f32> = src.image(index, n).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let want = reference(&src, index, n);
            proptest::prop_assert!(
                got.iter().map(|v| v.to_bits()).eq(want.iter().map(|v| v.to_bits())),
                "{:?} image {} at {}", src, index, n
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
            // More sub-samples than one shared scan takes: one scan per point.
            DeadLeaves::new(5).with_subsamples(SHARED_SCAN_MAX + 1),
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
                assert_eq!(got.len(), want.len());
                for (a, b) in got.iter().zip(&want) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{src:?} image {index} at {n}");
                }
            }
        }
    }
}
