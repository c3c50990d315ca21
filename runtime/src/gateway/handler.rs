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
use flint_api::names::HEADER_INTERNAL;

use super::server::ListenerKind;

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

/// The pipeline: an asynchronous request to the intake, any other routed,
/// let through its Function's gate, and proxied. A request the gate
/// refuses never reaches a revision, so it never wakes one from zero.
async fn answer(
    client: &Client,
    mut req: Request<Incoming>,
) -> Result<Response<GatewayBody>, ProxyError> {
    let shared = &client.shared;
    let internal = internal_caller(shared, &mut req);
    // The platform's own callers pass every gate: what they carry was let
    // through (or is exempt) when it was accepted.
    let listener = if internal {
        ListenerKind::Internal
    } else {
        client.listener
    };
    let table = shared.table.load();
    if let Some(intake) = shared.intake.get().filter(|i| i.wants(&req)) {
        route::check(&req)?;
        // The intake routes with this same table (host first, then path),
        // so an async request reaches the Function a synchronous one would,
        // through the same gate.
        let routing = intake.route(&req, &table);
        if !matches!(routing, Routing::Proxy) {
            if let Some(key) = routing.function() {
                let Some(function) = table
                    .function(&key.namespace, &key.function)
                    .filter(|f| f.gate.visible_on(listener))
                else {
                    return Err(ProxyError::UnknownFunction {
                        host: super::host::request_host(&req).to_owned(),
                        path: req.uri().path().to_owned(),
                    });
                };
                if !internal && !function.gate.is_open() {
                    admit(client, function, &mut req).await?;
                }
            }
            return Ok(intake.accept(req, routing).await.map(body::full));
        }
    }
    let mut target = route(&table, &req, listener)?;
    drop(table);
    if let Some(function) = target.guarded.take().filter(|_| !internal) {
        admit(client, &function, &mut req).await?;
    }
    proxy(client, target, req).await
}

/// Whether `req` comes from the platform itself: it presents the
/// gateway's internal token or the control token. The header is removed
/// either way, so it never reaches a function or the intake's store.
fn internal_caller(shared: &super::Shared, req: &mut Request<Incoming>) -> bool {
    let Some(presented) = req.headers_mut().remove(HEADER_INTERNAL) else {
        return false;
    };
    let Ok(presented) = presented.to_str() else {
        return false;
    };
    shared.internal_token.matches(presented)
        || shared
            .control_token
            .get()
            .is_some_and(|t| t.matches(presented))
}

/// Runs `function`'s gate on `req`, counting a refusal by its reason.
async fn admit(
    client: &Client,
    function: &route::Function,
    req: &mut Request<Incoming>,
) -> Result<(), ProxyError> {
    let shared = &client.shared;
    let names = (function.namespace.as_str(), function.name.as_str());
    let result = function
        .gate
        .admit(names, req, client.tls, shared.config.access.https_port)
        .await;
    let reason = match &result {
        Err(ProxyError::Unauthorized { failure, .. }) => Some(failure.reason()),
        Err(ProxyError::AuthUnavailable { .. }) => Some("unavailable"),
        _ => None,
    };
    if let Some(reason) = reason {
        shared
            .metrics
            .auth_failure(&function.namespace, &function.name, reason);
    }
    result
}
