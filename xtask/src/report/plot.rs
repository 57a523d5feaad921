//! Line plots written as PNG files (validation loss against #WU and against wall time).
//!
//! Text is drawn with DejaVu Sans embedded in the binary (`assets/DejaVuSans.ttf`, licence in
//! `assets/DejaVuSans-LICENSE.txt`), so plots work on machines without fontconfig.

use anyhow::{bail, Context as _, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
pub(crate) const FONT_NAME: &str = "sans-serif";
const SIZE: (u32, u32) = (900, 600);

/// One named curve: `(x, y)` points in drawing order.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Axis labels and options of a plot.
#[derive(Debug, Clone)]
pub struct Axes<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Logarithmic y axis (positive values only; others are dropped).
    pub log_y: bool,
}

pub(crate) fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT)
            .map_err(|_| anyhow::anyhow!("embedded font DejaVuSans.ttf is invalid"));
    });
    result
}

/// Finite points of `s` (positive y only when `log_y`).
fn usable(s: &Series, log_y: bool) -> Vec<(f64, f64)> {
    s.points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
        .collect()
}

/// Draw `series` as lines with a legend into a PNG at `path`.
pub fn line_plot(path: &Path, axes: &Axes, series: &[Series]) -> Result<()> {
    register_font()?;
    let curves: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| (s.name.clone(), usable(s, axes.log_y)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let all = || curves.iter().flat_map(|(_, p)| p.iter());
    if curves.is_empty() {
        bail!("plot {}: no finite points to draw", path.display());
    }
    let (mut x0, mut x1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let (mut y0, mut y1) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    if x1 <= x0 {
        x1 = x0 + 1.0;
        x0 -= 1.0;
    }
    if y1 <= y0 {
        let d = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.1 };
        (y0, y1) = (y0 - d, y1 + d);
    }
    let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut chart = ChartBuilder::on(&root);
        chart
            .caption(axes.title, (FONT_NAME, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(80);
        let palette = |i: usize| Palette99::pick(i).to_rgba();
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(axes.x_label)
                    .y_desc(axes.y_label)
                    .label_style((FONT_NAME, 14))
                    .axis_desc_style((FONT_NAME, 16))
                    .draw()
                    .map_err(draw_err)?;
                for (i, (name, pts)) in curves.iter().enumerate() {
                    let color = palette(i);
                    chart
                        .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                        .map_err(draw_err)?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                }
                chart
                    .configure_series_labels()
                    .label_font((FONT_NAME, 14))
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(draw_err)?;
            }};
        }
        if axes.log_y {
            draw!(chart
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(draw_err)?);
        } else {
            draw!(chart.build_cartesian_2d(x0..x1, y0..y1).map_err(draw_err)?);
        }
        root.present().map_err(draw_err)?;
    }
    let img =
        image::RgbImage::from_raw(SIZE.0, SIZE.1, buf).context("plot buffer has the wrong size")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_with_drawn_curves() {
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        let path = dir.join("loss.png");
        let s = |name: &str, k: f64| Series {
            name: name.into(),
            points: (1..50).map(|i| (i as f64 * 10.0, k / i as f64)).collect(),
        };
        let axes = Axes {
            title: "validation loss",
            x_label: "#WU",
            y_label: "MSE",
            log_y: true,
        };
        line_plot(&path, &axes, &[s("single", 1.0), s("multiscale", 0.5)]).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), SIZE);
        // Not blank: curves and text put many non-white pixels on the canvas.
        let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(inked > 2000, "only {inked} inked pixels");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn refuses_a_plot_without_finite_points() {
        let path = std::env::temp_dir().join("xtask-plot-empty.png");
        let axes = Axes {
            title: "t",
            x_label: "x",
            y_label: "y",
            log_y: true,
        };
        let s = Series {
            name: "bad".into(),
            points: vec![(1.0, f64::NAN), (2.0, -1.0)],
        };
        assert!(line_plot(&path, &axes, &[s]).is_err());
    }
}
