//! PNG grids of images, for previews, sample outputs and kernels.

use anyhow::{bail, Context as _, Result};
use candle_core::{DType, Tensor};
use std::path::Path;

/// How tile values map to grey levels.
#[derive(Debug, Clone, Copy)]
pub enum Scale {
    /// Clamp to `[0, 1]`.
    Unit,
    /// Stretch each tile's own min..max to `[0, 1]` (for kernels and signed data).
    PerTile,
}

/// Write `rows` (each a list of `[C, H, W]` tensors with C = 1 or 3) as one PNG grid.
/// Tiles of different sizes are upscaled by pixel repetition to the largest tile size.
pub fn save_grid(path: &Path, rows: &[Vec<Tensor>], scale: Scale) -> Result<()> {
    let tiles: Vec<Vec<(usize, usize, Vec<[u8; 3]>)>> =
        rows.iter().map(|r| r.iter().map(|t| to_rgb(t, scale)).collect::<Result<Vec<_>>>()).collect::<Result<_>>()?;
    let cell = tiles.iter().flatten().map(|(h, w, _)| (*h).max(*w)).max().unwrap_or(0);
    if cell == 0 {
        bail!("no images to write to {}", path.display());
    }
    let cols = tiles.iter().map(|r| r.len()).max().unwrap_or(0);
    let pad = 2;
    let (gw, gh) = (cols * (cell + pad) + pad, tiles.len() * (cell + pad) + pad);
    let mut img = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([255, 255, 255]));
    for (ri, row) in tiles.iter().enumerate() {
        for (ci, (h, w, px)) in row.iter().enumerate() {
            let (x0, y0) = (pad + ci * (cell + pad), pad + ri * (cell + pad));
            for y in 0..cell {
                for x in 0..cell {
                    let (sy, sx) = (y * h / cell, x * w / cell);
                    img.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb(px[sy * w + sx]));
                }
            }
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    img.save(path).with_context(|| format!("cannot write {}", path.display()))
}

fn to_rgb(t: &Tensor, scale: Scale) -> Result<(usize, usize, Vec<[u8; 3]>)> {
    let (c, h, w) = t.dims3().context("image tiles must be [C, H, W]")?;
    if c != 1 && c != 3 {
        bail!("image tiles need 1 or 3 channels, got {c}");
    }
    let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let (lo, hi) = match scale {
        Scale::Unit => (0.0, 1.0),
        Scale::PerTile => {
            let lo = v.iter().cloned().fold(f32::INFINITY, f32::min);
            let hi = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            (lo, if hi > lo { hi } else { lo + 1.0 })
        }
    };
    let q = |x: f32| (((x - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0).round() as u8;
    let px = (0..h * w)
        .map(|i| if c == 1 { [q(v[i]); 3] } else { [q(v[i]), q(v[h * w + i]), q(v[2 * h * w + i])] })
        .collect();
    Ok((h, w, px))
}
