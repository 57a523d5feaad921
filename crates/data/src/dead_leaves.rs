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

/// One image's disks plus a bucket grid of the disks that touch each cell, front to back.
struct Leaves {
    centres: Vec<(f64, f64)>,
    radii2: Vec<f64>,
    colours: Vec<f32>,
    background: Vec<f32>,
    buckets: Vec<Vec<u32>>,
    channels: usize,
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
        let background = (0..c).map(|_| rng.random::<f32>()).collect();
        let mut leaves = Leaves {
            centres: Vec::with_capacity(self.disks),
            radii2: Vec::with_capacity(self.disks),
            colours: Vec::with_capacity(self.disks * c),
            background,
            buckets: vec![Vec::new(); BUCKETS * BUCKETS],
            channels: c,
        };
        for d in 0..self.disks {
            let (x, y) = (rng.random::<f64>(), rng.random::<f64>());
            let r = self.radius(rng.random::<f64>());
            leaves.centres.push((x, y));
            leaves.radii2.push(r * r);
            leaves.colours.extend((0..c).map(|_| rng.random::<f32>()));
            // Cells touched by the disk's bounding box, wrapped periodically.
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
                    leaves.buckets[by * BUCKETS + bx].push(d as u32);
                }
            }
        }
        leaves
    }
}

impl Leaves {
    /// Index into `colours` of the front-most disk containing `(x, y)` (periodic distance).
    fn colour_at(&self, x: f64, y: f64) -> &[f32] {
        let cell = ((y * BUCKETS as f64) as usize).min(BUCKETS - 1) * BUCKETS
            + ((x * BUCKETS as f64) as usize).min(BUCKETS - 1);
        let wrap = |d: f64| d - d.round();
        for &d in &self.buckets[cell] {
            let d = d as usize;
            let (cx, cy) = self.centres[d];
            let (dx, dy) = (wrap(x - cx), wrap(y - cy));
            if dx * dx + dy * dy < self.radii2[d] {
                return &self.colours[d * self.channels..(d + 1) * self.channels];
            }
        }
        &self.background
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
        for i in 0..n {
            for j in 0..n {
                for a in 0..s {
                    let y = (i as f64 + (a as f64 + 0.5) / s as f64) * h;
                    for b in 0..s {
                        let x = (j as f64 + (b as f64 + 0.5) / s as f64) * h;
                        for (ch, v) in leaves.colour_at(x, y).iter().enumerate() {
                            out[(ch * n + i) * n + j] += v * weight;
                        }
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, (c, n, n), &Device::Cpu)?)
    }
}
