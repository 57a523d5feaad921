//! Prolongation `P`: coarse `[N,C,H,W]` to fine `[N,C,2H,2W]` (SPEC section 1).

use crate::restrict::outer_kernel;
use crate::{Boundary, Error, Taps};
use candle_core::{Result, Tensor};

/// Coarse-to-fine transfer `P` (SPEC section 1, 002 eq. 2.5).
///
/// A tensor product `P = P_1 ⊗ P_1` of the 1-D rule
/// `(P_1 x)_p = sum_J p(p - 2J) x_J` with the taps of [`Prolongation::taps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prolongation {
    /// Cell-centred bilinear: `p = [1, 3, 3, 1] / 4` on offsets `-1..=2`, i.e. 2-D weights
    /// 9/16, 3/16, 3/16, 1/16 on the four nearest coarse centres. `R_avg P = I + Δ_H / 8`:
    /// identity to second order on smooth data.
    #[default]
    Bilinear,
    /// Piecewise constant: `p = [1, 1]` on offsets `0, 1`; `P = 4 R_avg^T` in 2-D.
    Constant,
}

impl Prolongation {
    /// All variants, for exhaustive tests and CLIs.
    pub const ALL: [Prolongation; 2] = [Prolongation::Bilinear, Prolongation::Constant];

    /// The 1-D taps `p(t)`: fine pixel `2J + t` receives `p(t) x_J`.
    pub fn taps(self) -> Taps {
        match self {
            Prolongation::Bilinear => Taps {
                offset: -1,
                weights: &[0.25, 0.75, 0.75, 0.25],
            },
            Prolongation::Constant => Taps {
                offset: 0,
                weights: &[1.0, 1.0],
            },
        }
    }

    /// The name accepted by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            Prolongation::Bilinear => "bilinear",
            Prolongation::Constant => "constant",
        }
    }
}

impl std::str::FromStr for Prolongation {
    type Err = Error;
    fn from_str(s: &str) -> std::result::Result<Self, Error> {
        Prolongation::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::UnknownName {
                kind: "prolongation",
                name: s.to_string(),
                expected: "bilinear, constant",
            })
    }
}

impl std::fmt::Display for Prolongation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Prolongs a batch `[N,C,H,W] -> [N,C,2H,2W]` with the default [`Boundary::Replicate`]
/// (only bilinear reads across the edge). See [`prolong_with`].
pub fn prolong(x: &Tensor, p: Prolongation) -> Result<Tensor> {
    prolong_with(x, p, Boundary::default())
}

/// Prolongs a batch `[N,C,H,W] -> [N,C,2H,2W]`, `y = (P_1 ⊗ P_1) x` per channel, with
/// differentiable candle ops (no `UpsampleBilinear2D`, which has no backward).
///
/// Constant: broadcast each pixel to a 2x2 block. Bilinear: pad by one coarse pixel
/// (`boundary`), a 3x3 convolution with four fixed kernels gives the four phase images
/// (fine pixel `(2I+di, 2J+dj)` = `sum_{o,q} p(di-2o) p(dj-2q) x[I+o, J+q]`), which are
/// interleaved by reshape/permute.
pub fn prolong_with(x: &Tensor, p: Prolongation, boundary: Boundary) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if h == 0 || w == 0 {
        candle_core::bail!("prolong needs a non-empty image, got {:?}", x.shape());
    }
    match p {
        Prolongation::Constant => x
            .reshape((n, c, h, 1, w, 1))?
            .broadcast_as((n, c, h, 2, w, 2))?
            .reshape((n, c, 2 * h, 2 * w)),
        Prolongation::Bilinear => {
            let taps = p.taps();
            let phases: Vec<[f64; 3]> = (0..2)
                .map(|d| [taps.at(d + 2), taps.at(d), taps.at(d - 2)])
                .collect();
            let pairs: Vec<(&[f64], &[f64])> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                .iter()
                .map(|&(di, dj)| (&phases[di][..], &phases[dj][..]))
                .collect();
            let kernel = outer_kernel(&pairs, x.device(), x.dtype())?;
            boundary
                .pad1(x)?
                .reshape((n * c, 1, h + 2, w + 2))?
                .conv2d(&kernel, 0, 1, 1, 1)?
                .reshape((n * c, 2, 2, h, w))?
                .permute((0, 3, 1, 4, 2))?
                .reshape((n, c, 2 * h, 2 * w))
        }
    }
}
