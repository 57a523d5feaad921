//! Fashion-MNIST as installed by Debian's `dataset-fashion-mnist` package, which puts the four
//! gzipped IDX files under `/usr/share/datasets/fashion-mnist/`.

use crate::{Error, Idx, Result};
use std::path::{Path, PathBuf};

/// Where `dataset-fashion-mnist` installs the files (checked with `dpkg -c`).
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The 60,000 training images (28x28 grey) and labels from [`FASHION_MNIST_DIR`].
pub fn fashion_mnist() -> Result<Idx> {
    fashion_mnist_in(Path::new(FASHION_MNIST_DIR), true)
}

/// The 10,000 test images and labels from [`FASHION_MNIST_DIR`].
pub fn fashion_mnist_test() -> Result<Idx> {
    fashion_mnist_in(Path::new(FASHION_MNIST_DIR), false)
}

/// Fashion-MNIST from `dir` holding `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`; a missing
/// file is [`Error::NotInstalled`] with the install command.
pub fn fashion_mnist_in(dir: &Path, train: bool) -> Result<Idx> {
    let prefix = if train { "train" } else { "t10k" };
    let images: PathBuf = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let labels: PathBuf = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    for path in [&images, &labels] {
        if !path.is_file() {
            return Err(Error::NotInstalled {
                what: "Fashion-MNIST".into(),
                path: path.clone(),
                hint: "install it with `sudo apt-get install dataset-fashion-mnist`".into(),
            });
        }
    }
    Idx::open(&images, Some(&labels))
}
