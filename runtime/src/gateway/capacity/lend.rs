//! The lender's end of a capacity ask (`POST /v1/capacity` on the admin
//! port, control token checked by the admin router): it lowers its own
//! limits on the replicas named before it answers, so the slots it hands
//! over are never counted twice.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flint_api::backend::RevisionKey;

use super::wire::{CapacityAsk, CapacityGrant, MAX_ASK_REPLICAS};
use crate::gateway::Gateway;

/// Answers an ask with the free slots this gateway can spare.
pub(crate) async fn capacity(
    State(gateway): State<Gateway>,
    Json(ask): Json<CapacityAsk>,
) -> Response {
    if ask.replicas.len() > MAX_ASK_REPLICAS {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "an ask names at most {MAX_ASK_REPLICAS} replicas; this one names {}\n",
                ask.replicas.len()
            ),
        )
            .into_response();
    }
    let key = RevisionKey::new(&ask.namespace, &ask.function, &ask.revision);
    let grant = match gateway.revision(&key) {
        Some(state) => state.lend(&ask.replicas, ask.want, Instant::now()),
        None => CapacityGrant::default(),
    };
    if !grant.grants.is_empty() {
        let slots: u32 = grant.grants.iter().map(|g| g.slots).sum();
        super::Counts::add(&gateway.shared.sharing.counts.lent, slots);
        tracing::debug!(revision = %key, slots, "lent slots to a peer");
    }
    Json(grant).into_response()
}
