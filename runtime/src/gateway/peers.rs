//! The gateway's side of sharing replicas' slots with its peers
//! ([`super::capacity`]): the gateway set it is given, and the changes of
//! share that follow.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{Gateway, PeerGateways, RevisionState};
use std::sync::atomic::Ordering;

impl Gateway {
    /// Whether the gateway knows whom it shares replicas' slots with: it
    /// shares with nobody (no peers configured, or no control token), or
    /// it has been given the gateway set, or that set cannot be learnt
    /// ([`Gateway::peers_unavailable`]). Until then it is not ready: it
    /// would admit each replica's whole `concurrency` as if alone, on top
    /// of what the other gateways admit.
    pub fn peers_known(&self) -> bool {
        matches!(self.config().peers, PeerGateways::Alone)
            || self.control_token().is_none()
            || self.shared.sharing.view().is_some()
            || self.shared.peers_unavailable.load(Ordering::Acquire)
    }

    /// The gateway set cannot be learnt for now (its watch failed before
    /// a first answer): the gateway turns ready without it and admits each
    /// replica's whole `concurrency`, as a single gateway does, until a
    /// set arrives.
    pub fn peers_unavailable(&self) {
        if !self.shared.peers_unavailable.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "the gateway set is unknown: serving without sharing replicas' slots until it is known"
            );
        }
    }

    /// Shares replicas' `concurrency` slots with the gateways `ready` (the
    /// ready gateways' admin addresses, this one's, `me`, included once it
    /// is ready), asking them for slots while requests wait here and
    /// lending them free ones. Call it again whenever the set changes; the
    /// first call starts the sharing, on the current tokio runtime.
    ///
    /// Sharing needs the control token (peers present it to each other);
    /// without one, or outside a runtime, the call is ignored and the
    /// gateway keeps each replica's whole `concurrency` to itself.
    pub fn set_peers(&self, me: SocketAddr, ready: Vec<SocketAddr>) {
        let sharing = &self.shared.sharing;
        let Some(token) = self.control_token() else {
            tracing::warn!("no control token: replicas' slots are not shared with other gateways");
            return;
        };
        if !sharing.start(token) {
            tracing::warn!("no async runtime: replicas' slots are not shared with other gateways");
            return;
        }
        let now = Instant::now();
        let Some(view) = sharing.set_view(me, ready, now) else {
            return;
        };
        let states: Vec<Arc<RevisionState>> = self.revisions().values().cloned().collect();
        for state in &states {
            state.reshare(&view);
        }
        tracing::info!(
            %me,
            gateways = view.peers().count() + 1,
            epoch = view.epoch,
            settle_ms = sharing.settle().as_millis() as u64,
            "gateway set changed; replicas' slots split anew"
        );
        if view.settled(now, sharing.settle()) {
            // Alone: nobody else can hold slots, nothing to wait for.
            for state in &states {
                state.settle();
            }
        } else {
            self.settle_later(states, view.epoch);
        }
    }

    /// Once the settle delay has passed with no newer change, gives
    /// `states` the rest of their shares.
    pub(super) fn settle_later(&self, states: Vec<Arc<RevisionState>>, epoch: u64) {
        let sharing = Arc::clone(&self.shared.sharing);
        if sharing.view().is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                epoch,
                "no async runtime: shares stay shrunk until the next change"
            );
            return;
        };
        let gateway = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(sharing.settle()).await;
            if sharing.epoch() != epoch {
                // A newer change settles later, and gives these too.
                return;
            }
            // Every revision: those created meanwhile hold pending slots too.
            let states: Vec<Arc<RevisionState>> = gateway
                .revisions()
                .values()
                .cloned()
                .chain(states)
                .collect();
            for state in states {
                state.settle();
            }
            tracing::debug!(epoch, "gateway set settled");
        });
    }
}
