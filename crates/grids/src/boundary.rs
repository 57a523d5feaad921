//! Boundary handling for the transfer operators that read across the image edge
//! (full weighting, bilinear prolongation).

use candle_core::{Result, Tensor};

/// How pixels outside the `n x n` grid are defined.
///
/// `Periodic` (`x[-1] = x[n-1]`) makes every operator shift-invariant: the algebra of
/// SPEC section 1 (Galerkin, adjointness) is exact with it. `Replicate` (`x[-1] = x[0]`) is
/// the default for images in training: it does not mix opposite edges, and with it bilinear
/// prolongation equals `F.interpolate(mode="bilinear", align_corners=False)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Boundary {
    /// Wrap around: index `i` means `i mod n`.
    Periodic,
    /// Clamp: index `i` means `clamp(i, 0, n-1)`.
    #[default]
    Replicate,
}

impl Boundary {
    /// The in-grid index that stands for (possibly out-of-range) index `i` on a grid of `n`.
    pub fn index(self, i: isize, n: usize) -> usize {
        let n = n as isize;
        match self {
            Boundary::Periodic => i.rem_euclid(n) as usize,
            Boundary::Replicate => i.clamp(0, n - 1) as usize,
        }
    }

    /// Pads the last two dims of `[.., H, W]` by one pixel on each side, by concatenating
    /// edge rows/columns (differentiable, any device).
    pub fn pad1(self, x: &Tensor) -> Result<Tensor> {
        let rank = x.rank();
        if rank < 2 {
            candle_core::bail!("pad1 needs a tensor of rank >= 2, got {:?}", x.shape());
        }
        let mut y = x.clone();
        for dim in [rank - 2, rank - 1] {
            let n = y.dim(dim)?;
            if n == 0 {
                candle_core::bail!("cannot pad an empty dimension of {:?}", x.shape());
            }
            let (before, after) = match self {
                Boundary::Periodic => (y.narrow(dim, n - 1, 1)?, y.narrow(dim, 0, 1)?),
                Boundary::Replicate => (y.narrow(dim, 0, 1)?, y.narrow(dim, n - 1, 1)?),
            };
            y = Tensor::cat(&[&before, &y, &after], dim)?;
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn pad_matches_index_map() {
        let x = Tensor::arange(0f32, 12., &Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let xs = x.to_vec2::<f32>().unwrap();
        for b in [Boundary::Periodic, Boundary::Replicate] {
            let p = b.pad1(&x).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!((p.len(), p[0].len()), (5, 6));
            for (i, row) in p.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    let (si, sj) = (b.index(i as isize - 1, 3), b.index(j as isize - 1, 4));
                    assert_eq!(v, xs[si][sj], "{b:?} at ({i},{j})");
                }
            }
        }
    }
}
