//! Training losses: mean over samples, pixels and channels (SPEC section 0).

use serde::{Deserialize, Serialize};

/// Training loss: MSE (001 Table 7) or negative SSIM (001 Table 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// `mean (pred - target)^2`.
    Mse,
    /// `1 - SSIM(pred, target)` (001 Table 8's negative SSIM shifted by 1) with a physical
    /// window (SPEC section 6).
    Ssim,
}

/// The loss `kind` for a run whose finest mesh is `finest` pixels and whose levels are
/// coarsened by `subsampling` over `levels` levels. MSE is mesh-free; SSIM's window is
/// physical: the standard window on the finest mesh and `mesh_factor(l)` times narrower in
/// pixels on level `l` (identified from the prediction's width), so both sides of a
/// telescoping term (001 eq. 6) evaluate the same functional.
pub fn loss_fn(
    kind: LossKind,
    finest: usize,
    levels: usize,
    subsampling: grids::Subsampling,
) -> Box<mge::LossFn<'static>> {
    match kind {
        LossKind::Mse => Box::new(|p, t| (p - t)?.sqr()),
        LossKind::Ssim => Box::new(move |p, t| {
            let level = (finest / t.dim(3)?.max(1)).max(1).trailing_zeros() as usize;
            let factor = subsampling.mesh_factor(level, levels) as f64;
            data::metrics::ssim_loss_with(
                p,
                t,
                data::metrics::SsimWindow::STANDARD.coarsened(factor),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn mse_is_the_squared_difference() {
        let f = loss_fn(LossKind::Mse, 8, 1, grids::Subsampling::Coarsen);
        let p = Tensor::new(&[[[[1f32, 2.0], [3.0, 4.0]]]], &Device::Cpu).unwrap();
        let t = p.zeros_like().unwrap();
        let l = f(&p, &t)
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(l, (1.0 + 4.0 + 9.0 + 16.0) / 4.0);
    }

    /// `1 - SSIM` is 0 for identical images on both meshes of a term, and positive otherwise.
    #[test]
    fn ssim_loss_is_zero_only_for_identical_images() {
        let f = loss_fn(LossKind::Ssim, 16, 2, grids::Subsampling::Coarsen);
        let l = |a: &Tensor, b: &Tensor| {
            let v = f(a, b).unwrap().mean_all().unwrap();
            v.to_scalar::<f32>().unwrap()
        };
        for n in [16usize, 8] {
            let x = Tensor::rand(0f32, 1.0, (2, 1, n, n), &Device::Cpu).unwrap();
            let y = Tensor::rand(0f32, 1.0, (2, 1, n, n), &Device::Cpu).unwrap();
            assert!(l(&x, &x).abs() < 1e-4, "{n}: {}", l(&x, &x));
            assert!(l(&x, &y) > 0.1, "{n}: {}", l(&x, &y));
        }
    }
}
