// Restrict a trained network to a coarse mesh (Galerkin, K_H = R K_h P, 002 eq. 4.14):
//   cargo run --release -p multiscale-models --example restrict_network [-- model.safetensors]
// With a checkpoint written by `models::checkpoint::save` (e.g. a run's final.safetensors)
// that network is used; without one, a seeded ResNet stands in for it.
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use grids::{Prolongation, Restriction};
use models::{transfer::restrict_network, ModelConfig, ResnetConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let (cfg, fine) = match std::env::args().nth(1) {
        Some(path) => {
            let (cfg, varmap, _) = models::checkpoint::load(std::path::Path::new(&path), &dev)?;
            (cfg, varmap)
        }
        None => {
            let cfg = ModelConfig::Resnet(ResnetConfig {
                in_channels: 1,
                out_channels: 1,
                hidden: 16,
                noise_conditioning: false,
                ..Default::default()
            });
            let varmap = VarMap::new();
            models::build(
                &cfg,
                models::init::seeded_var_builder(&varmap, 7, DType::F32, &dev),
            )?;
            (cfg, varmap)
        }
    };
    let (r, p) = (Restriction::Average, Prolongation::Bilinear);
    // The coarse network: every stencil K_h replaced by R K_h P; same architecture.
    let coarse = restrict_network(&fine, r, p)?;
    let fine_net = models::build(
        &cfg,
        candle_nn::VarBuilder::from_varmap(&fine, DType::F32, &dev),
    )?;
    let coarse_net = models::build(
        &cfg,
        candle_nn::VarBuilder::from_varmap(&coarse, DType::F32, &dev),
    )?;
    // A smooth 64x64 image u; compare R f_h(u) with f_H(R u) on the 32x32 mesh.
    let c = fine_net.in_channels();
    let ramp = Tensor::arange(0f32, 64.0, &dev)?
        .affine(std::f64::consts::PI / 32.0, 0.0)?
        .sin()?;
    let u = ramp
        .reshape((1, 1, 1, 64))?
        .broadcast_mul(&ramp.reshape((1, 1, 64, 1))?)?;
    let u = u.broadcast_as((1, c, 64, 64))?.contiguous()?;
    let (ru, t) = (grids::restrict(&u, r)?, None);
    let a = grids::restrict(&fine_net.forward(&u, t)?, r)?;
    let b = coarse_net.forward(&ru, t)?;
    let rel = ((&a - &b)?.sqr()?.sum_all()?.sqrt()? / a.sqr()?.sum_all()?.sqrt()?)?;
    let naive = ((&a - fine_net.forward(&ru, t)?)?.sqr()?.sum_all()?.sqrt()?
        / a.sqr()?.sum_all()?.sqrt()?)?;
    println!(
        "|R f_h(u) - f_H(R u)| / |R f_h(u)|: Galerkin {:.4}, same weights on the coarse mesh {:.4}",
        rel.to_scalar::<f32>()?,
        naive.to_scalar::<f32>()?
    );
    Ok(())
}
