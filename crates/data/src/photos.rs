//! Folders of PNG/JPEG photos (CelebA, Urban100, DIV2K, the shipped `datasets/photos`, ...).
//!
//! Each photo is decoded once, converted to RGB and centre-cropped to a square of side
//! `min(width, height)`; `image(index, n)` resizes that square to `n x n` (area filter down,
//! bicubic up; SPEC section 6). Optionally grey (`Y = 0.299 R + 0.587 G + 0.114 B`, ITU-R
//! BT.601) and optionally random square patches instead of the whole square.

use crate::resize::resize_square;
use crate::source::{check_size, mix_seed, ImageSource};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use std::path::{Path, PathBuf};

/// One decoded photo: planar RGB bytes of its centre square.
#[derive(Debug, Clone)]
struct Photo {
    path: PathBuf,
    side: usize,
    rgb: Vec<u8>,
}

/// The photos of one folder (files ending in `.png`, `.jpg` or `.jpeg`, any case), sorted by
/// file name. Finite (`len()` = number of photos) unless random crops are enabled.
#[derive(Debug, Clone)]
pub struct PhotoFolder {
    photos: Vec<Photo>,
    grayscale: bool,
    crops: Option<(usize, u64)>,
}

/// Whether `path` has a PNG or JPEG file extension.
fn is_photo(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
}

/// Why the JPEG `bytes` are incomplete, if they are: the decoder fills a truncated scan with
/// grey instead of failing, so the end-of-image marker `FF D9` is looked for after the first
/// start-of-scan (walking the marker segments before it, so a thumbnail's own end marker in
/// an APP segment does not count).
pub(crate) fn jpeg_truncation(bytes: &[u8]) -> Option<String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    loop {
        // Fill bytes (FF FF ...) may precede a marker.
        while i + 1 < bytes.len() && bytes[i] == 0xFF && bytes[i + 1] == 0xFF {
            i += 1;
        }
        if i + 4 > bytes.len() {
            return Some(format!(
                "truncated JPEG: the file ends ({} bytes) before the image data starts",
                bytes.len()
            ));
        }
        if bytes[i] != 0xFF {
            return Some(format!("corrupt JPEG: no marker at byte {i}"));
        }
        let marker = bytes[i + 1];
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            i += 2;
            continue;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if marker == 0xD9 {
            return Some("JPEG without image data (end marker before any scan)".into());
        }
        let next = i + 2 + len;
        if marker == 0xDA {
            let scan = &bytes[next.min(bytes.len())..];
            return if scan.windows(2).any(|w| w == [0xFF, 0xD9]) {
                None
            } else {
                Some(format!(
                    "truncated JPEG: no end-of-image marker after the image data ({} bytes; the file was cut short)",
                    bytes.len()
                ))
            };
        }
        i = next;
    }
}

/// Decodes `path` (format from the content) and keeps its centred square as planar RGB.
/// A truncated JPEG, or any image whose decoder reports a premature end, is an error naming
/// the file.
fn decode(path: &Path) -> Result<Photo> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if let Some(problem) = jpeg_truncation(&bytes) {
        return Err(Error::format(path, problem));
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    // A decoder bug must not take the process down: a panic is reported as this file's error.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.decode()))
        .map_err(|_| Error::format(path, "the image decoder failed (corrupt file)"))?;
    let img = decoded
        .map_err(|source| Error::Decode {
            path: path.to_path_buf(),
            source,
        })?
        .into_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let side = w.min(h);
    if side == 0 {
        return Err(Error::format(path, "empty image"));
    }
    let (x0, y0) = ((w - side) / 2, (h - side) / 2);
    let mut rgb = vec![0u8; 3 * side * side];
    for y in 0..side {
        for x in 0..side {
            let p = img.get_pixel((x0 + x) as u32, (y0 + y) as u32).0;
            for c in 0..3 {
                rgb[(c * side + y) * side + x] = p[c];
            }
        }
    }
    Ok(Photo {
        path: path.to_path_buf(),
        side,
        rgb,
    })
}

impl PhotoFolder {
    /// Decodes every PNG/JPEG in `dir` (not recursive). Errors name the folder when it cannot be
    /// listed or holds no photo, and the file when one cannot be decoded.
    pub fn open(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.is_file() && is_photo(&path) {
                paths.push(path);
            }
        }
        paths.sort();
        if paths.is_empty() {
            return Err(Error::format(
                dir,
                "no .png, .jpg or .jpeg files in this folder",
            ));
        }
        let photos = paths
            .iter()
            .map(|p| decode(p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            photos,
            grayscale: false,
            crops: None,
        })
    }

    /// Grey (one channel, BT.601 luma) instead of RGB.
    pub fn grayscale(mut self, grey: bool) -> Self {
        self.grayscale = grey;
        self
    }

    /// Turns the folder into an infinite source of random square patches: image `index` is a
    /// patch of side `min(patch, photo side)` of photo `index mod count` at a position drawn from
    /// `mix_seed(seed, index)`, then resized to `n`.
    pub fn with_random_crops(mut self, patch: usize, seed: u64) -> Self {
        self.crops = Some((patch.max(1), seed));
        self
    }

    /// Splits off `count` photos for validation, chosen by a shuffle seeded with `seed`:
    /// `(training, validation)`, disjoint, each in file-name order. Errors when fewer than
    /// `count + 1` photos are left for training.
    pub fn split_validation(self, count: usize, seed: u64) -> Result<(Self, Self)> {
        let n = self.photos.len();
        if count >= n {
            let dir = self.photos[0]
                .path
                .parent()
                .unwrap_or(Path::new(""))
                .to_path_buf();
            return Err(Error::format(
                dir,
                format!("{n} photos cannot give {count} validation photos and at least one for training"),
            ));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let mut held = vec![false; n];
        order[..count].iter().for_each(|&i| held[i] = true);
        let (mut train, mut validation) = (Vec::new(), Vec::new());
        for (photo, held) in self.photos.into_iter().zip(held) {
            if held {
                validation.push(photo);
            } else {
                train.push(photo);
            }
        }
        let part = |photos| Self {
            photos,
            grayscale: self.grayscale,
            crops: self.crops,
        };
        Ok((part(train), part(validation)))
    }

    /// File paths of the photos, in index order.
    pub fn paths(&self) -> Vec<&Path> {
        self.photos.iter().map(|p| p.path.as_path()).collect()
    }

    /// The photo, the patch side and its top-left corner for image `index`.
    fn window(&self, index: u64) -> Result<(&Photo, usize, usize, usize)> {
        let count = self.photos.len();
        match self.crops {
            None => {
                let i = usize::try_from(index).ok().filter(|&i| i < count);
                let photo = &self.photos[i.ok_or(Error::IndexOutOfRange { index, len: count })?];
                Ok((photo, photo.side, 0, 0))
            }
            Some((patch, seed)) => {
                let photo = &self.photos[(index % count as u64) as usize];
                let side = patch.min(photo.side);
                let r = mix_seed(seed, index);
                let room = (photo.side - side + 1) as u64;
                Ok((
                    photo,
                    side,
                    (r % room) as usize,
                    ((r >> 32) % room) as usize,
                ))
            }
        }
    }
}

impl ImageSource for PhotoFolder {
    fn channels(&self) -> usize {
        if self.grayscale {
            1
        } else {
            3
        }
    }

    fn len(&self) -> Option<usize> {
        self.crops.is_none().then_some(self.photos.len())
    }

    fn image(&self, index: u64, n: usize) -> Result<Tensor> {
        check_size(n)?;
        let (photo, side, x0, y0) = self.window(index)?;
        let plane = |c: usize| {
            (0..side * side).map(move |k| {
                photo.rgb[(c * photo.side + y0 + k / side) * photo.side + x0 + k % side] as f32
                    / 255.0
            })
        };
        let px: Vec<f32> = if self.grayscale {
            plane(0)
                .zip(plane(1))
                .zip(plane(2))
                .map(|((r, g), b)| 0.299 * r + 0.587 * g + 0.114 * b)
                .collect()
        } else {
            (0..3).flat_map(plane).collect()
        };
        let c = self.channels();
        let out = resize_square(&px, c, side, side, n);
        Ok(Tensor::from_vec(out, (c, n, n), &Device::Cpu)?)
    }
}

/// The shipped photos folder `datasets/photos` of this workspace (found from this crate's
/// `CARGO_MANIFEST_DIR`, i.e. `<workspace>/crates/data/../../datasets/photos`).
pub fn photos_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .join("datasets/photos")
}
