//! CIFAR-10 and CIFAR-100 binary version: fixed-size records of label byte(s) then 3072 pixel
//! bytes (1024 red, 1024 green, 1024 blue, each 32x32 row-major).

use crate::stored::{stored_source, StoredImages};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Which labels a CIFAR file carries and which to expose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarKind {
    /// CIFAR-10: 1 label byte in `0..10`, records of 3073 bytes.
    Cifar10,
    /// CIFAR-100, coarse label (first byte, `0..20`), records of 3074 bytes.
    Cifar100Coarse,
    /// CIFAR-100, fine label (second byte, `0..100`), records of 3074 bytes.
    Cifar100Fine,
}

impl CifarKind {
    fn label_bytes(self) -> usize {
        if self == CifarKind::Cifar10 {
            1
        } else {
            2
        }
    }
    fn classes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100Coarse => 20,
            CifarKind::Cifar100Fine => 100,
        }
    }
}

/// Pixel bytes per CIFAR image.
const PIXELS: usize = 3 * 32 * 32;

/// CIFAR images `[3, 32, 32]` with labels, from one or more binary batch files.
#[derive(Debug, Clone)]
pub struct Cifar {
    images: StoredImages,
}

impl Cifar {
    /// Reads the records of every file in `files` in order. Errors name the file when its length
    /// is not a positive multiple of the record size or a label is out of range.
    pub fn open(files: &[PathBuf], kind: CifarKind) -> Result<Self> {
        let record = kind.label_bytes() + PIXELS;
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
        for path in files {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            if bytes.is_empty() || bytes.len() % record != 0 {
                return Err(Error::format(
                    path,
                    format!(
                        "truncated or not {kind:?}: {} bytes is not a positive multiple of the {record}-byte record",
                        bytes.len()
                    ),
                ));
            }
            for (r, rec) in bytes.chunks_exact(record).enumerate() {
                let label = rec[if kind == CifarKind::Cifar100Fine {
                    1
                } else {
                    0
                }];
                let coarse_ok = kind != CifarKind::Cifar100Fine || (rec[0] as usize) < 20;
                if label as usize >= kind.classes() || !coarse_ok {
                    return Err(Error::format(
                        path,
                        format!("record {r}: label out of range for {kind:?} (corrupt file)"),
                    ));
                }
                labels.push(label as u16);
                pixels.extend_from_slice(&rec[kind.label_bytes()..]);
            }
        }
        if files.is_empty() {
            return Err(Error::InvalidArgument(
                "Cifar::open needs at least one file".into(),
            ));
        }
        let images = StoredImages {
            channels: 3,
            height: 32,
            width: 32,
            pixels,
            labels: Some(labels),
            classes: Some(kind.classes()),
        };
        Ok(Self { images })
    }

    /// The standard split in the extracted archive folder `dir`: CIFAR-10 `data_batch_1..5.bin`
    /// or `test_batch.bin`; CIFAR-100 `train.bin` or `test.bin`.
    pub fn open_dir(dir: &Path, kind: CifarKind, train: bool) -> Result<Self> {
        let files: Vec<PathBuf> = match (kind, train) {
            (CifarKind::Cifar10, true) => (1..=5)
                .map(|i| dir.join(format!("data_batch_{i}.bin")))
                .collect(),
            (CifarKind::Cifar10, false) => vec![dir.join("test_batch.bin")],
            (_, true) => vec![dir.join("train.bin")],
            (_, false) => vec![dir.join("test.bin")],
        };
        Self::open(&files, kind)
    }

    /// The stored images.
    pub fn stored(&self) -> &StoredImages {
        &self.images
    }
}

stored_source!(Cifar);
