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

/// A source that fails on image 7 of a finite set by panicking (a defect in a user's source).
struct PanicsOnSeven;

impl ImageSource for PanicsOnSeven {
    fn channels(&self) -> usize {
        1
    }
    fn len(&self) -> Option<usize> {
        Some(12)
    }
    fn image(&self, index: u64, n: usize) -> data::Result<Tensor> {
        assert_ne!(index, 7, "a broken source");
        Ok(Tensor::full(index as f32 / 100.0, (1, n, n), &Device::Cpu)?)
    }
}

/// Prefetching changes nothing in the stream: the same batches for varying batch sizes, epochs
/// of a finite source, a jump of the position (resume) and an infinite source, on pools of 1
/// and 2 threads (a batch never waits for a task that no thread will run).
#[test]
fn prefetch_gives_the_same_batches() {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let sources: [data::SharedSource; 2] =
                [Arc::new(Constants(10)), Arc::new(DeadLeaves::new(3))];
            for source in sources {
                let mut plain = Loader::new(source.clone(), 8, 5, 2);
                let mut ahead = Loader::new(source, 8, 5, 2).with_prefetch(true);
                for (step, count) in [4, 8, 4, 8, 2, 2, 6, 1, 7, 3].into_iter().enumerate() {
                    if step == 6 {
                        plain.set_position(3);
                        ahead.set_position(3);
                    }
                    let a = plain.next_batch(count, &Device::Cpu).unwrap();
                    let b = ahead.next_batch(count, &Device::Cpu).unwrap();
                    let (a, b): (Vec<f32>, Vec<f32>) = (
                        a.flatten_all().unwrap().to_vec1().unwrap(),
                        b.flatten_all().unwrap().to_vec1().unwrap(),
                    );
                    assert_eq!(a, b, "{threads} threads, step {step}");
                    assert_eq!(plain.position(), ahead.position());
                }
                assert!(ahead.next_batch(0, &Device::Cpu).is_err());
            }
        });
    }
}

/// A source that panics while rendering ahead gives the batch that needs that image an error,
/// not an aborted process, and images queued but never needed cost no error.
#[test]
fn prefetch_turns_a_panicking_source_into_an_error() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let source: data::SharedSource = Arc::new(PanicsOnSeven);
        // Unshuffled order is not guaranteed, so draw until image 7 has been asked for.
        let mut loader = Loader::new(source, 4, 0, 1).with_prefetch(true);
        let mut failed = false;
        for _ in 0..12 {
            if loader.next_batch(1, &Device::Cpu).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "image 7 must fail");
    });
}

/// `load_batch` on a pool worker (the pool's threads render) gives the images it gives off any
/// pool (threads of its own), and a panicking source is an error on both paths.
#[test]
fn load_batch_on_the_pool_matches_its_own_threads() {
    let source = DeadLeaves::new(9);
    let indices = [3, 1, 4, 1, 5, 9, 2];
    let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let own = flat(data::load_batch(&source, &indices, 8, 3, &Device::Cpu).unwrap());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (on_pool, broken) = pool.install(|| {
        (
            flat(data::load_batch(&source, &indices, 8, 3, &Device::Cpu).unwrap()),
            data::load_batch(&PanicsOnSeven, &[6, 7], 4, 2, &Device::Cpu),
        )
    });
    assert_eq!(on_pool, own);
    assert!(
        broken.is_err(),
        "a panicking source must be an error on the pool"
    );
    assert!(data::load_batch(&PanicsOnSeven, &[6, 7], 4, 2, &Device::Cpu).is_err());
}
