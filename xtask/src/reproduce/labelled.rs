//! The labelled image files the classification experiments read: Fashion-MNIST (Debian's
//! `dataset-fashion-mnist`), MNIST-style IDX files from a folder, CIFAR-10 and CIFAR-100
//! binary batches, STL-10 binary files.

use anyhow::{bail, Context as _, Result};
use data::{Cifar, CifarKind, Idx, ImageSource, SharedSource, Stl10, StoredImages};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use std::path::{Path, PathBuf};

/// An opened labelled data set (the training file of each format).
pub enum LabelledSource {
    Idx(Idx, String),
    Cifar(Cifar, String),
    Stl10(Stl10, String),
}

/// The `--dataset` forms accepted, for messages.
pub const DATASET_FORMS: &str =
    "`fashion-mnist`, `mnist-idx DIR`, `cifar10 DIR`, `cifar100 DIR` or `stl10 DIR`";

impl LabelledSource {
    /// Opens `spec`: `["fashion-mnist"]`, `["mnist-idx", DIR]` (a folder with
    /// `train-images-idx3-ubyte[.gz]` and `train-labels-idx1-ubyte[.gz]`) or `["cifar10", DIR]`
    /// (a folder with `data_batch_1.bin` .. `data_batch_5.bin`), `["cifar100", DIR]` (a folder
    /// with CIFAR-100's `train.bin`, fine labels) or `["stl10", DIR]` (a folder with STL-10's
    /// `train_X.bin` and `train_y.bin`).
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
            [name, dir] if name == "cifar100" => {
                let cifar = Cifar::open_dir(Path::new(dir), CifarKind::Cifar100Fine, true)?;
                Ok(Self::Cifar(cifar, format!("CIFAR-100 {dir}")))
            }
            [name, dir] if name == "stl10" => {
                let dir = Path::new(dir);
                let stl = Stl10::open(&dir.join("train_X.bin"), Some(&dir.join("train_y.bin")))?;
                Ok(Self::Stl10(stl, format!("STL-10 {}", dir.display())))
            }
            other => bail!("--dataset {other:?}: expected {DATASET_FORMS}"),
        }
    }

    fn source(&self) -> &dyn ImageSource {
        match self {
            Self::Idx(s, _) => s,
            Self::Cifar(s, _) => s,
            Self::Stl10(s, _) => s,
        }
    }

    /// The images as a source for the loader (`data preview`).
    pub fn into_shared(self) -> SharedSource {
        match self {
            Self::Idx(s, _) => std::sync::Arc::new(s),
            Self::Cifar(s, _) => std::sync::Arc::new(s),
            Self::Stl10(s, _) => std::sync::Arc::new(s),
        }
    }

    /// The images as stored (bytes, `C x H x W`).
    pub fn stored(&self) -> &StoredImages {
        match self {
            Self::Idx(s, _) => s.stored(),
            Self::Cifar(s, _) => s.stored(),
            Self::Stl10(s, _) => s.stored(),
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
            Self::Idx(_, n) | Self::Cifar(_, n) | Self::Stl10(_, n) => n,
        }
    }
}

/// The data and repetition flags the classification experiments share; `None` takes the
/// experiment's default (its full protocol, or the smaller `--quick` one).
#[derive(clap::Args, Debug)]
pub struct DataArgs {
    /// `fashion-mnist` (Debian's dataset-fashion-mnist), `mnist-idx DIR` (a folder with
    /// `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`), `cifar10 DIR` (a folder
    /// with CIFAR-10's `data_batch_1.bin` .. `data_batch_5.bin`), `cifar100 DIR` (CIFAR-100's
    /// `train.bin`) or `stl10 DIR` (STL-10's `train_X.bin`, `train_y.bin`); each experiment
    /// checks the image size it takes (mnist-multilevel 1x28x28, mgnet at most 32x32).
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

/// `--lr` of the classification experiments: a finite rate in `(0, 1]` (a larger one
/// diverges at once, a negative one climbs the loss).
pub fn check_lr(lr: f64) -> Result<()> {
    if !(lr.is_finite() && lr > 0.0 && lr <= 1.0) {
        bail!("--lr {lr}: must be a positive number at most 1");
    }
    Ok(())
}

/// A count flag in `1..=max`.
pub fn check_count(flag: &str, v: usize, max: usize) -> Result<()> {
    if v == 0 || v > max {
        bail!("{flag} {v}: must be between 1 and {max}");
    }
    Ok(())
}

/// The stop of a classification run whose loss or parameters are not finite.
pub fn diverged(what: &str) -> anyhow::Error {
    anyhow::anyhow!("training diverged: {what}; no table is written (try a smaller --lr)")
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

/// Asserts that each `(flag, value)` of `cases`, given to an experiment with a missing data
/// set and the output folder `name` under the temporary folder, is refused by `run` (called
/// with the command line) with an error naming the flag, and that nothing is written.
#[cfg(test)]
pub fn assert_flags_refused(
    name: &str,
    cases: &[(&str, &str)],
    run: impl Fn(&[&str]) -> Result<()>,
) {
    let out = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let o = out.to_str().unwrap();
    for (flag, value) in cases {
        let argv = [
            "x",
            "--dataset",
            "mnist-idx",
            "/nonexistent",
            "--out",
            o,
            &format!("{flag}={value}"),
        ];
        let e = format!("{:#}", run(&argv).unwrap_err());
        assert!(e.contains(flag), "{flag} {value}: {e}");
    }
    assert!(!out.exists(), "nothing written");
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
                images.push(if (c < 14) == (class == 0) {
                    200 + (i % 7) as u8
                } else {
                    10
                });
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

/// Writes CIFAR-100's `train.bin` (`count` images: coarse label `i % 20`, fine label
/// `i % 100`, every byte of image `i` equal to `i`) into `dir`.
#[cfg(test)]
pub fn write_test_cifar100(dir: &Path, count: usize) {
    let mut bytes = Vec::new();
    for i in 0..count {
        bytes.extend([(i % 20) as u8, (i % 100) as u8]);
        bytes.extend(std::iter::repeat_n(i as u8, 3 * 32 * 32));
    }
    std::fs::write(dir.join("train.bin"), bytes).unwrap();
}

/// Writes STL-10's `train_X.bin` / `train_y.bin` (`count` images, label `i % 10 + 1` in the
/// file, every byte of image `i` equal to `i`) into `dir`.
#[cfg(test)]
pub fn write_test_stl10(dir: &Path, count: usize) {
    let mut x = Vec::new();
    for i in 0..count {
        x.extend(std::iter::repeat_n(i as u8, 3 * 96 * 96));
    }
    std::fs::write(dir.join("train_X.bin"), x).unwrap();
    std::fs::write(
        dir.join("train_y.bin"),
        (0..count).map(|i| (i % 10 + 1) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Smaller cases: the CIFAR-100 and STL-10 readers are reachable from `--dataset`.
    #[test]
    fn opens_cifar100_and_stl10() {
        let dir = std::env::temp_dir().join(format!("xtask-labelled-100-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_test_cifar100(&dir, 5);
        write_test_stl10(&dir, 3);
        let d = dir.to_str().unwrap().to_string();
        let c = LabelledSource::open(&["cifar100".into(), d.clone()]).unwrap();
        assert_eq!(
            (
                c.stored().count(),
                c.stored().shape(),
                c.classes(),
                c.label(4).unwrap()
            ),
            (5, (3, 32, 32), 100, 4)
        );
        let s = LabelledSource::open(&["stl10".into(), d.clone()]).unwrap();
        assert_eq!(
            (
                s.stored().count(),
                s.stored().shape(),
                s.classes(),
                s.label(2).unwrap()
            ),
            (3, (3, 96, 96), 10, 2)
        );
        assert_eq!(s.into_shared().len(), Some(3));
        std::fs::remove_file(dir.join("train_y.bin")).unwrap();
        let e = format!(
            "{:#}",
            LabelledSource::open(&["stl10".into(), d]).err().unwrap()
        );
        assert!(e.contains("train_y.bin"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn opens_every_format_and_names_bad_specs() {
        let dir = std::env::temp_dir().join(format!("xtask-labelled-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_test_cifar10(&dir, 3);
        write_test_idx(&dir, 6);
        let d = dir.to_str().unwrap().to_string();
        let cifar = LabelledSource::open(&["cifar10".into(), d.clone()]).unwrap();
        assert_eq!(
            (
                cifar.stored().count(),
                cifar.stored().shape(),
                cifar.classes()
            ),
            (15, (3, 32, 32), 10)
        );
        assert_eq!(
            (cifar.label(7).unwrap(), cifar.stored().raw(7).unwrap()[100]),
            (7, 7)
        );
        let idx = LabelledSource::open(&["mnist-idx".into(), d.clone()]).unwrap();
        assert_eq!(
            (
                idx.stored().count(),
                idx.stored().shape(),
                idx.label(3).unwrap()
            ),
            (6, (1, 28, 28), 1)
        );
        let (train, val) = shuffled_split(&idx, 4, 2).unwrap();
        let mut all: Vec<u64> = train.iter().chain(&val).copied().collect();
        all.sort();
        assert_eq!(all, (0..6).collect::<Vec<_>>(), "disjoint and complete");
        assert!(format!("{:#}", shuffled_split(&idx, 5, 2).unwrap_err()).contains("holds 6"));
        let e = format!(
            "{:#}",
            LabelledSource::open(&["svhn".into()]).err().unwrap()
        );
        assert!(e.contains("svhn") && e.contains("cifar10 DIR"), "{e}");
        let e = format!(
            "{:#}",
            LabelledSource::open(&["mnist-idx".into(), "/nonexistent".into()])
                .err()
                .unwrap()
        );
        assert!(
            e.contains("/nonexistent") && e.contains("train-images-idx3-ubyte"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn percent_cells_show_mean_and_sd() {
        assert_eq!(percent_cell(&[0.8, 0.9]), "85.0 ± 7.1");
    }
}
