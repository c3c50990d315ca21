//! Hard `concurrency` across several gateways: each gateway admits to a
//! replica only within the slots it owns, and gateways lend each other
//! free slots, so the replica never has more than `concurrency` requests
//! in flight from all of them together, and no slot idles at a gateway
//! without traffic while another has a backlog.
//!
//! - `split.rs`: which gateway owns which slot (deterministic, no messages);
//! - `ledger.rs`: lending, borrowing and resharing as pure arithmetic;
//! - `slots.rs`: one replica's slots at this gateway, atomic with admission;
//! - `view.rs`: the live gateway set as this gateway sees it;
//! - `wire.rs`, `peer.rs`, `lend.rs`: the ask on the admin port, both ends;
//! - `borrow.rs`: rounds of asks while requests wait.
//!
//! A gateway that is never given peers ([`Sharing::set_view`] not called,
//! as in `flint dev` or a gateway without a control token) shares nothing:
//! its replicas' slots are [`slots::UNSHARED`] and the route's
//! `concurrency` applies alone, as with one gateway.

mod borrow;
mod ledger;
pub(crate) mod lend;
pub mod peer;
pub mod slots;
pub mod split;
pub mod view;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use flint_api::drain::ControlToken;
use tokio::sync::mpsc;

pub use slots::Slots;
pub use view::View;

use super::revision::RevisionState;

/// How long after a change of the gateway set a gateway waits before it
/// uses the part of its new share it did not hold: long enough for every
/// gateway to have seen the change and shrunk to its own new share.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);

/// The most revisions whose rounds of asks wait to start at once; past it,
/// a revision starts them when its next request has to wait.
const ASK_QUEUE: usize = 1024;

/// What sharing did so far, for the metrics (published at each scrape).
#[derive(Debug, Default)]
pub struct Counts {
    /// Slots handed to peers.
    pub lent: AtomicU64,
    /// Slots got from peers.
    pub borrowed: AtomicU64,
    /// Asks a peer answered.
    pub answered: AtomicU64,
    /// Asks that got no usable answer.
    pub failed: AtomicU64,
}

impl Counts {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u32) {
        counter.fetch_add(u64::from(n), Ordering::Relaxed);
    }
}

/// The gateway's part in sharing replicas' slots with its peers.
pub struct Sharing {
    /// What it did so far.
    pub counts: Counts,
    view: ArcSwapOption<View>,
    epoch: AtomicU64,
    settle: Duration,
    asks: OnceLock<mpsc::Sender<Arc<RevisionState>>>,
}

impl std::fmt::Debug for Sharing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharing")
            .field("view", &self.view.load())
            .field("settle", &self.settle)
            .finish()
    }
}

impl Sharing {
    /// Not sharing (yet); a change of the gateway set settles in `settle`.
    pub fn new(settle: Duration) -> Self {
        Self {
            counts: Counts::default(),
            view: ArcSwapOption::empty(),
            epoch: AtomicU64::new(0),
            settle,
            asks: OnceLock::new(),
        }
    }

    /// The current view; `None` while not sharing.
    pub fn view(&self) -> Option<Arc<View>> {
        self.view.load_full()
    }

    /// The settle delay.
    pub fn settle(&self) -> Duration {
        self.settle
    }

    /// The epoch of the current view.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Starts asking peers for slots, through `token`; the rounds run on
    /// the current tokio runtime. Only the first call has an effect.
    /// Returns `false` outside a runtime.
    pub fn start(self: &Arc<Self>, token: &ControlToken) -> bool {
        if self.asks.get().is_some() {
            return true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let (tx, rx) = mpsc::channel(ASK_QUEUE);
        if self.asks.set(tx).is_ok() {
            let client = peer::PeerClient::new(token);
            runtime.spawn(borrow::dispatch(Arc::downgrade(self), client, rx));
        }
        true
    }

    /// Sets the gateway set: `me` is this gateway's admin address,
    /// `ready` the ready gateways'. Returns the new view when it changed.
    pub fn set_view(
        &self,
        me: SocketAddr,
        ready: Vec<SocketAddr>,
        now: Instant,
    ) -> Option<Arc<View>> {
        if self
            .view
            .load()
            .as_ref()
            .is_some_and(|v| v.same_members(me, &ready))
        {
            return None;
        }
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let view = Arc::new(View::new(me, ready, epoch, now));
        self.view.store(Some(Arc::clone(&view)));
        Some(view)
    }

    /// Starts a new epoch of the current view (a revision's `concurrency`
    /// changed and it was reshared): a settle pending for an older epoch
    /// must wait for this one. Returns it.
    pub fn bump(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The slots of a replica joining rotation now, with `concurrency`
    /// (`0`: no limit, not shared) and id `replica`.
    pub fn slots_for(&self, concurrency: u32, replica: &str, now: Instant) -> Slots {
        match self.view.load().as_ref() {
            Some(view) if concurrency > 0 => Slots::shared(
                view.share(concurrency, replica),
                view.settled(now, self.settle),
            ),
            _ => Slots::unshared(),
        }
    }

    /// Queues the start of `state`'s rounds of asks; `false` when they
    /// cannot run (not started, or [`ASK_QUEUE`] revisions already wait).
    pub(crate) fn ask(&self, state: Arc<RevisionState>) -> bool {
        self.asks.get().is_some_and(|tx| tx.try_send(state).is_ok())
    }
}
