//! The seeded batch loader: a deterministic stream of fresh clean images as candle tensors.

use crate::source::{mix_seed, ImageSource};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Salt that separates the epoch-permutation streams from the infinite-source index stream.
const SHUFFLE_SALT: u64 = 0x5EED_5A17_0000_0001;

/// A shareable image source.
pub type SharedSource = Arc<dyn ImageSource + Send + Sync>;

/// Streams batches of clean images `[count, C, n, n]`.
///
/// Stream position `p` (starting at 0, advanced by every batch) maps to an image index:
/// infinite sources use `mix_seed(seed, p)`, finite sources of `L` images use `perm_e[p mod L]`
/// with `e = p div L` and `perm_e` a Fisher-Yates shuffle of `0..L` seeded by
/// `mix_seed(seed ^ SALT, e)`, so an epoch never repeats an image. Images are rendered on up to
/// `threads` threads; the output is the same for any thread count because each image depends
/// only on its index.
///
/// With [`Loader::with_prefetch`], every batch also queues the images of the next one (as many
/// as the larger of this batch and the one before) as tasks on the current rayon pool, which
/// idle workers render while the caller computes; a batch takes what is ready, waits for what
/// is being rendered and renders the rest itself. The images are the same either way.
pub struct Loader {
    source: SharedSource,
    n: usize,
    seed: u64,
    threads: usize,
    position: u64,
    epoch: Option<(u64, Vec<u64>)>,
    prefetch: bool,
    /// Stream position -> (image index, its task).
    ahead: HashMap<u64, (u64, Arc<Prefetched>)>,
    last_count: usize,
}

/// One image queued for rendering on the pool: whoever claims it first renders it (the pool's
/// task, or the batch that needs it before the task started).
#[derive(Default)]
struct Prefetched {
    claimed: AtomicBool,
    image: Mutex<Option<Result<Tensor>>>,
    ready: Condvar,
}

impl Prefetched {
    /// Claims the image; false when the task already has.
    fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::AcqRel)
    }

    /// The image of a task that claimed it (waits until it is rendered).
    fn wait(&self) -> Result<Tensor> {
        let poisoned = || Error::InvalidArgument("an image prefetch task panicked".into());
        let mut slot = self.image.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(image) = slot.take() {
                return image;
            }
            slot = self.ready.wait(slot).map_err(|_| poisoned())?;
        }
    }

    /// The pool task: renders the image unless a batch claimed it first.
    fn run(&self, source: &SharedSource, index: u64, n: usize) {
        if !self.claim() {
            return;
        }
        let image =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.image(index, n)))
                .unwrap_or_else(|_| {
                    Err(Error::InvalidArgument(format!(
                        "rendering image {index} panicked"
                    )))
                });
        if let Ok(mut slot) = self.image.lock() {
            *slot = Some(image);
        }
        self.ready.notify_all();
    }
}

impl Loader {
    /// A loader of `n x n` images from `source`, stream seed `seed`, `threads >= 1` workers.
    pub fn new(source: SharedSource, n: usize, seed: u64, threads: usize) -> Self {
        Self {
            source,
            n,
            seed,
            threads: threads.max(1),
            position: 0,
            epoch: None,
            prefetch: false,
            ahead: HashMap::new(),
            last_count: 0,
        }
    }

    /// Renders the next batch ahead on the rayon pool while the caller computes (see
    /// [`Loader`]); for training streams, where the next batch is always drawn.
    pub fn with_prefetch(mut self, on: bool) -> Self {
        self.prefetch = on;
        self
    }

    /// The mesh size `n`.
    pub fn size(&self) -> usize {
        self.n
    }

    /// The source.
    pub fn source(&self) -> &SharedSource {
        &self.source
    }

    /// Number of images drawn so far (the stream position).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Moves the stream to `position` (e.g. to resume a run).
    pub fn set_position(&mut self, position: u64) {
        self.position = position;
        self.ahead.clear();
    }

    /// The image indices of the next `count` stream positions; advances the stream.
    pub fn next_indices(&mut self, count: usize) -> Result<Vec<u64>> {
        let len = self.source.len();
        if len == Some(0) {
            return Err(Error::InvalidArgument("the source holds no images".into()));
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let p = self.position;
            out.push(match len {
                None => mix_seed(self.seed, p),
                Some(l) => {
                    let (e, k) = (p / l as u64, (p % l as u64) as usize);
                    if self.epoch.as_ref().map(|(cached, _)| *cached) != Some(e) {
                        self.epoch =
                            Some((e, permutation(l, mix_seed(self.seed ^ SHUFFLE_SALT, e))));
                    }
                    self.epoch.as_ref().map_or(0, |(_, perm)| perm[k])
                }
            });
            self.position += 1;
        }
        Ok(out)
    }

    /// The next `count` fresh images, `[count, C, n, n]` on `device`.
    pub fn next_batch(&mut self, count: usize, device: &Device) -> Result<Tensor> {
        if count == 0 {
            return Err(Error::InvalidArgument(
                "a batch needs at least one image".into(),
            ));
        }
        let first = self.position;
        let indices = self.next_indices(count)?;
        if !self.prefetch {
            return load_batch(self.source.as_ref(), &indices, self.n, self.threads, device);
        }
        // Queued images whose task has started are waited for; the others are rendered here.
        let (mut rendered, mut missing) = (Vec::new(), Vec::new());
        for (k, &index) in indices.iter().enumerate() {
            match self.ahead.remove(&(first + k as u64)) {
                Some((queued, task)) if queued == index && !task.claim() => {
                    rendered.push((k, task))
                }
                _ => missing.push(k),
            }
        }
        let missing_indices: Vec<u64> = missing.iter().map(|&k| indices[k]).collect();
        let mut images: Vec<Option<Tensor>> = vec![None; count];
        for (k, image) in missing.into_iter().zip(render(
            self.source.as_ref(),
            &missing_indices,
            self.n,
            self.threads,
        )?) {
            images[k] = Some(image);
        }
        for (k, task) in rendered {
            images[k] = Some(task.wait()?);
        }
        self.queue_next(count)?;
        let images: Vec<Tensor> = images.into_iter().flatten().collect();
        Ok(Tensor::stack(&images, 0)?.to_device(device)?)
    }

    /// Queues the images of the next `max(count, previous count)` stream positions on the pool.
    fn queue_next(&mut self, count: usize) -> Result<()> {
        let ahead = count.max(self.last_count);
        self.last_count = count;
        let first = self.position;
        self.ahead.retain(|&p, _| p >= first);
        let saved = self.epoch.clone();
        let upcoming = self.next_indices(ahead);
        (self.position, self.epoch) = (first, saved);
        for (k, index) in upcoming?.into_iter().enumerate() {
            let position = first + k as u64;
            if self.ahead.contains_key(&position) {
                continue;
            }
            let task = Arc::new(Prefetched::default());
            self.ahead.insert(position, (index, task.clone()));
            let (source, n) = (self.source.clone(), self.n);
            rayon::spawn(move || task.run(&source, index, n));
        }
        Ok(())
    }

    /// The next `count` images and their labels (`[count]`, u32); an error for unlabelled sources.
    pub fn next_labeled_batch(
        &mut self,
        count: usize,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let indices = self.next_indices(count)?;
        let labels = indices
            .iter()
            .map(|&i| {
                self.source.label(i)?.map(|l| l as u32).ok_or_else(|| {
                    Error::InvalidArgument(format!("image {i} of this source has no label"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let images = load_batch(self.source.as_ref(), &indices, self.n, self.threads, device)?;
        Ok((images, Tensor::from_vec(labels, count, device)?))
    }
}

/// Fisher-Yates shuffle of `0..len` from `seed`.
fn permutation(len: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut perm: Vec<u64> = (0..len as u64).collect();
    for i in (1..len).rev() {
        perm.swap(i, rng.random_range(0..=i));
    }
    perm
}

/// Renders images `indices` of `source` at mesh `n` on up to `threads` threads and stacks them
/// into `[len, C, n, n]` on `device` (use it for fixed evaluation sets).
pub fn load_batch(
    source: &(dyn ImageSource + Send + Sync),
    indices: &[u64],
    n: usize,
    threads: usize,
    device: &Device,
) -> Result<Tensor> {
    if indices.is_empty() {
        return Err(Error::InvalidArgument(
            "a batch needs at least one image".into(),
        ));
    }
    let images = render(source, indices, n, threads)?;
    Ok(Tensor::stack(&images, 0)?.to_device(device)?)
}

/// Images `indices` of `source` at mesh `n`, rendered in up to `threads` parts side by side (on
/// the current rayon pool when called on one of its workers, else on threads of their own), in
/// order; a panic while rendering is an error.
fn render(
    source: &(dyn ImageSource + Send + Sync),
    indices: &[u64],
    n: usize,
    threads: usize,
) -> Result<Vec<Tensor>> {
    if indices.is_empty() {
        return Ok(Vec::new());
    }
    let chunk = indices.len().div_ceil(threads.max(1));
    let part = |part: &[u64]| -> Result<Vec<Tensor>> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            part.iter()
                .map(|&i| source.image(i, n))
                .collect::<Result<Vec<_>>>()
        }))
        .unwrap_or_else(|_| Err(Error::InvalidArgument("an image worker panicked".into())))
    };
    // On a rayon worker (a training loop), the pool's threads render: threads of our own would
    // compete for the cores with the pool's workers, which a training loop may keep spinning
    // (`train::threads::warm`; full-multiscale's drawing in `reproduce table2 --quick` took
    // 3.3 s that way against 1.7 s on the pool).
    if rayon::current_thread_index().is_some() {
        use rayon::prelude::*;
        let parts = indices
            .par_chunks(chunk)
            .map(part)
            .collect::<Result<Vec<Vec<Tensor>>>>()?;
        return Ok(parts.into_iter().flatten().collect());
    }
    let part = &part;
    let images: Vec<Tensor> = std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(chunk)
            .map(|p| scope.spawn(move || part(p)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::InvalidArgument("an image worker panicked".into()))
                })
            })
            .collect::<Result<Vec<Vec<Tensor>>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    Ok(images)
}
