//! The labelled image files the classification experiments read: Fashion-MNIST (Debian's
//! `dataset-fashion-mnist`), MNIST-style IDX files from a folder, CIFAR-10 binary batches.

use anyhow::{bail, Context as _, Result};
use data::{Cifar, CifarKind, Idx, ImageSource, StoredImages};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use std::path::{Path, PathBuf};

/// An opened labelled data set (the training file of each format).
pub enum LabelledSource {
    Idx(Idx, String),
    Cifar(Cifar, String),
}

impl LabelledSource {
    /// Opens `spec`: `["fashion-mnist"]`, `["mnist-idx", DIR]` (a folder with
    /// `train-images-idx3-ubyte[.gz]` and `train-labels-idx1-ubyte[.gz]`) or `["cifar10", DIR]`
    /// (a folder with `data_batch_1.bin` .. `data_batch_5.bin`).
    pub fn open(spec: &[String]) -> Result<Self> {
        match spec {
            [name] if name == "fashion-mnist" => {
                Ok(Self::Idx(data::fashion_mnist()?, "Fashion-MNIST".into()))
            }
            [name, dir] if name == "mnist-idx" => {
                let dir = Path::new(dir);
                let find = |stem: &str| -> Result<PathBuf> {
                    [stem.to_string(), format!("{stem}.gz")]
                        .iter()
                        .map(|f| dir.join(f))
                        .find(|p| p.is_file())
                        .with_context(|| format!("{}: no {stem}[.gz]", dir.display()))
                };
                let idx = Idx::open(
                    &find("train-images-idx3-ubyte")?,
                    Some(&find("train-labels-idx1-ubyte")?),
                )?;
                Ok(Self::Idx(idx, format!("IDX {}", dir.display())))
            }
            [name, dir] if name == "cifar10" => {
                let cifar = Cifar::open_dir(Path::new(dir), CifarKind::Cifar10, true)?;
                Ok(Self::Cifar(cifar, format!("CIFAR-10 {dir}")))
            }
            other => bail!(
                "--dataset {other:?}: expected `fashion-mnist`, `mnist-idx DIR` or `cifar10 DIR`"
            ),
        }
    }

    fn source(&self) -> &dyn ImageSource {
        match self {
            Self::Idx(s, _) => s,
            Self::Cifar(s, _) => s,
        }
    }

    /// The images as stored (bytes, `C x H x W`).
    pub fn stored(&self) -> &StoredImages {
        match self {
            Self::Idx(s, _) => s.stored(),
            Self::Cifar(s, _) => s.stored(),
        }
    }

    /// Label of image `index`; an error when the file has none.
    pub fn label(&self, index: u64) -> Result<usize> {
        self.source()
            .label(index)?
            .with_context(|| format!("{}: the file has no labels", self.name()))
    }

    /// Number of classes (1 when the file has no labels, which [`Self::label`] then reports).
    pub fn classes(&self) -> usize {
        self.source().classes().unwrap_or(1)
    }

    /// A name for tables and messages.
    pub fn name(&self) -> &str {
        match self {
            Self::Idx(_, n) | Self::Cifar(_, n) => n,
        }
    }
}

/// The data and repetition flags the classification experiments share; `None` takes the
/// experiment's default (its full protocol, or the smaller `--quick` one).
#[derive(clap::Args, Debug)]
pub struct DataArgs {
    /// `fashion-mnist` (Debian's dataset-fashion-mnist), `mnist-idx DIR` (a folder with
    /// `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`) or `cifar10 DIR` (a folder
    /// with CIFAR-10's `data_batch_1.bin` .. `data_batch_5.bin`; not every experiment takes it).
    #[arg(long, num_args = 1..=2, value_names = ["NAME", "DIR"], default_values_t = vec!["fashion-mnist".to_string()])]
    pub dataset: Vec<String>,
    /// Output folder (default `runs/<experiment>/<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Number of seeds.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Training images, drawn from the training file.
    #[arg(long)]
    pub train: Option<usize>,
    /// Validation images, drawn from the rest of the training file.
    #[arg(long)]
    pub val: Option<usize>,
}

/// A disjoint random `(train, val)` split of `0..count` (fixed shuffle, the same every run).
pub fn shuffled_split(
    source: &LabelledSource,
    train: usize,
    val: usize,
) -> Result<(Vec<u64>, Vec<u64>)> {
    let count = source.stored().count();
    if train == 0 || val == 0 || train + val > count {
        bail!(
            "{train} training + {val} validation images requested (both > 0); {} holds {count}",
            source.name()
        );
    }
    let mut order: Vec<u64> = (0..count as u64).collect();
    order.shuffle(&mut StdRng::seed_from_u64(0x5eed));
    let val_ids = order[train..train + val].to_vec();
    order.truncate(train);
    Ok((order, val_ids))
}

/// Fractions as a percentage table cell, `mean ± sd`.
pub fn percent_cell(v: &[f64]) -> String {
    let (m, s) = crate::reproduce::mean_sd(v);
    format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s)
}

/// Writes `count` 28x28 IDX training images and labels into `dir` (class 0: bright left half,
/// class 1: bright right half), for the experiments' tests.
#[cfg(test)]
pub fn write_test_idx(dir: &Path, count: usize) {
    let mut images = vec![0u8, 0, 8, 3];
    let mut labels = vec![0u8, 0, 8, 1];
    for d in [count as u32, 28, 28] {
        images.extend(d.to_be_bytes());
    }
    labels.extend((count as u32).to_be_bytes());
    for i in 0..count {
        let class = i % 2;
        labels.push(class as u8);
        for _ in 0..28 {
            for c in 0..28 {
                images.push(if (c < 14) == (class == 0) { 200 + (i % 7) as u8 } else { 10 });
            }
        }
    }
    std::fs::write(dir.join("train-images-idx3-ubyte"), images).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
}

/// Writes CIFAR-10's five training batch files into `dir`, `per_file` images each (label
/// `i % 10`, every byte of image `i` equal to `i`), for the experiments' tests.
#[cfg(test)]
pub fn write_test_cifar10(dir: &Path, per_file: usize) {
    for b in 0..5 {
        let mut bytes = Vec::new();
        for k in 0..per_file {
            let i = b * per_file + k;
            bytes.push((i % 10) as u8);
            bytes.extend(std::iter::repeat_n(i as u8, 3 * 32 * 32));
        }
        std::fs::write(dir.join(format!("data_batch_{}.bin", b + 1)), bytes).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_every_format_and_names_bad_specs() {
        let dir = std::env::temp_dir().join(format!("xtask-labelled-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_test_cifar10(&dir, 3);
        write_test_idx(&dir, 6);
        let d = dir.to_str().unwrap().to_string();
        let cifar = LabelledSource::open(&["cifar10".into(), d.clone()]).unwrap();
        assert_eq!((cifar.stored().count(), cifar.stored().shape(), cifar.classes()), (15, (3, 32, 32), 10));
        assert_eq!((cifar.label(7).unwrap(), cifar.stored().raw(7).unwrap()[100]), (7, 7));
        let idx = LabelledSource::open(&["mnist-idx".into(), d.clone()]).unwrap();
        assert_eq!((idx.stored().count(), idx.stored().shape(), idx.label(3).unwrap()), (6, (1, 28, 28), 1));
        let (train, val) = shuffled_split(&idx, 4, 2).unwrap();
        let mut all: Vec<u64> = train.iter().chain(&val).copied().collect();
        all.sort();
        assert_eq!(all, (0..6).collect::<Vec<_>>(), "disjoint and complete");
        assert!(format!("{:#}", shuffled_split(&idx, 5, 2).unwrap_err()).contains("holds 6"));
        let e = format!("{:#}", LabelledSource::open(&["svhn".into()]).err().unwrap());
        assert!(e.contains("svhn") && e.contains("cifar10 DIR"), "{e}");
        let e = format!("{:#}", LabelledSource::open(&["mnist-idx".into(), "/nonexistent".into()]).err().unwrap());
        assert!(e.contains("/nonexistent") && e.contains("train-images-idx3-ubyte"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn percent_cells_show_mean_and_sd() {
        assert_eq!(percent_cell(&[0.8, 0.9]), "85.0 ± 7.1");
    }
}
