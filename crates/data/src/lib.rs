//! data
mod error;
mod fourier;
pub mod resize;
mod source;
mod dead_leaves;
mod grf;
mod markov;

pub use dead_leaves::DeadLeaves;
pub use error::{Error, Result};
pub use grf::GaussianRandomField;
pub use markov::MarkovField;
pub use source::{mix_seed, ImageSource};
mod stored;
mod idx;
mod cifar;
mod stl10;
mod fashion_mnist;
mod photos;

pub use cifar::{Cifar, CifarKind};
pub use fashion_mnist::{fashion_mnist, fashion_mnist_in, fashion_mnist_test, FASHION_MNIST_DIR};
pub use idx::{parse_idx, read_idx, Idx, IdxArray};
pub use photos::{photos_dir, PhotoFolder};
pub use stl10::Stl10;
pub use stored::StoredImages;
mod loader;
pub use loader::{load_batch, Loader, SharedSource};
