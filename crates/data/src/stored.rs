//! In-memory byte images shared by the binary readers ([`crate::Idx`], [`crate::Cifar`],
//! [`crate::Stl10`]): planar `[C, H, W]` u8 pixels, optional labels, resized on demand.

use crate::resize::resize_square;
use crate::source::check_size;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::io::Read;
use std::path::Path;

/// `count` images of `[channels, height, width]` bytes each, stored back to back, with optional
/// class labels.
#[derive(Debug, Clone)]
pub struct StoredImages {
    pub(crate) channels: usize,
    pub(crate) height: usize,
    pub(crate) width: usize,
    pub(crate) pixels: Vec<u8>,
    pub(crate) labels: Option<Vec<u16>>,
    pub(crate) classes: Option<usize>,
}

impl StoredImages {
    /// Number of images.
    pub fn count(&self) -> usize {
        self.pixels.len() / (self.channels * self.height * self.width).max(1)
    }

    /// `(channels, height, width)` of the stored images.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.channels, self.height, self.width)
    }

    /// The stored bytes of image `index`, planar `[C, H, W]`.
    pub fn raw(&self, index: u64) -> Result<&[u8]> {
        let size = self.channels * self.height * self.width;
        let i = self.check(index)?;
        Ok(&self.pixels[i * size..(i + 1) * size])
    }

    fn check(&self, index: u64) -> Result<usize> {
        let len = self.count();
        match usize::try_from(index) {
            Ok(i) if i < len => Ok(i),
            _ => Err(Error::IndexOutOfRange { index, len }),
        }
    }

    /// Image `index` as `[C, n, n]` in `[0, 1]`: bytes / 255, then area filter down or bicubic up
    /// (a non-square image is resized to a square, as the data sets here are all square).
    pub(crate) fn image(&self, index: u64, n: usize) -> Result<Tensor> {
        check_size(n)?;
        let px: Vec<f32> = self.raw(index)?.iter().map(|&b| b as f32 / 255.0).collect();
        let out = resize_square(&px, self.channels, self.height, self.width, n);
        Ok(Tensor::from_vec(out, (self.channels, n, n), &Device::Cpu)?)
    }

    pub(crate) fn label(&self, index: u64) -> Result<Option<usize>> {
        let i = self.check(index)?;
        Ok(self.labels.as_ref().map(|l| l[i] as usize))
    }
}

/// Implements [`crate::ImageSource`] for a reader type that holds a `StoredImages` in `.images`.
macro_rules! stored_source {
    ($ty:ty) => {
        impl $crate::ImageSource for $ty {
            fn channels(&self) -> usize {
                self.images.channels
            }
            fn len(&self) -> Option<usize> {
                Some(self.images.count())
            }
            fn image(&self, index: u64, n: usize) -> $crate::Result<candle_core::Tensor> {
                self.images.image(index, n)
            }
            fn label(&self, index: u64) -> $crate::Result<Option<usize>> {
                self.images.label(index)
            }
            fn classes(&self) -> Option<usize> {
                self.images.classes
            }
        }
    };
}
pub(crate) use stored_source;

/// Reads a whole file, transparently gunzipping it when it starts with the gzip magic `1f 8b`.
/// Every gzip member is read (as `gzip -d` does with concatenated members); bytes after the
/// last member that are not another member are refused, as is a truncated member.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        gunzip_members(&bytes).map_err(|problem| Error::format(path, problem))
    } else {
        Ok(bytes)
    }
}

/// The concatenated contents of the gzip members making up all of `bytes`.
pub(crate) fn gunzip_members(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut member = 0usize;
    while !rest.is_empty() {
        member += 1;
        let offset = bytes.len() - rest.len();
        if !rest.starts_with(&[0x1f, 0x8b]) {
            return Err(format!(
                "{} bytes of trailing garbage at offset {offset}, after gzip member {}",
                rest.len(),
                member - 1
            ));
        }
        let mut dec = flate2::bufread::GzDecoder::new(rest);
        dec.read_to_end(&mut out).map_err(|e| {
            format!("corrupt or truncated gzip stream (member {member} at offset {offset}): {e}")
        })?;
        let left = dec.into_inner();
        if left.len() == rest.len() {
            return Err(format!("gzip member {member} at offset {offset} is empty"));
        }
        rest = left;
    }
    Ok(out)
}
