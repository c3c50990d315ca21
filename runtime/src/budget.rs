//! The gateway's memory budget: one gateway-wide count of the bytes held by
//! what the gateway keeps on behalf of clients who are not being served
//! yet — requests waiting for a replica (their heads and read buffers),
//! asynchronous request bodies while they are read and stored, and result
//! callbacks while they are sent. Each of these is bounded on its own too
//! (a queue per revision, a body limit, a callback backlog), but their
//! bounds add up to more than a pod's memory limit; the budget bounds the
//! sum.
//!
//! A holder takes a [`Charge`] for the bytes it is about to hold and drops
//! it when it lets them go. A charge that would take the total past the
//! limit fails at once with [`OverBudget`], which the gateway answers 503
//! with `Retry-After` (a callback is dropped): refusing one request is
//! better than the pod being OOM-killed with every request in it.
//!
//! The count is one atomic integer, changed with a compare-and-swap: no
//! lock, no allocation. Requests that go straight to a replica with room
//! never touch it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Default budget: 96 MiB. With the default connections' buffers and
/// [`HEADROOM_BYTES`] for the rest of the process it fits the chart's
/// default memory limit for the gateway (256Mi); `tests/chart_hardening.rs`
/// checks that they agree.
pub const DEFAULT_MEMORY_BUDGET_BYTES: usize = 96 << 20;

/// What a gateway needs beside its budget and its client connections'
/// read buffers (each up to `max_buffered_bytes`, outside the budget, so
/// `max_connections × max_buffered_bytes` at most): 32 MiB for the process
/// itself (about 8 MiB at rest) and the allocator's slack under churn. A
/// pod's memory limit should be at least the budget, plus the connections'
/// buffers, plus this; the chart refuses less.
pub const HEADROOM_BYTES: usize = 32 << 20;

/// Smallest budget accepted: 4 MiB, room for a few waiting requests and one
/// asynchronous body of the largest size. A smaller one would refuse nearly
/// everything that has to wait.
pub const MIN_MEMORY_BUDGET_BYTES: usize = 4 << 20;

/// What a request held by the gateway costs beside its head: the
/// connection's own state meanwhile (hyper's buffers, the connection's and
/// the request's tasks). Measured on a gateway process: 23 KiB of resident
/// memory per waiting request with an empty head
/// (`tests/gateway_process.rs`, docs/gateway.md, *Memory bounds*).
pub const REQUEST_OVERHEAD: usize = 24 * 1024;

/// What a request's head holds while the gateway keeps the request (a
/// request waiting for a replica; an asynchronous request while its body is
/// read): the head as sent (target and header lines) twice — hyper reads it
/// into a buffer that grows by doubling, and keeps the whole buffer while
/// any header refers into it — plus [`REQUEST_OVERHEAD`]. A walk over the
/// header names, done only for requests that are kept.
pub fn head_bytes<B>(req: &http::Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    2 * (target + headers) + REQUEST_OVERHEAD
}

/// What a charge holds memory for: a word in refusals and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A request waiting for a replica slot: its head and read buffer.
    WaitingRequest,
    /// An asynchronous request's body, read whole and stored.
    AsyncBody,
    /// A result callback's body, held until it is sent.
    CallbackBody,
}

impl Use {
    /// Every use, in the order of [`Use::index`].
    pub const ALL: [Use; 3] = [Use::WaitingRequest, Use::AsyncBody, Use::CallbackBody];

    /// A short, stable label for metrics and logs.
    pub const fn metric_label(self) -> &'static str {
        match self {
            Self::WaitingRequest => "waiting_request",
            Self::AsyncBody => "async_body",
            Self::CallbackBody => "callback_body",
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::WaitingRequest => 0,
            Self::AsyncBody => 1,
            Self::CallbackBody => 2,
        }
    }
}

impl std::fmt::Display for Use {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::WaitingRequest => "a waiting request",
            Self::AsyncBody => "an asynchronous request body",
            Self::CallbackBody => "a callback body",
        })
    }
}

/// A charge that would have taken the budget past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the gateway's memory budget of {limit} bytes (--memory-budget-bytes) is spent: {held} bytes are held by waiting requests, asynchronous bodies and callbacks, and {what} needs {wanted} more"
)]
pub struct OverBudget {
    /// What the bytes were wanted for.
    pub what: Use,
    /// Bytes wanted.
    pub wanted: usize,
    /// Bytes held when it was refused.
    pub held: usize,
    /// The budget.
    pub limit: usize,
}

/// The gateway-wide budget. Cheap to clone: clones share one count.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    held: AtomicUsize,
    refused: [AtomicU64; 3],
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none held.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                held: AtomicUsize::new(0),
                refused: Default::default(),
            }),
        }
    }

    /// A budget that never refuses, for parts used without a gateway (a
    /// bare intake or worker in tests); its count is still kept.
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.inner.held.load(Ordering::Relaxed)
    }

    /// Charges refused so far for `what`.
    pub fn refused(&self, what: Use) -> u64 {
        self.inner.refused[what.index()].load(Ordering::Relaxed)
    }

    /// Takes `bytes` for `what`, released when the returned charge is
    /// dropped; fails, taking nothing, when they do not fit.
    pub fn charge(&self, what: Use, bytes: usize) -> Result<Charge, OverBudget> {
        self.take(what, bytes)?;
        Ok(Charge {
            budget: self.clone(),
            what,
            bytes,
        })
    }

    fn take(&self, what: Use, bytes: usize) -> Result<(), OverBudget> {
        let limit = self.inner.limit;
        self.inner
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= limit)
            })
            .map(drop)
            .map_err(|held| {
                self.inner.refused[what.index()].fetch_add(1, Ordering::Relaxed);
                OverBudget {
                    what,
                    wanted: bytes,
                    held,
                    limit,
                }
            })
    }
}

/// Bytes taken from a [`MemoryBudget`], given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: MemoryBudget,
    what: Use,
    bytes: usize,
}

impl Charge {
    /// Bytes held by this charge.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `more` bytes into this charge (a body that keeps growing);
    /// on failure the charge keeps what it had.
    pub fn grow(&mut self, more: usize) -> Result<(), OverBudget> {
        self.budget.take(self.what, more)?;
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget
            .inner
            .held
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_refused_past_the_limit_and_given_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let a = budget.charge(Use::WaitingRequest, 60).unwrap();
        let err = budget.charge(Use::AsyncBody, 41).unwrap_err();
        assert_eq!(
            err,
            OverBudget {
                what: Use::AsyncBody,
                wanted: 41,
                held: 60,
                limit: 100
            }
        );
        assert!(
            err.to_string().contains("memory budget of 100 bytes"),
            "{err}"
        );
        assert_eq!(budget.held(), 60, "a refusal takes nothing");
        let b = budget.charge(Use::AsyncBody, 40).unwrap();
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        drop(b);
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.refused(Use::AsyncBody), 1);
        assert_eq!(budget.refused(Use::WaitingRequest), 0);
    }

    #[test]
    fn a_charge_grows_within_the_limit() {
        let budget = MemoryBudget::new(100);
        let mut body = budget.charge(Use::AsyncBody, 10).unwrap();
        body.grow(80).unwrap();
        assert_eq!((body.bytes(), budget.held()), (90, 90));
        assert_eq!(body.grow(11).unwrap_err().held, 90);
        assert_eq!((body.bytes(), budget.held()), (90, 90));
        drop(body);
        assert_eq!(budget.held(), 0);
        // Sizes near the top of the range do not wrap around.
        let huge = MemoryBudget::unlimited();
        let _all = huge.charge(Use::CallbackBody, usize::MAX).unwrap();
        assert!(huge.charge(Use::CallbackBody, 1).is_err());
    }

    #[test]
    fn a_head_is_charged_twice_its_size_plus_the_overhead() {
        let req = http::Request::builder()
            .uri("/a?b=c")
            .header("host", "f.ns.localhost")
            .header("x-big", "v".repeat(60 * 1024))
            .body(())
            .unwrap();
        let sent = "/a?b=c".len() + ("host".len() + 14 + 4) + (5 + 60 * 1024 + 4);
        assert_eq!(head_bytes(&req), 2 * sent + REQUEST_OVERHEAD);
    }

    #[test]
    fn concurrent_charges_never_exceed_the_limit() {
        let budget = MemoryBudget::new(1000);
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (budget, peak) = (budget.clone(), Arc::clone(&peak));
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        if let Ok(c) = budget.charge(Use::WaitingRequest, 7 + i % 300) {
                            peak.fetch_max(budget.held(), Ordering::Relaxed);
                            drop(c);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::Relaxed) <= 1000);
        assert_eq!(budget.held(), 0);
    }
}
