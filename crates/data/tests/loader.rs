//! The loader streams fresh images, shuffles finite sources per epoch, and is identical for any
//! thread count.

use candle_core::{Device, Tensor};
use data::{DeadLeaves, ImageSource, Loader};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A finite source whose image `i` is the constant `i / 100`, labelled `i mod 3`.
struct Constants(usize);

impl ImageSource for Constants {
    fn channels(&self) -> usize {
        1
    }
    fn len(&self) -> Option<usize> {
        Some(self.0)
    }
    fn image(&self, index: u64, n: usize) -> data::Result<Tensor> {
        Ok(Tensor::full(index as f32 / 100.0, (1, n, n), &Device::Cpu)?)
    }
    fn label(&self, index: u64) -> data::Result<Option<usize>> {
        Ok(Some(index as usize % 3))
    }
}

fn ids(batch: &Tensor) -> Vec<u64> {
    let v: Vec<f32> = batch.mean((1, 2, 3)).unwrap().to_vec1().unwrap();
    v.iter().map(|x| (x * 100.0).round() as u64).collect()
}

#[test]
fn finite_sources_cover_each_epoch_once_in_a_new_order() {
    let mut loader = Loader::new(Arc::new(Constants(10)), 4, 3, 2);
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.extend(ids(&loader.next_batch(4, &Device::Cpu).unwrap()));
    }
    assert_eq!(loader.position(), 20);
    let (e0, e1) = (&seen[..10], &seen[10..]);
    assert_eq!(e0.iter().collect::<BTreeSet<_>>().len(), 10);
    assert_eq!(e1.iter().collect::<BTreeSet<_>>().len(), 10);
    assert_ne!(e0, e1, "epochs must be reshuffled");
    assert_ne!(e0, (0..10).collect::<Vec<u64>>(), "epoch must be shuffled");
    // Same seed, same stream; other seed, other order.
    let mut again = Loader::new(Arc::new(Constants(10)), 4, 3, 1);
    assert_eq!(ids(&again.next_batch(10, &Device::Cpu).unwrap()), e0);
    let mut other = Loader::new(Arc::new(Constants(10)), 4, 4, 1);
    assert_ne!(ids(&other.next_batch(10, &Device::Cpu).unwrap()), e0);
}

#[test]
fn infinite_sources_give_fresh_images_every_call() {
    let mut loader = Loader::new(Arc::new(DeadLeaves::new(0)), 16, 9, 2);
    let a = loader.next_batch(3, &Device::Cpu).unwrap();
    let b = loader.next_batch(3, &Device::Cpu).unwrap();
    assert_eq!(a.dims(), &[3, 1, 16, 16]);
    let diff: f32 = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff > 1.0);
    let idx = loader.next_indices(50).unwrap();
    assert_eq!(idx.iter().collect::<BTreeSet<_>>().len(), 50);
}

#[test]
fn output_is_identical_for_any_thread_count() {
    let src = Arc::new(DeadLeaves::new(4).with_channels(3));
    let reference: Vec<f32> = Loader::new(src.clone(), 20, 1, 1)
        .next_batch(7, &Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for threads in [2, 3, 8] {
        let mut l = Loader::new(src.clone(), 20, 1, threads);
        let v: Vec<f32> = l
            .next_batch(7, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(v, reference, "threads = {threads}");
    }
}

#[test]
fn labeled_batches_match_their_images() {
    let mut loader = Loader::new(Arc::new(Constants(7)), 2, 0, 2);
    let (x, y) = loader.next_labeled_batch(7, &Device::Cpu).unwrap();
    let labels: Vec<u32> = y.to_vec1().unwrap();
    for (i, l) in ids(&x).iter().zip(labels) {
        assert_eq!(*i as u32 % 3, l);
    }
    let mut unlabeled = Loader::new(Arc::new(DeadLeaves::new(0)), 8, 0, 1);
    assert!(unlabeled.next_labeled_batch(2, &Device::Cpu).is_err());
}
