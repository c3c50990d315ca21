//! The request path, built as a plain pipeline: [`route`] (where the
//! request goes: host, path, revision by the traffic split), then
//! [`proxy`] (a replica slot, waking the revision from zero, forwarding
//! with safe retries, the answer streamed back). Either step refuses with
//! a [`ProxyError`], turned into the client's answer in one place here.
//!
//! Not a stack of tower layers: each worker thread keeps its own replica
//! connections and counters (see [`super::server`]), a request clones its
//! worker's reference to shared state once, and a layer's boxed future and
//! per-request service clone would cost what the gateway is measured on
//! (docs/architecture.md says more).

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use super::Shared;
use super::body::{self, GatewayBody};
use super::error::ProxyError;
use super::proxy::proxy;
use super::route::{self, route};
use super::server::Client;
use crate::events::intake::Routing;

/// A worker thread's reference to the gateway's shared state (see
/// [`super::server`]).
pub(super) type WorkerShared = Arc<Arc<Shared>>;

/// Answers one client request, which came on `client`'s connection.
pub(super) async fn handle(client: &Client, req: Request<Incoming>) -> Response<GatewayBody> {
    // No span per request: the hot path stays free of tracing work; the
    // few log lines name their revision themselves.
    match answer(client, req).await {
        Ok(resp) => resp,
        Err(err) => err.response(client.shared.config.retry_after_seconds),
    }
}

/// The pipeline: an asynchronous request to the intake, any other routed
/// and proxied.
async fn answer(
    client: &Client,
    req: Request<Incoming>,
) -> Result<Response<GatewayBody>, ProxyError> {
    let shared = &client.shared;
    if let Some(intake) = shared.intake.get().filter(|i| i.wants(&req)) {
        route::check(&req)?;
        // The intake routes with this same table (host first, then path),
        // so an async request reaches the Function a synchronous one would.
        let routing = intake.route(&req, &shared.table.load());
        if !matches!(routing, Routing::Proxy) {
            return Ok(intake.accept(req, routing).await.map(body::full));
        }
    }
    let target = route(&shared.table.load(), &req)?;
    proxy(client, target, req).await
}
