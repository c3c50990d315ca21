//! A revision's activation queue: a request takes a slot on a replica
//! with room, or waits in line for one (at most `queue_size` requests),
//! poking the autoscaler while the revision has no replica; a request whose
//! connection a replica refused waits again, for the replicas it has not
//! tried. A slot held ([`Slot`]) is given back, and a waiter woken, when
//! the request ends.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use flint_api::sync::lock;

use super::{Cold, RevisionState, Upstream};
use crate::gateway::balancer::{self, Load};

/// How often requests waiting for a revision's first replica poke the
/// autoscaler again.
pub const REPOKE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A slot on one replica, held while a request is in flight there.
/// Dropping it frees the slot and wakes one waiting request.
#[derive(Debug)]
pub struct Slot {
    /// The replica.
    pub upstream: Arc<Upstream>,
    revision: Arc<RevisionState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.upstream.slots.put_back();
        let revision = &self.revision;
        if revision.waiting.load(Ordering::Acquire) > 0 {
            if revision.rewaiting.load(Ordering::Acquire) > 0 {
                // A request waiting again after a refusal cannot use every
                // replica; waking only one could hand this slot to a waiter
                // that must leave it, and the others would miss it.
                revision.notify.notify_waiters();
            } else {
                revision.notify.notify_one();
            }
        }
    }
}

/// Why a request could not get in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull {
    /// Requests already waiting.
    pub queued: usize,
}

/// Why a request gave up waiting for a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The queue was full.
    Full(QueueFull),
    /// The revision failed while the request waited (e.g. its process exits
    /// at start): the reason, answered as 503 instead of waiting in vain.
    Failed(String),
    /// Every replica in rotation already refused this request's connection.
    Exhausted,
    /// The gateway's memory budget has no room for another waiting request.
    OverBudget(crate::budget::OverBudget),
}

/// Removes a request from the queue count when it stops waiting, however it
/// stops (slot found, timeout, client gone).
struct InLine<'a>(&'a RevisionState);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        let left = self
            .0
            .waiting
            .fetch_sub(1, Ordering::AcqRel)
            .saturating_sub(1);
        self.0.metrics.set_queue_depth(left);
        if left == 0 && self.0.upstreams.load().is_empty() {
            // ## Pending => Warm: everyone gave up before a replica came;
            // the next request starts (and pokes for) a new cold start.
            self.0.set_cold(Cold::Warm);
        }
    }
}

/// Removes a request from the count of those waiting again after a refusal.
struct Rewaiting<'a>(&'a RevisionState);

impl Drop for Rewaiting<'_> {
    fn drop(&mut self) {
        self.0.rewaiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RevisionState {
    /// Takes a slot on a replica with room, without waiting.
    pub fn try_acquire(self: &Arc<Self>, limit: u32, r1: usize, r2: usize) -> Option<Slot> {
        let upstreams = self.upstreams.load();
        let i = balancer::take(&upstreams, limit, r1, r2)?;
        let upstream = Arc::clone(upstreams.get(i)?);
        Some(Slot {
            upstream,
            revision: Arc::clone(self),
        })
    }

    /// Takes a slot on any replica with room other than those in `tried`
    /// (used to retry a refused connection elsewhere), without waiting.
    pub fn try_acquire_excluding(
        self: &Arc<Self>,
        limit: u32,
        tried: &[Arc<Upstream>],
    ) -> Option<Slot> {
        let upstreams = self.upstreams.load();
        let upstream = upstreams
            .iter()
            .filter(|u| !tried.iter().any(|t| Arc::ptr_eq(t, u)))
            .find(|u| u.try_take(limit))?;
        Some(Slot {
            upstream: Arc::clone(upstream),
            revision: Arc::clone(self),
        })
    }

    /// Takes a slot, waiting in the revision's queue (at most `queue_size`
    /// requests) until a replica has room. `poke` is called, with the number
    /// of requests waiting, when this request is the one that found the
    /// revision without a ready replica, and again every [`REPOKE_INTERVAL`]
    /// while requests still wait for a first replica: a poke can be lost
    /// (the autoscaler's leader changing hands, a network blip), and a
    /// request must not wait out its timeout for it.
    ///
    /// `admit` is called only when the request has to wait, once it has a
    /// place in line (and has poked, so a refused request still asks for a
    /// replica); what it returns (the request's memory charge) is held
    /// while the request waits, and its error refuses the request.
    pub async fn acquire<W>(
        self: &Arc<Self>,
        limit: u32,
        queue_size: usize,
        mut draw: impl FnMut() -> (usize, usize),
        poke: impl Fn(u32),
        admit: impl FnOnce() -> Result<W, Refused>,
    ) -> Result<Slot, Refused> {
        let (r1, r2) = draw();
        if let Some(slot) = self.try_acquire(limit, r1, r2) {
            return Ok(slot);
        }
        let (_in_line, ahead) = self.get_in_line(queue_size)?;
        if self.upstreams.load().is_empty() {
            let now = Instant::now();
            let began = {
                let mut cold = lock(&self.cold);
                let warm = *cold == Cold::Warm;
                if warm {
                    // ## Warm => Pending: first request without a replica.
                    *cold = Cold::Pending { since: now };
                }
                warm
            };
            if began {
                self.metrics.cold_start_began();
                self.set_last_poke(now);
                poke(u32::try_from(ahead + 1).unwrap_or(u32::MAX));
            }
        }
        let _admitted = admit()?;
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            let (r1, r2) = draw();
            if let Some(slot) = self.try_acquire(limit, r1, r2) {
                return Ok(slot);
            }
            if self.upstreams.load().is_empty()
                && let Some(reason) = self.failure()
            {
                return Err(Refused::Failed(reason));
            }
            // With peers to borrow from, a waiting request makes sure a
            // round of asks runs for the revision (one at a time, going on
            // while requests wait); slots it gains wake the waiters.
            self.want_slots();
            if tokio::time::timeout(REPOKE_INTERVAL, notified)
                .await
                .is_err()
                && self.upstreams.load().is_empty()
                && self.repoke_due(Instant::now())
            {
                poke(u32::try_from(self.waiting()).unwrap_or(u32::MAX));
            }
        }
    }

    fn set_last_poke(&self, at: Instant) {
        *lock(&self.last_poke) = Some(at);
    }

    /// Whether the last poke is [`REPOKE_INTERVAL`] old; if so, `now` becomes
    /// the last poke (one waiting request re-pokes, not all of them).
    fn repoke_due(&self, now: Instant) -> bool {
        let mut last = lock(&self.last_poke);
        let due = last.is_none_or(|t| now.saturating_duration_since(t) >= REPOKE_INTERVAL);
        if due {
            *last = Some(now);
        }
        due
    }

    /// Joins the queue, unless `queue_size` requests already wait there.
    /// Returns the place in line (held until dropped) and how many wait ahead.
    fn get_in_line(&self, queue_size: usize) -> Result<(InLine<'_>, usize), Refused> {
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        let in_line = InLine(self);
        if ahead >= queue_size {
            self.metrics.queue_overflowed();
            return Err(Refused::Full(QueueFull { queued: ahead }));
        }
        self.metrics.set_queue_depth(ahead + 1);
        Ok((in_line, ahead))
    }

    /// Takes a slot on a replica other than those in `tried`, whose
    /// connections refused this request, waiting in the revision's queue
    /// (at most `queue_size` requests) while those replicas are all at
    /// their limit. Gives up with [`Refused::Exhausted`] as soon as no
    /// untried replica is in rotation. `admit` is as for
    /// [`RevisionState::acquire`].
    pub async fn reacquire<W>(
        self: &Arc<Self>,
        limit: u32,
        queue_size: usize,
        tried: &[Arc<Upstream>],
        admit: impl FnOnce() -> Result<W, Refused>,
    ) -> Result<Slot, Refused> {
        let untried = |state: &Self| {
            state
                .upstreams
                .load()
                .iter()
                .any(|u| !tried.iter().any(|t| Arc::ptr_eq(t, u)))
        };
        if let Some(slot) = self.try_acquire_excluding(limit, tried) {
            return Ok(slot);
        }
        if !untried(self) {
            return Err(Refused::Exhausted);
        }
        let (_in_line, _) = self.get_in_line(queue_size)?;
        let _admitted = admit()?;
        self.rewaiting.fetch_add(1, Ordering::AcqRel);
        let _rewaiting = Rewaiting(self);
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if let Some(slot) = self.try_acquire_excluding(limit, tried) {
                return Ok(slot);
            }
            if !untried(self) {
                return Err(Refused::Exhausted);
            }
            notified.await;
        }
    }
}
