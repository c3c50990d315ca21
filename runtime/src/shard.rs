//! Per-core shards of state the request path updates on every request
//! (idle connections, in-flight accounting), so the gateway's worker
//! threads never write to the same cache line: each worker thread uses its
//! own shard, and readers (a scrape, a drain check) visit them all.

use std::cell::Cell;
use std::num::NonZeroUsize;
use std::sync::OnceLock;

/// The worker id of threads that are not gateway workers.
const NO_WORKER: usize = usize::MAX;

thread_local! {
    /// The gateway worker this thread is, if it is one.
    static WORKER: Cell<usize> = const { Cell::new(NO_WORKER) };
}

/// Marks the current thread as gateway worker `id`: it uses shard
/// `id % shards` from now on.
pub fn set_worker(id: usize) {
    WORKER.with(|w| w.set(id));
}

/// The gateway worker the current thread is, if it is one.
pub fn worker() -> Option<usize> {
    Some(WORKER.with(Cell::get)).filter(|&id| id != NO_WORKER)
}

/// Most shards per sharded value. Each revision keeps its accounting in
/// shards, so on a large machine more shards would cost memory per
/// revision (a gateway may route thousands); beyond this, workers share
/// shards two or more to one, which stays correct and only brings back
/// some sharing of cache lines.
const MAX_SHARDS: usize = 8;

/// Shards per sharded value: one per core (what the gateway runs workers
/// for), at least one and at most [`MAX_SHARDS`].
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, NonZeroUsize::get)
            .min(MAX_SHARDS)
    })
}

/// A value on a cache line of its own.
#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

/// One `T` per core. Threads that are not gateway workers share the first.
#[derive(Debug)]
pub struct Sharded<T> {
    shards: Box<[Padded<T>]>,
}

impl<T> Sharded<T> {
    /// One shard per core, each made by `make`.
    pub fn new(make: impl FnMut() -> T) -> Self {
        Self::with_shards(shard_count(), make)
    }

    /// `count` shards (at least one), each made by `make`.
    pub fn with_shards(count: usize, mut make: impl FnMut() -> T) -> Self {
        Self {
            shards: (0..count.max(1)).map(|_| Padded(make())).collect(),
        }
    }

    /// The index of the current thread's shard.
    pub fn index(&self) -> usize {
        worker().map_or(0, |id| id % self.shards.len())
    }

    /// The current thread's shard.
    pub fn local(&self) -> &T {
        self.at(self.index())
    }

    /// Shard `index` (wrapped into range), e.g. the one a request started on.
    pub fn at(&self, index: usize) -> &T {
        // The slice is never empty, so the wrapped index is in range.
        &self.shards[index % self.shards.len()].0
    }

    /// Every shard, for readers that sum them up.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|p| &p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_use_their_own_shard_and_others_the_first() {
        let sharded = std::sync::Arc::new(Sharded::with_shards(3, || ()));
        let indices: Vec<usize> = [None, Some(0), Some(1), Some(2), Some(4)]
            .into_iter()
            .map(|worker| {
                let sharded = std::sync::Arc::clone(&sharded);
                std::thread::spawn(move || {
                    if let Some(id) = worker {
                        set_worker(id);
                    }
                    sharded.index()
                })
                .join()
                .unwrap()
            })
            .collect();
        assert_eq!(indices, [0, 0, 1, 2, 1]);
        assert_eq!(sharded.iter().count(), 3);
        assert_eq!(Sharded::with_shards(0, || ()).iter().count(), 1);
    }

    #[test]
    fn shards_sit_on_separate_cache_lines() {
        let sharded = Sharded::with_shards(2, || 0u8);
        let addrs: Vec<usize> = sharded.iter().map(|s| s as *const u8 as usize).collect();
        assert!(addrs[1] - addrs[0] >= 128);
    }
}
