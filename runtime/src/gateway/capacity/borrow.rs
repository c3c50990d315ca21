//! Rounds of asks: while requests wait at this gateway for a revision that
//! has replicas, it takes back released slots nobody collected, and
//! otherwise asks every peer at once for free slots. One task per revision
//! runs the rounds, one after the other, until no request waits; rounds
//! that get nothing back off.

use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::sync::mpsc;

use super::peer::PeerClient;
use super::wire::CapacityAsk;
use super::{Counts, Sharing};
use crate::gateway::revision::{RevisionState, Round};

/// Starts the rounds of each revision queued: one task per revision, which
/// runs rounds while requests wait there ([`RevisionState::round_done`]).
/// Ends when the gateway is gone.
pub(super) async fn dispatch(
    sharing: Weak<Sharing>,
    client: PeerClient,
    mut asks: mpsc::Receiver<Arc<RevisionState>>,
) {
    while let Some(state) = asks.recv().await {
        let (sharing, client) = (sharing.clone(), client.clone());
        tokio::spawn(async move {
            loop {
                let Some(view) = sharing.upgrade().and_then(|s| s.view()) else {
                    state.rounds_stopped();
                    return;
                };
                let outcome = round(&state, &view, &client, &sharing).await;
                match state.round_done(outcome) {
                    Some(pause) if pause.is_zero() => tokio::task::yield_now().await,
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => return,
                }
            }
        });
    }
}

/// One round for `state`, counted in `sharing`'s counts.
async fn round(
    state: &Arc<RevisionState>,
    view: &super::View,
    client: &PeerClient,
    sharing: &Weak<Sharing>,
) -> Round {
    if state.reclaim_stale(Instant::now()) {
        state.wake_waiters();
        return Round::Gained;
    }
    let ask = CapacityAsk {
        namespace: state.key.namespace.clone(),
        function: state.key.function.clone(),
        revision: state.key.revision.clone(),
        want: state.slots_wanted(),
        replicas: state.replica_refs(),
    };
    if ask.want == 0 || ask.replicas.is_empty() {
        return Round::Nothing;
    }
    let peers: Vec<_> = view.peers().collect();
    let answers = futures::future::join_all(peers.iter().map(|&peer| client.ask(peer, &ask))).await;
    let (mut got, mut released, mut failed) = (0u32, 0u32, 0u32);
    for (peer, answer) in peers.iter().zip(answers) {
        match answer {
            Ok(grant) => {
                released = released.saturating_add(grant.released);
                let gained = state.take_grant(&grant);
                if gained > 0 {
                    tracing::debug!(revision = %state.key, %peer, slots = gained, "borrowed slots");
                }
                got = got.saturating_add(gained);
            }
            Err(error) => {
                failed += 1;
                tracing::debug!(revision = %state.key, %peer, %error, kind = error.label(), "a peer did not lend");
            }
        }
    }
    if let Some(sharing) = sharing.upgrade() {
        let counts = &sharing.counts;
        Counts::add(&counts.borrowed, got);
        Counts::add(&counts.failed, failed);
        let asked = u32::try_from(peers.len()).unwrap_or(u32::MAX);
        Counts::add(&counts.answered, asked.saturating_sub(failed));
    }
    if got > 0 {
        state.wake_waiters();
        Round::Gained
    } else if released > 0 {
        Round::Released
    } else {
        Round::Nothing
    }
}
