//! STL-10 binary version: `*_X.bin` holds 96x96x3 byte images, each stored column-major
//! (channel, then column, then row: byte `c*9216 + x*96 + y` is pixel row `y`, column `x`);
//! `*_y.bin` holds one label byte per image in `1..=10`.

use crate::stored::{stored_source, StoredImages};
use crate::{Error, Result};
use std::path::Path;

/// Image side of STL-10.
const SIDE: usize = 96;
/// Bytes per STL-10 image.
const IMAGE_BYTES: usize = 3 * SIDE * SIDE;

/// STL-10 images `[3, 96, 96]` (transposed to row-major), labels `0..10` (file value minus 1).
#[derive(Debug, Clone)]
pub struct Stl10 {
    images: StoredImages,
}

impl Stl10 {
    /// Reads `images` (`*_X.bin`) and optionally `labels` (`*_y.bin`, one byte per image).
    pub fn open(images: &Path, labels: Option<&Path>) -> Result<Self> {
        let bytes = std::fs::read(images).map_err(|e| Error::io(images, e))?;
        if bytes.is_empty() || bytes.len() % IMAGE_BYTES != 0 {
            return Err(Error::format(
                images,
                format!(
                    "truncated: {} bytes is not a positive multiple of {IMAGE_BYTES} (96x96x3)",
                    bytes.len()
                ),
            ));
        }
        let count = bytes.len() / IMAGE_BYTES;
        let mut pixels = vec![0u8; bytes.len()];
        for (src, dst) in bytes
            .chunks_exact(SIDE * SIDE)
            .zip(pixels.chunks_exact_mut(SIDE * SIDE))
        {
            for x in 0..SIDE {
                for y in 0..SIDE {
                    dst[y * SIDE + x] = src[x * SIDE + y];
                }
            }
        }
        let labels = match labels {
            Some(path) => {
                let lab = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                if lab.len() != count {
                    return Err(Error::format(
                        path,
                        format!("{} labels for {count} images", lab.len()),
                    ));
                }
                if let Some(pos) = lab.iter().position(|&l| !(1..=10).contains(&l)) {
                    return Err(Error::format(
                        path,
                        format!("label {} at position {pos} is outside 1..=10", lab[pos]),
                    ));
                }
                Some(lab.into_iter().map(|l| u16::from(l) - 1).collect())
            }
            None => None,
        };
        let classes = labels.as_ref().map(|_| 10);
        Ok(Self {
            images: StoredImages {
                channels: 3,
                height: SIDE,
                width: SIDE,
                pixels,
                labels,
                classes,
            },
        })
    }

    /// The stored images (row-major after transposition).
    pub fn stored(&self) -> &StoredImages {
        &self.images
    }
}

stored_source!(Stl10);
