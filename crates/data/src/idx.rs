//! IDX files (LeCun's MNIST format, also Fashion-MNIST), plain or gzip-compressed.
//!
//! Layout: magic `00 00 TT DD` (`TT` element type, `DD` number of dimensions), `DD` big-endian
//! u32 sizes, then the elements row-major. Only unsigned bytes (`TT = 0x08`) are images/labels.

use crate::stored::{read_maybe_gz, stored_source, StoredImages};
use crate::{Error, Result};
use std::path::Path;

/// A parsed IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// The `prod(dims)` elements, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file (gzip detected from its magic bytes). Checks the magic, the element type,
/// the rank and that exactly `prod(dims)` bytes follow the header; errors name the file.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    parse_idx(&read_maybe_gz(path)?, path)
}

/// Parses the bytes of an IDX file (see [`read_idx`]); `path` is only used in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let bad = |problem: String| Error::format(path, problem);
    if bytes.len() < 4 {
        return Err(bad(format!(
            "truncated: {} bytes, an IDX header needs at least 4",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "bad IDX magic {:02x} {:02x}, expected 00 00",
            bytes[0], bytes[1]
        )));
    }
    match bytes[2] {
        0x08 => {}
        t @ (0x09 | 0x0B | 0x0C | 0x0D | 0x0E) => {
            return Err(bad(format!(
                "IDX element type 0x{t:02x} is not supported, only unsigned bytes (0x08)"
            )))
        }
        t => return Err(bad(format!("bad IDX element type 0x{t:02x}"))),
    }
    let rank = bytes[3] as usize;
    if rank == 0 {
        return Err(bad("IDX rank 0: no dimensions".into()));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad(format!(
            "truncated header: {} bytes, {rank} dimensions need {header}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let found = bytes.len() - header;
    if found < expected {
        return Err(bad(format!(
            "truncated: dimensions {dims:?} need {expected} data bytes, found {found}"
        )));
    }
    if found > expected {
        return Err(bad(format!(
            "{} trailing bytes after the {expected} data bytes of dimensions {dims:?}",
            found - expected
        )));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Grey images from an IDX file of rank 3 `[N, rows, cols]`, with optional labels from an IDX
/// file of rank 1 `[N]`; pixels are `byte / 255`.
#[derive(Debug, Clone)]
pub struct Idx {
    images: StoredImages,
}

impl Idx {
    /// Opens `images` (rank 3) and optionally `labels` (rank 1, same `N`); the number of classes
    /// is the largest label plus one.
    pub fn open(images: &Path, labels: Option<&Path>) -> Result<Self> {
        let arr = read_idx(images)?;
        let [count, height, width] = arr.dims[..] else {
            return Err(Error::format(
                images,
                format!(
                    "expected images of rank 3 [N, rows, cols], found dimensions {:?}",
                    arr.dims
                ),
            ));
        };
        let labels = match labels {
            Some(path) => {
                let lab = read_idx(path)?;
                if lab.dims != [count] {
                    return Err(Error::format(
                        path,
                        format!(
                            "expected {count} labels of rank 1, found dimensions {:?}",
                            lab.dims
                        ),
                    ));
                }
                Some(lab.data.into_iter().map(u16::from).collect::<Vec<_>>())
            }
            None => None,
        };
        let classes = labels
            .as_ref()
            .map(|l| l.iter().copied().max().map_or(0, |m| m as usize + 1));
        Ok(Self {
            images: StoredImages {
                channels: 1,
                height,
                width,
                pixels: arr.data,
                labels,
                classes,
            },
        })
    }

    /// The stored images.
    pub fn stored(&self) -> &StoredImages {
        &self.images
    }
}

stored_source!(Idx);
