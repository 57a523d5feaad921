//! Restriction `R`: fine `[N,C,H,W]` to coarse `[N,C,H/2,W/2]` (SPEC section 1).

use crate::{Boundary, Error, Taps};
use candle_core::{DType, Device, Result, Tensor};

/// Fine-to-coarse transfer `R` (SPEC section 1; 003 section 3.1.4 for the average).
///
/// Every variant is a tensor product `R = R_1 ⊗ R_1` of a 1-D rule
/// `(R_1 x)_I = sum_i r(i) x_{2I+i}` with the taps of [`Restriction::taps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restriction {
    /// 2x2 block average, `r = [1/2, 1/2]` on offsets `0, 1` (cell-centred; the pooling of
    /// 001's Lemma 1 proof).
    #[default]
    Average,
    /// Every other pixel, `r = [1]` at offset 0 (`F.interpolate(x, 0.5)`, nearest mode).
    Injection,
    /// Cell-centred full weighting, `r = [1, 3, 3, 1] / 8` on offsets `-1..=2`: the adjoint
    /// of bilinear prolongation, `R = P_bilinear^T / 4` in 2-D.
    FullWeighting,
}

impl Restriction {
    /// All variants, for exhaustive tests and CLIs.
    pub const ALL: [Restriction; 3] = [
        Restriction::Average,
        Restriction::Injection,
        Restriction::FullWeighting,
    ];

    /// The 1-D taps `r(i)`: `(R_1 x)_I = sum_i r(i) x_{2I+i}`.
    pub fn taps(self) -> Taps {
        match self {
            Restriction::Average => Taps {
                offset: 0,
                weights: &[0.5, 0.5],
            },
            Restriction::Injection => Taps {
                offset: 0,
                weights: &[1.0],
            },
            Restriction::FullWeighting => Taps {
                offset: -1,
                weights: &[0.125, 0.375, 0.375, 0.125],
            },
        }
    }

    /// The name accepted by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            Restriction::Average => "average",
            Restriction::Injection => "injection",
            Restriction::FullWeighting => "full-weighting",
        }
    }
}

impl std::str::FromStr for Restriction {
    type Err = Error;
    fn from_str(s: &str) -> std::result::Result<Self, Error> {
        Restriction::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| Error::UnknownName {
                kind: "restriction",
                name: s.to_string(),
                expected: "average, injection, full-weighting",
            })
    }
}

impl std::fmt::Display for Restriction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Restricts a batch `[N,C,H,W] -> [N,C,H/2,W/2]` with the default [`Boundary::Replicate`]
/// (only full weighting reads across the edge). See [`restrict_with`].
pub fn restrict(x: &Tensor, r: Restriction) -> Result<Tensor> {
    restrict_with(x, r, Boundary::default())
}

/// Restricts a batch `[N,C,H,W] -> [N,C,H/2,W/2]`, `y = (R_1 ⊗ R_1) x` per channel, built
/// from differentiable candle ops: average = `avg_pool2d(2)`, injection = strided select
/// (reshape + narrow), full weighting = pad by one pixel (`boundary`) then a fixed 4x4
/// stride-2 convolution with kernel `r ⊗ r`. H and W must be even.
pub fn restrict_with(x: &Tensor, r: Restriction, boundary: Boundary) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if h % 2 != 0 || w % 2 != 0 || h == 0 || w == 0 {
        candle_core::bail!("restrict needs even, non-zero H and W, got {:?}", x.shape());
    }
    match r {
        Restriction::Average => x.avg_pool2d(2),
        Restriction::Injection => x
            .reshape((n, c, h / 2, 2, w / 2, 2))?
            .narrow(3, 0, 1)?
            .narrow(5, 0, 1)?
            .reshape((n, c, h / 2, w / 2)),
        Restriction::FullWeighting => {
            let taps = r.taps().weights;
            let kernel = outer_kernel(&[(taps, taps)], x.device(), x.dtype())?;
            boundary
                .pad1(x)?
                .reshape((n * c, 1, h + 2, w + 2))?
                .conv2d(&kernel, 0, 2, 1, 1)?
                .reshape((n, c, h / 2, w / 2))
        }
    }
}

/// A `[K, 1, a, b]` convolution kernel whose k-th slice is `rows_k ⊗ cols_k`.
pub(crate) fn outer_kernel(
    pairs: &[(&[f64], &[f64])],
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    let (a, b) = pairs.first().map_or((0, 0), |(r, c)| (r.len(), c.len()));
    let values: Vec<f64> = pairs
        .iter()
        .flat_map(|(rows, cols)| {
            rows.iter()
                .flat_map(move |ri| cols.iter().map(move |cj| ri * cj))
        })
        .collect();
    Tensor::from_vec(values, (pairs.len(), 1, a, b), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod serde_names {
    use super::*;

    /// Configuration files and `FromStr` spell every variant the same way.
    #[test]
    fn serde_and_from_str_agree() {
        for v in Restriction::ALL {
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.name()));
            assert_eq!(serde_json::from_str::<Restriction>(&json).unwrap(), v);
            assert_eq!(v.name().parse::<Restriction>().unwrap(), v);
        }
        assert!(serde_json::from_str::<Restriction>("\"bicubic\"").is_err());
    }
}
