//! A revision's part in sharing its replicas' slots with other gateways:
//! resharing when the gateway set or `concurrency` changes, lending to a
//! peer, and pacing the rounds of asks while requests wait here.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flint_api::sync::lock;

use super::RevisionState;
use crate::gateway::capacity::View;
use crate::gateway::capacity::wire::{CapacityGrant, MAX_ASK_REPLICAS, ReplicaGrant, ReplicaRef};

/// The shortest pause between rounds of asks for one revision.
const PACE_MIN: Duration = Duration::from_millis(10);
/// The longest: rounds that got nothing back off to this.
const PACE_MAX: Duration = Duration::from_millis(200);
/// Released slots no peer collected within this are taken back (a peer
/// that wants them asks at least every [`PACE_MAX`]).
const UNCOLLECTED: Duration = Duration::from_millis(500);

/// The pace of one revision's rounds of asks.
#[derive(Debug)]
pub(super) struct Pace {
    /// Rounds are queued or running (one task per revision at most).
    asking: bool,
    /// The pause after a round that got nothing.
    backoff: Duration,
}

/// What a round of asks came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Slots were gained.
    Gained,
    /// None yet, but a peer released busy slots for this gateway's asks.
    Released,
    /// Nothing.
    Nothing,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            asking: false,
            backoff: PACE_MIN,
        }
    }
}

impl RevisionState {
    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        lock(&self.pace)
    }

    /// Sets the revision's `concurrency`; when it changed and slots are
    /// shared, its replicas' shares are computed anew (growing only once
    /// the change settles). Returns whether it changed while shared.
    pub fn set_concurrency(&self, concurrency: u32) -> bool {
        let old = self.concurrency.swap(concurrency, Ordering::AcqRel);
        if old == concurrency {
            return false;
        }
        match self.sharing.view() {
            Some(view) if !self.upstreams.load().is_empty() => {
                self.reshare(&view);
                true
            }
            _ => false,
        }
    }

    /// The gateway set is now `view`: each replica's share here is
    /// computed anew; slots above it are given up at once, the rest of it
    /// comes at [`RevisionState::settle`].
    pub fn reshare(&self, view: &View) {
        let concurrency = self.concurrency.load(Ordering::Acquire);
        if concurrency == 0 {
            return;
        }
        for upstream in self.upstreams.load().iter() {
            upstream
                .slots
                .reshare(view.share(concurrency, &upstream.endpoint.id));
        }
    }

    /// The last change settled: replicas get the rest of their shares.
    pub fn settle(&self) {
        let concurrency = self.concurrency.load(Ordering::Acquire);
        for upstream in self.upstreams.load().iter() {
            upstream.slots.settle(concurrency);
        }
        self.notify.notify_waiters();
    }

    /// Whether there is anything to borrow: peers, a `concurrency`, and
    /// replicas to borrow slots on.
    fn can_borrow(&self) -> bool {
        self.sharing.view().is_some_and(|v| v.has_peers())
            && self.concurrency.load(Ordering::Acquire) > 0
            && !self.upstreams.load().is_empty()
    }

    /// Called by a request that has to wait: when there is anything to
    /// borrow, starts the revision's rounds of asks unless they run
    /// already. They go on, paced, while requests wait
    /// ([`RevisionState::round_done`]): one timer per revision, however
    /// many requests wait.
    pub(super) fn want_slots(self: &Arc<Self>) {
        if !self.can_borrow() {
            return;
        }
        let mut pace = self.pace();
        if !pace.asking {
            pace.backoff = PACE_MIN;
            pace.asking = self.sharing.ask(Arc::clone(self));
        }
    }

    /// A round ended. Returns the pause before the next, or `None` when no
    /// request waits any more (or there is nothing to borrow) and the
    /// rounds stop: none after slots were gained, [`PACE_MIN`] when a peer
    /// released busy slots that free soon, else a pause that doubles up to
    /// [`PACE_MAX`]. Decided under the pace lock, so a request that starts
    /// to wait meanwhile either is seen here or starts the rounds again.
    pub fn round_done(&self, outcome: Round) -> Option<Duration> {
        let mut pace = self.pace();
        if self.waiting() == 0 || !self.can_borrow() {
            pace.asking = false;
            return None;
        }
        pace.backoff = match outcome {
            Round::Gained | Round::Released => PACE_MIN,
            Round::Nothing => (pace.backoff * 2).min(PACE_MAX),
        };
        Some(match outcome {
            Round::Gained => Duration::ZERO,
            Round::Released | Round::Nothing => pace.backoff,
        })
    }

    /// The rounds could not go on (the gateway is shutting down).
    pub fn rounds_stopped(&self) {
        self.pace().asking = false;
    }

    /// Takes back released slots that no peer collected; returns whether
    /// there were any.
    pub fn reclaim_stale(&self, now: Instant) -> bool {
        let mut any = false;
        for upstream in self.upstreams.load().iter() {
            any |= upstream.slots.reclaim_stale(now, UNCOLLECTED);
        }
        any
    }

    /// Wakes every waiting request to look for a slot again.
    pub fn wake_waiters(&self) {
        self.notify.notify_waiters();
    }

    /// Slots to ask peers for: one per waiting request, at most the
    /// revision's `concurrency` times its replicas.
    pub fn slots_wanted(&self) -> u32 {
        let most = self
            .concurrency
            .load(Ordering::Acquire)
            .saturating_mul(u32::try_from(self.replicas()).unwrap_or(u32::MAX));
        u32::try_from(self.waiting()).unwrap_or(u32::MAX).min(most)
    }

    /// The replicas in rotation, as an ask names them (at most
    /// [`MAX_ASK_REPLICAS`]).
    pub fn replica_refs(&self) -> Vec<ReplicaRef> {
        self.upstreams
            .load()
            .iter()
            .take(MAX_ASK_REPLICAS)
            .map(|u| ReplicaRef {
                id: u.endpoint.id.clone(),
                addr: u.endpoint.addr,
            })
            .collect()
    }

    /// Adds the slots a peer handed over to the replicas they are for
    /// (never more than `concurrency` on one replica at once). Slots for a
    /// replica no longer in rotation are dropped: that only lowers the
    /// total. Returns the slots added.
    pub fn take_grant(&self, grant: &CapacityGrant) -> u32 {
        let concurrency = self.concurrency.load(Ordering::Acquire);
        let upstreams = self.upstreams.load();
        let mut added = 0u32;
        for g in &grant.grants {
            let slots = g.slots.min(concurrency);
            let upstream = upstreams
                .iter()
                .find(|u| u.endpoint.id == g.replica.id && u.endpoint.addr == g.replica.addr);
            match upstream {
                Some(u) if slots > 0 && u.slots.borrow(slots, concurrency) => {
                    added = added.saturating_add(slots)
                }
                _ => {
                    tracing::debug!(revision = %self.key, replica = %g.replica.id, slots, "slots for a replica no longer here dropped");
                }
            }
        }
        added
    }

    /// A peer asks for `want` slots on `replicas`: free ones are taken off
    /// this gateway's limits and returned, replica by replica, keeping
    /// each replica's fair share while requests wait here.
    pub fn lend(&self, replicas: &[ReplicaRef], want: u32, now: Instant) -> CapacityGrant {
        let waiting = self.waiting() > 0;
        let upstreams = self.upstreams.load();
        let mut left = want.min(
            self.concurrency
                .load(Ordering::Acquire)
                .saturating_mul(u32::try_from(replicas.len()).unwrap_or(u32::MAX)),
        );
        let mut grants = Vec::new();
        let mut released = 0u32;
        for r in replicas.iter().take(MAX_ASK_REPLICAS) {
            let Some(u) = upstreams
                .iter()
                .find(|u| u.endpoint.id == r.id && u.endpoint.addr == r.addr)
            else {
                continue;
            };
            if left == 0 {
                released = released.saturating_add(u.slots.released());
                continue;
            }
            let slots = u.slots.lend(waiting, left, now);
            released = released.saturating_add(u.slots.released());
            if slots > 0 {
                left -= slots;
                grants.push(ReplicaGrant {
                    replica: r.clone(),
                    slots,
                });
            }
        }
        CapacityGrant { grants, released }
    }
}
