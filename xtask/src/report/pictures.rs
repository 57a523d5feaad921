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
    save_labelled_grid(path, &[], rows, scale, 1)
}

/// [`save_grid`] with every tile magnified `magnify` times (nearest neighbour, so pixels stay
/// visible) and a header naming the columns (`labels`, may be empty).
pub fn save_labelled_grid(
    path: &Path,
    labels: &[String],
    rows: &[Vec<Tensor>],
    scale: Scale,
    magnify: usize,
) -> Result<()> {
    let tiles: Vec<Vec<Rgb>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|t| to_rgb(t, scale))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    let cell = tiles
        .iter()
        .flatten()
        .map(|(h, w, _)| (*h).max(*w))
        .max()
        .unwrap_or(0)
        * magnify.max(1);
    if cell == 0 {
        bail!("no images to write to {}", path.display());
    }
    let cols = tiles
        .iter()
        .map(|r| r.len())
        .max()
        .unwrap_or(0)
        .max(labels.len());
    let pad = 2;
    let header = if labels.is_empty() { 0 } else { 22 };
    let (gw, gh) = (
        cols * (cell + pad) + pad,
        header + tiles.len() * (cell + pad) + pad,
    );
    let mut img = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([255, 255, 255]));
    for (ri, row) in tiles.iter().enumerate() {
        for (ci, (h, w, px)) in row.iter().enumerate() {
            let (x0, y0) = (pad + ci * (cell + pad), header + pad + ri * (cell + pad));
            for y in 0..cell {
                for x in 0..cell {
                    let (sy, sx) = (y * h / cell, x * w / cell);
                    img.put_pixel(
                        (x0 + x) as u32,
                        (y0 + y) as u32,
                        image::Rgb(px[sy * w + sx]),
                    );
                }
            }
        }
    }
    if !labels.is_empty() {
        draw_labels(&mut img, labels, cell + pad, pad)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Column labels in the top strip of `img`, one per `step` pixels from `x0`, shrunk to fit.
fn draw_labels(img: &mut image::RgbImage, labels: &[String], step: usize, x0: usize) -> Result<()> {
    use plotters::prelude::*;
    crate::report::plot::register_font()?;
    let (w, h) = img.dimensions();
    let root = BitMapBackend::with_buffer(img.as_mut(), (w, h)).into_drawing_area();
    for (i, label) in labels.iter().enumerate() {
        let size = (step as f64 / (0.6 * label.chars().count().max(1) as f64)).clamp(8.0, 15.0);
        let style = TextStyle::from((crate::report::plot::FONT_NAME, size)).color(&BLACK);
        root.draw_text(label, &style, ((x0 + i * step) as i32, 4))
            .map_err(|e| anyhow::anyhow!("drawing the label {label:?}: {e:?}"))?;
    }
    root.present()
        .map_err(|e| anyhow::anyhow!("drawing labels: {e:?}"))
}

/// The magnification that makes tiles of side `side` at least 128 pixels (at least 4x).
pub fn magnification(side: usize) -> usize {
    (128usize.div_ceil(side.max(1))).max(4)
}

/// An image as `(height, width, pixels)`.
type Rgb = (usize, usize, Vec<[u8; 3]>);

fn to_rgb(t: &Tensor, scale: Scale) -> Result<Rgb> {
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
        .map(|i| {
            if c == 1 {
                [q(v[i]); 3]
            } else {
                [q(v[i]), q(v[h * w + i]), q(v[2 * h * w + i])]
            }
        })
        .collect();
    Ok((h, w, px))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_grids_magnify_tiles_and_add_a_header() {
        let dir = std::env::temp_dir().join(format!("xtask-grid-{}", std::process::id()));
        let tile = Tensor::arange(0f32, 64.0, &candle_core::Device::Cpu)
            .unwrap()
            .affine(1.0 / 64.0, 0.0)
            .unwrap()
            .reshape((1, 8, 8))
            .unwrap();
        let rows = vec![vec![tile.clone(), tile.clone()]];
        let path = dir.join("grid.png");
        let k = magnification(8);
        assert_eq!((k, magnification(32), magnification(256)), (16, 4, 4));
        save_labelled_grid(
            &path,
            &["input".into(), "output".into()],
            &rows,
            Scale::Unit,
            k,
        )
        .unwrap();
        let img = image::open(&path).unwrap().into_rgb8();
        let cell = 8 * k;
        assert_eq!(
            img.dimensions(),
            ((2 * (cell + 2) + 2) as u32, (22 + cell + 4) as u32)
        );
        // Nearest neighbour: a k x k block repeats one source pixel (pixel (0, 1) of the tile).
        let p = |x: usize, y: usize| img.get_pixel((2 + x) as u32, (24 + y) as u32).0;
        assert!((0..k).all(|d| p(k + d, k - 1) == p(k, 0)));
        assert_ne!(p(k, 0), p(0, 0));
        // The header holds dark label pixels.
        assert!((0..img.width()).any(|x| (0..20).any(|y| img.get_pixel(x, y).0[0] < 128)));
        std::fs::remove_dir_all(&dir).ok();
    }
}
