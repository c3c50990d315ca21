//! The gateway's live state of one revision: its ready replicas, their
//! in-flight counts, and the activation queue where requests wait while the
//! revision is at zero or every replica is at its `concurrency` limit.
//!
//! [`RevisionState`] is defined here with what every part reads (its
//! replicas, its failure, its cold-start state); each job on it has its
//! own module: which replicas are in rotation ([`rotation`]), the
//! activation queue ([`queue`]), and sharing replicas' slots with other
//! gateways ([`sharing`]).

mod queue;
mod rotation;
mod sharing;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use flint_api::backend::{Endpoint, RevisionKey};
use flint_api::sync::lock;
use tokio::sync::Notify;

pub use queue::{Refused, Slot};
pub use sharing::Round;

use super::balancer::Load;
use super::capacity::{Sharing, Slots};
use super::pool::Pool;
use crate::metrics::RevisionMetrics;

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

/// Cold-start state of a revision. Each transition is marked
/// `// ## From => To` where it happens: in the queue ([`queue`]) and the
/// rotation ([`rotation`]).
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
}
