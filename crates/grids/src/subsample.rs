//! Subsampling strategies: how level `l+1` of a training sample is built from level `l`
//! (SPEC section 1; 001 section 4 and Appendix A.2: coarsening's telescoping error is
//! `O(2^L h)`, cropping's `O(1)`).

use crate::{restrict, Error, Restriction};
use candle_core::{Result, Tensor};

/// The strategy that maps a sample to the next coarser level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Subsampling {
    /// Apply the restriction `R` (a 2x coarser mesh of the whole image).
    #[default]
    Coarsen,
    /// A random half-size crop at the same mesh.
    Crop,
    /// Coarsen for the first `levels / 2` steps (`level + 1 <= levels / 2`), crop after.
    #[serde(rename = "both")]
    CoarsenAndCrop,
}

impl Subsampling {
    /// All variants.
    pub const ALL: [Subsampling; 3] = [
        Subsampling::Coarsen,
        Subsampling::Crop,
        Subsampling::CoarsenAndCrop,
    ];

    /// The name accepted by `FromStr`: "coarsen", "crop", "both".
    pub fn name(self) -> &'static str {
        match self {
            Subsampling::Coarsen => "coarsen",
            Subsampling::Crop => "crop",
            Subsampling::CoarsenAndCrop => "both",
        }
    }

    /// Whether the step `level -> level + 1` of an `levels`-level hierarchy coarsens
    /// (otherwise it crops). `CoarsenAndCrop` coarsens while `level + 1 <= levels / 2`.
    pub fn coarsens(self, level: usize, levels: usize) -> bool {
        match self {
            Subsampling::Coarsen => true,
            Subsampling::Crop => false,
            Subsampling::CoarsenAndCrop => level < levels / 2,
        }
    }

    /// Mesh size of level `level` over the finest mesh's: `2^c`, `c` the number of
    /// coarsening steps among the steps `0 .. level` (cropping keeps the mesh).
    pub fn mesh_factor(self, level: usize, levels: usize) -> usize {
        1 << (0..level).filter(|&s| self.coarsens(s, levels)).count()
    }
}

impl std::str::FromStr for Subsampling {
    type Err = Error;
    fn from_str(s: &str) -> std::result::Result<Self, Error> {
        Subsampling::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| Error::UnknownName {
                kind: "subsampling",
                name: s.to_string(),
                expected: "coarsen, crop, both",
            })
    }
}

impl std::fmt::Display for Subsampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Maps the level-`level` versions of several tensors of one sample batch (e.g. input and
/// target, `[N,C,H,W]` with the same `N`) to their level-`level+1` versions, with the same
/// random choice for all of them. Deterministic given `rng`.
///
/// Coarsen: [`restrict()`] with `r` on every tensor. Crop: for each sample `i` one window
/// of half the height and width, its offset drawn uniformly on the pixel grid of the
/// smallest tensor and scaled by each tensor's size ratio (so a super-resolution target
/// twice the input's size is cropped on a 2-pixel grid and stays aligned with its input).
/// Sizes must be even and integer multiples of the smallest one. Errors when
/// `level + 1 >= levels`.
pub fn next_level(
    xs: &[Tensor],
    level: usize,
    levels: usize,
    s: Subsampling,
    r: Restriction,
    rng: &mut impl rand::Rng,
) -> Result<Vec<Tensor>> {
    if level + 1 >= levels {
        candle_core::bail!("no level {} in a {levels}-level hierarchy", level + 1);
    }
    if s.coarsens(level, levels) {
        xs.iter().map(|x| restrict(x, r)).collect()
    } else {
        crop_half(xs, rng)
    }
}

/// Per-sample random half-size crops, the same window (scaled) for every tensor.
fn crop_half(xs: &[Tensor], rng: &mut impl rand::Rng) -> Result<Vec<Tensor>> {
    let dims: Vec<(usize, usize, usize, usize)> =
        xs.iter().map(|x| x.dims4()).collect::<Result<_>>()?;
    let Some(&(n, _, hs, ws)) = dims.iter().min_by_key(|d| d.2) else {
        return Ok(Vec::new());
    };
    let mut factors = Vec::with_capacity(dims.len());
    for &(ni, _, h, w) in &dims {
        let f = h / hs.max(1);
        if ni != n || hs == 0 || hs % 2 != 0 || ws % 2 != 0 || h != f * hs || w != f * ws {
            candle_core::bail!(
                "crop needs equal batch sizes and even sizes that are multiples of the smallest, got {dims:?}"
            );
        }
        factors.push(f);
    }
    let windows: Vec<(usize, usize)> = (0..n)
        .map(|_| (rng.random_range(0..=hs / 2), rng.random_range(0..=ws / 2)))
        .collect();
    xs.iter()
        .zip(dims.iter().zip(&factors))
        .map(|(x, (&(_, _, h, w), &f))| {
            let parts = windows
                .iter()
                .enumerate()
                .map(|(i, &(oy, ox))| {
                    x.narrow(0, i, 1)?
                        .narrow(2, f * oy, h / 2)?
                        .narrow(3, f * ox, w / 2)
                })
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&parts, 0)
        })
        .collect()
}

#[cfg(test)]
mod serde_names {
    use super::*;

    /// Configuration files and `FromStr` spell every variant the same way.
    #[test]
    fn serde_and_from_str_agree() {
        for v in Subsampling::ALL {
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.name()));
            assert_eq!(serde_json::from_str::<Subsampling>(&json).unwrap(), v);
            assert_eq!(v.name().parse::<Subsampling>().unwrap(), v);
        }
        assert!(serde_json::from_str::<Subsampling>("\"zoom\"").is_err());
    }
}
