//! `cargo xtask stencil restrict|prolong "<k*k numbers>"`: Galerkin transfer of one stencil
//! between meshes h and 2h (002 eqs. 2.6b and 4.14), printed one row per line, 4 decimals.

use crate::common::{ensure_out_dir, Context};
use anyhow::{bail, Context as _, Result};
use grids::galerkin::{coarse_stencil, fine_stencil};
use grids::{Matrix, Prolongation, Restriction};
use std::path::PathBuf;

/// Which way to move the stencil.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Direction {
    /// Fine -> coarse: `s_H = M s_h M^T` (`K_H = R K_h P`).
    Restrict,
    /// Coarse -> fine: solve `R K(s_h) P = K(s_H)` (the 9x9 system).
    Prolong,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `restrict` (fine to coarse) or `prolong` (coarse to fine).
    #[arg(value_enum)]
    direction: Direction,
    /// The stencil, row-major, comma- or space-separated (9 numbers for 3x3; may start with `-`).
    #[arg(allow_hyphen_values = true)]
    stencil: String,
    /// Restriction R: average, injection or full-weighting.
    #[arg(long, default_value = "average")]
    restriction: Restriction,
    /// Prolongation P: bilinear or constant.
    #[arg(long, default_value = "bilinear")]
    prolongation: Prolongation,
    /// Also write the result to DIR/stencil.txt.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args, _ctx: &Context) -> Result<()> {
    let s = parse_stencil(&args.stencil)?;
    let (r, p) = (args.restriction, args.prolongation);
    let result = match args.direction {
        Direction::Restrict => coarse_stencil(&s, r, p),
        Direction::Prolong => fine_stencil(&s, r, p),
    }
    .with_context(|| format!("{:?} with {r} + {p}", args.direction))?;
    let text = format_stencil(&result);
    print!("{text}");
    if let Some(dir) = args.out {
        let path = ensure_out_dir(&dir)?.join("stencil.txt");
        std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        tracing::info!("wrote {}", path.display());
    }
    Ok(())
}

/// Parses `k*k` numbers (k odd) into a `k x k` stencil.
fn parse_stencil(text: &str) -> Result<Matrix> {
    // Numbers separated by commas and/or whitespace; an empty field between two commas is
    // an error, not skipped, and every number must be finite.
    let mut values = Vec::new();
    for (i, field) in text.split(',').enumerate() {
        let tokens: Vec<&str> = field.split_whitespace().collect();
        if tokens.is_empty() {
            bail!(
                "empty field {} in {text:?} (two commas in a row, or a comma at an end)",
                i + 1
            );
        }
        for t in tokens {
            let v = t
                .parse::<f64>()
                .with_context(|| format!("not a number: {t:?}"))?;
            if !v.is_finite() {
                bail!("not a finite number: {t:?}");
            }
            values.push(v);
        }
    }
    let k = (values.len() as f64).sqrt().round() as usize;
    if k * k != values.len() || k.is_multiple_of(2) {
        bail!(
            "expected k*k numbers with k odd (9 for a 3x3 stencil), got {}",
            values.len()
        );
    }
    Ok(Matrix::from_vec(k, k, values)?)
}

/// One row per line, 4 decimals, right-aligned columns; `-0.0000` printed as `0.0000`.
fn format_stencil(s: &Matrix) -> String {
    let mut out = String::new();
    for i in 0..s.rows() {
        let row: Vec<String> = (0..s.cols())
            .map(|j| {
                let v = s[(i, j)];
                format!("{:>8.4}", if v.abs() < 5e-5 { 0.0 } else { v })
            })
            .collect();
        out.push_str(&row.join(" "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let s = parse_stencil("1, 2,3 4 5 6,7,8,-0.00001").unwrap();
        assert_eq!(s[(2, 1)], 8.0);
        assert_eq!(
            format_stencil(&s).lines().nth(2).unwrap(),
            "  7.0000   8.0000   0.0000"
        );
        assert!(parse_stencil("1,2,3,4").is_err());
        assert!(parse_stencil("1,2,x,4,5,6,7,8,9").is_err());
    }

    /// Smaller cases: an empty field and NaN/inf are refused, not dropped or accepted.
    #[test]
    fn empty_fields_and_non_finite_numbers_are_refused() {
        let e = parse_stencil("0,,1,0,1,-4,1,0,1,0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty field 2"), "{e}");
        assert!(parse_stencil("0,1,0,1,-4,1,0,1,0,").is_err());
        for bad in ["NaN", "inf", "-inf", "1e999"] {
            let e = parse_stencil(&format!("0,1,0,1,{bad},1,0,1,0"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("finite"), "{bad}: {e}");
        }
    }
}
