//! The gateway's live state of one revision: its ready replicas, their
//! in-flight counts, and the activation queue where requests wait while the
//! revision is at zero or every replica is at its `concurrency` limit.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

mod sharing;
pub use sharing::Round;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use flint_api::backend::{Endpoint, RevisionKey};
use flint_api::sync::lock;
use tokio::sync::Notify;

use super::balancer::{self, Load};
use super::capacity::{Sharing, Slots};
use super::pool::Pool;
use crate::metrics::RevisionMetrics;

/// How often requests waiting for a revision's first replica poke the
/// autoscaler again.
pub const REPOKE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the gateway tries a starting replica's port.
pub const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(25);
/// How long the gateway keeps trying a starting replica before leaving it to
/// the kubelet's probe.
const PROBE_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// One ready replica.
#[derive(Debug)]
pub struct Upstream {
    /// Its identity and address.
    pub endpoint: Endpoint,
    /// Its slots at this gateway: in flight, and the limit when shared
    /// with other gateways.
    slots: Slots,
    /// Its connections.
    pub pool: Pool,
}

impl Load for Upstream {
    fn load(&self) -> u32 {
        self.slots.in_flight()
    }

    fn try_take(&self, limit: u32) -> bool {
        self.slots.try_take(limit)
    }
}

/// Cold-start state of a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cold {
    /// Replicas are ready, or nobody is waiting.
    Warm,
    /// A request is waiting for a first replica since `since`; the
    /// autoscaler has been poked once for it.
    Pending {
        /// When the first request began to wait.
        since: Instant,
    },
}

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

/// The live state of one revision.
pub struct RevisionState {
    /// The revision.
    pub key: RevisionKey,
    upstreams: ArcSwap<Vec<Arc<Upstream>>>,
    waiting: AtomicUsize,
    /// Of the waiting requests, those waiting again after a replica refused
    /// their connection (they wait for the other replicas only).
    rewaiting: AtomicUsize,
    notify: Notify,
    cold: Mutex<Cold>,
    failure: Mutex<Option<String>>,
    /// Replicas taken out of rotation that still serve requests: a backend
    /// draining one asks [`RevisionState::in_flight`] until it reaches zero.
    draining: Mutex<Vec<Arc<Upstream>>>,
    /// Replicas held out of rotation (by endpoint id) until the instant
    /// given, while the autoscaler drains them before removing them.
    held: Mutex<HashMap<String, Instant>>,
    /// The endpoints last given, so a hold or release recomputes the rotation.
    given: Mutex<Vec<Endpoint>>,
    /// When the autoscaler was last poked for this revision.
    last_poke: Mutex<Option<Instant>>,
    /// Whether starting replicas are probed by the gateway itself.
    probe_starting: std::sync::atomic::AtomicBool,
    /// Starting replicas (by endpoint id) that answered the gateway's probe:
    /// in rotation before their endpoint says ready.
    probed: Mutex<std::collections::HashSet<String>>,
    /// Starting replicas the gateway is probing now.
    probing: Mutex<std::collections::HashSet<String>>,
    /// How this gateway shares replicas' slots with its peers.
    sharing: Arc<Sharing>,
    /// The revision's `concurrency` (0 until routed, or no limit).
    concurrency: AtomicU32,
    /// Rounds of asks to peers for slots.
    pace: Mutex<sharing::Pace>,
    /// Its metric handles.
    pub metrics: RevisionMetrics,
}

impl std::fmt::Debug for RevisionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevisionState")
            .field("key", &self.key)
            .field("replicas", &self.upstreams.load().len())
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish()
    }
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
    /// A revision with no replica yet, whose replicas' slots are shared
    /// through `sharing`.
    pub fn new(key: RevisionKey, metrics: RevisionMetrics, sharing: Arc<Sharing>) -> Self {
        Self {
            key,
            upstreams: ArcSwap::from_pointee(Vec::new()),
            waiting: AtomicUsize::new(0),
            rewaiting: AtomicUsize::new(0),
            notify: Notify::new(),
            cold: Mutex::new(Cold::Warm),
            failure: Mutex::new(None),
            draining: Mutex::new(Vec::new()),
            held: Mutex::new(HashMap::new()),
            given: Mutex::new(Vec::new()),
            last_poke: Mutex::new(None),
            probe_starting: std::sync::atomic::AtomicBool::new(false),
            probed: Mutex::new(std::collections::HashSet::new()),
            probing: Mutex::new(std::collections::HashSet::new()),
            sharing,
            concurrency: AtomicU32::new(0),
            pace: Mutex::new(sharing::Pace::default()),
            metrics,
        }
    }

    /// Marks the revision failed (or healthy again with `None`). Requests
    /// waiting for a replica of a failed revision give up with its reason.
    pub fn set_failure(&self, failure: Option<String>) {
        let failed = failure.is_some();
        *lock(&self.failure) = failure;
        if failed {
            self.notify.notify_waiters();
        }
    }

    /// Why the revision failed, if it did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Ready replicas.
    pub fn replicas(&self) -> usize {
        self.upstreams.load().len()
    }

    /// Requests waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Requests in flight on the replica `id`, in rotation or draining
    /// (taken out of rotation with requests still running); `None` once the
    /// gateway has nothing running on it.
    pub fn in_flight(&self, id: &str) -> Option<u32> {
        let upstreams = self.upstreams.load();
        if let Some(u) = upstreams.iter().find(|u| u.endpoint.id == id) {
            return Some(u.load());
        }
        let mut draining = lock(&self.draining);
        draining.retain(|u| u.load() > 0);
        draining
            .iter()
            .find(|u| u.endpoint.id == id)
            .map(|u| u.load())
    }

    /// The cold-start state.
    pub fn cold(&self) -> Cold {
        *lock(&self.cold)
    }

    fn set_cold(&self, next: Cold) -> Cold {
        std::mem::replace(&mut *lock(&self.cold), next)
    }

    /// Replaces the replicas: only ready, non-terminating endpoints that are
    /// not held for a drain stay in rotation (a replica leaving stops getting
    /// requests at once); replicas kept keep their in-flight counts and
    /// connections. Waiting requests are woken when replicas appear.
    /// A starting replica (listed, not ready, not terminating) of a revision
    /// that allows it ([`RevisionState::set_probe_starting`]) is probed by
    /// the gateway and joins rotation as soon as its port accepts a
    /// connection.
    pub fn set_endpoints(self: &Arc<Self>, endpoints: &[Endpoint], now: Instant) {
        {
            let mut given = lock(&self.given);
            given.clear();
            given.extend_from_slice(endpoints);
        }
        self.rotate(endpoints, now);
        self.probe_starting_replicas(endpoints);
    }

    /// Whether the gateway probes this revision's starting replicas itself
    /// (its route says the default readiness probe applies).
    pub fn set_probe_starting(&self, on: bool) {
        self.probe_starting.store(on, Ordering::Release);
    }

    fn probe_starting_replicas(self: &Arc<Self>, endpoints: &[Endpoint]) {
        if !self.probe_starting.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for e in endpoints.iter().filter(|e| !e.ready && !e.terminating) {
            let known = lock(&self.probed).contains(&e.id);
            let started = !known && lock(&self.probing).insert(e.id.clone());
            if started {
                runtime.spawn(Arc::clone(self).probe(e.clone()));
            }
        }
    }

    /// Tries `endpoint`'s port until it accepts a connection (then the
    /// replica joins rotation), it leaves the endpoint list, turns ready or
    /// terminating, or [`PROBE_FOR`] passes.
    async fn probe(self: Arc<Self>, endpoint: Endpoint) {
        let deadline = Instant::now() + PROBE_FOR;
        while Instant::now() < deadline {
            let still_starting = lock(&self.given).iter().any(|e| {
                e.id == endpoint.id && e.addr == endpoint.addr && !e.ready && !e.terminating
            });
            if !still_starting {
                break;
            }
            let connect = tokio::net::TcpStream::connect(endpoint.addr);
            if let Ok(Ok(_)) = tokio::time::timeout(PROBE_INTERVAL * 8, connect).await {
                lock(&self.probed).insert(endpoint.id.clone());
                tracing::debug!(revision = %self.key, replica = %endpoint.id, "a starting replica answered the gateway's probe");
                self.rerotate(Instant::now());
                break;
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        lock(&self.probing).remove(&endpoint.id);
    }

    /// Takes the replicas `ids` out of rotation until `until` (or until
    /// [`RevisionState::release`]), whatever their endpoints say meanwhile:
    /// the autoscaler is about to remove them and waits for their requests
    /// to finish ([`RevisionState::in_flight_on`]).
    pub fn hold(&self, ids: &[String], until: Instant, now: Instant) {
        lock(&self.held).extend(ids.iter().map(|id| (id.clone(), until)));
        self.rerotate(now);
    }

    /// Puts held replicas back into rotation (if their endpoints are ready),
    /// and lets holds that ran out lapse.
    pub fn release(&self, ids: &[String], now: Instant) {
        {
            let mut held = lock(&self.held);
            for id in ids {
                held.remove(id);
            }
        }
        self.rerotate(now);
    }

    /// Requests in flight on the replicas `ids`, in rotation or not.
    pub fn in_flight_on(&self, ids: &[String]) -> u32 {
        ids.iter().filter_map(|id| self.in_flight(id)).sum()
    }

    fn rerotate(&self, now: Instant) {
        let given = lock(&self.given).clone();
        self.rotate(&given, now);
    }

    fn rotate(&self, endpoints: &[Endpoint], now: Instant) {
        let probed: std::collections::HashSet<String> = {
            let mut probed = lock(&self.probed);
            // Forget replicas that left the list.
            probed.retain(|id| endpoints.iter().any(|e| &e.id == id));
            probed.clone()
        };
        let held: std::collections::HashSet<String> = {
            let mut held = lock(&self.held);
            held.retain(|_, until| *until > now);
            held.keys().cloned().collect()
        };
        let current = self.upstreams.load_full();
        let mut old: HashMap<(&str, std::net::SocketAddr), &Arc<Upstream>> = current
            .iter()
            .map(|u| ((u.endpoint.id.as_str(), u.endpoint.addr), u))
            .collect();
        let concurrency = self.concurrency.load(Ordering::Acquire);
        let next: Vec<Arc<Upstream>> = endpoints
            .iter()
            .filter(|e| {
                (e.ready || probed.contains(&e.id)) && !e.terminating && !held.contains(&e.id)
            })
            .map(|e| match old.remove(&(e.id.as_str(), e.addr)) {
                Some(kept) => Arc::clone(kept),
                None => Arc::new(Upstream {
                    endpoint: e.clone(),
                    slots: self.sharing.slots_for(concurrency, &e.id, now),
                    pool: Pool::new(e.addr),
                }),
            })
            .collect();
        let ready = !next.is_empty();
        // Replicas leaving rotation with requests on them are remembered
        // until those finish, so a draining backend can wait for them.
        {
            let mut draining = lock(&self.draining);
            draining.retain(|u| u.load() > 0);
            draining.extend(old.into_values().filter(|u| u.load() > 0).cloned());
        }
        self.upstreams.store(Arc::new(next));
        if ready {
            // ## Pending => Warm: the first replica is ready; the cold start
            // lasted from the first wait until now.
            if let Cold::Pending { since } = self.set_cold(Cold::Warm) {
                self.metrics
                    .cold_start_ended(now.saturating_duration_since(since));
            }
            self.notify.notify_waiters();
        }
    }

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
