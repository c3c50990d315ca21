//! The request path: route, pick a revision, wait for a replica slot if
//! needed (the activator), forward with safe retries, stream the answer.

use std::sync::Arc;
use std::time::Duration;

use flint_api::Protocol;
use flint_api::poke::ScalePoke;
use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use rand::Rng;

use super::Shared;
use super::body::{self, GatewayBody, InFlight, RequestBody, RequestGuard, Tracked};
use super::error::ProxyError;
use super::pool::Conn;
use super::proxy::{self, Forwarding};
use super::revision::{Refused, RevisionState, Slot};
use super::server::{Client, Pace, Stall, Tunnel};
use crate::budget::{Use, head_bytes};
use crate::events::intake::Routing;

/// Most replicas tried for one request when connections are refused.
const MAX_ATTEMPTS: usize = 4;

/// Longest request URI (path and query, or the whole absolute form) the
/// gateway forwards; a longer one gets 414. Apps and their servers commonly
/// stop at 8 KiB, so a longer URI is a client error to report plainly
/// rather than a larger head to buffer (the head as a whole is capped by
/// `max_buffered_bytes`, with 431).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Bytes in the request target as the client sent it.
fn uri_length(uri: &http::Uri) -> usize {
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => scheme.len() + 3 + authority.as_str().len() + target,
        (None, Some(authority)) => authority.as_str().len() + target,
        _ => target,
    }
}

/// What the request path needs of a revision, copied out of the table.
#[derive(Debug, Clone, Copy)]
struct Settings {
    concurrency: u32,
    timeout_seconds: u32,
    protocol: Protocol,
}

fn draw() -> (usize, usize) {
    let mut rng = rand::rng();
    (rng.random::<u64>() as usize, rng.random::<u64>() as usize)
}

/// A worker thread's reference to the gateway's shared state (see
/// [`super::server`]).
pub(super) type WorkerShared = Arc<Arc<Shared>>;

/// Answers one client request, which came on `client`'s connection.
pub(super) async fn handle(client: &Client, req: Request<Incoming>) -> Response<GatewayBody> {
    let shared = &client.shared;
    let length = uri_length(req.uri());
    if length > MAX_URI_BYTES {
        let err = ProxyError::UriTooLong {
            length,
            limit: MAX_URI_BYTES,
        };
        return error_response(&err, shared.config.retry_after_seconds);
    }
    if let Err(err) = super::host::check(&req) {
        return error_response(&err, shared.config.retry_after_seconds);
    }
    if let Some(intake) = shared.intake.get().filter(|i| i.wants(&req)) {
        // The intake routes with this same table (host first, then path),
        // so an async request reaches the Function a synchronous one would.
        let routing = intake.route(&req, &shared.table.load());
        if !matches!(routing, Routing::Proxy) {
            return intake.accept(req, routing).await.map(body::full);
        }
    }
    let host = super::host::request_host(&req);
    let (state, settings, failure, prefix_len) = {
        let table = shared.table.load();
        let Some(routed) = table.route(host, req.uri().path()) else {
            return error_response(
                &ProxyError::UnknownFunction {
                    host: host.to_owned(),
                    path: req.uri().path().to_owned(),
                },
                shared.config.retry_after_seconds,
            );
        };
        let Some(rev) = routed.revision(rand::rng().random_range(0..100)) else {
            let f = routed.function;
            return error_response(
                &ProxyError::NoRevision {
                    namespace: f.namespace.clone(),
                    function: f.name.clone(),
                },
                shared.config.retry_after_seconds,
            );
        };
        let settings = Settings {
            concurrency: rev.route.concurrency,
            timeout_seconds: rev.route.timeout_seconds,
            protocol: rev.route.protocol,
        };
        (
            Arc::clone(&rev.state),
            settings,
            rev.route.failure.clone(),
            routed.path.map(|p| p.prefix.len()),
        )
    };
    let stall = Stall::new(shared.config.clients.io_timeout);
    let pace = shared.config.clients.min_body_rate.map(Pace::new);
    let req = req.map(|body| RequestBody::new(body, stall, pace));
    let target = Target {
        state,
        settings,
        failure,
        prefix_len,
    };
    // No span per request: the hot path stays free of tracing work; the
    // few log lines name their revision themselves.
    proxy_to(client, target, req).await
}

/// Where a routed request goes.
struct Target {
    state: Arc<RevisionState>,
    settings: Settings,
    /// The revision's failure, answered while it has no replica.
    failure: Option<String>,
    /// Set for the path form: the length of the prefix to strip.
    prefix_len: Option<usize>,
}

async fn proxy_to(
    client: &Client,
    target: Target,
    mut req: Request<RequestBody>,
) -> Response<GatewayBody> {
    let Target {
        state,
        settings,
        failure,
        prefix_len,
    } = target;
    let shared = &client.shared;
    let mut guard = RequestGuard::start(state);
    let state = guard.revision();
    let retry_after = shared.config.retry_after_seconds;
    if let Some(message) = failure.filter(|_| state.replicas() == 0) {
        let err = ProxyError::RevisionFailed {
            revision: state.key.revision.clone(),
            message,
        };
        return fail(guard, &err, retry_after);
    }
    let upgrade = proxy::is_upgrade(&req);
    let host = proxy::forwarded_host(&req);
    let fwd = Forwarding {
        client_ip: &client.ip,
        host: &host,
        prefix_len,
        protocol: settings.protocol,
        upgrade,
        trusted: client.trusted,
    };
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    if let Err(err) = proxy::rewrite_request(&mut req, fwd) {
        return fail(guard, &ProxyError::BadRequest(err.to_string()), retry_after);
    }
    let forwarded = forward(shared, state, settings, req);
    let outcome = if settings.timeout_seconds == 0 {
        forwarded.await
    } else {
        let limit = Duration::from_secs(u64::from(settings.timeout_seconds));
        let deadline = tokio::time::Instant::from_std(guard.started()) + limit;
        match tokio::time::timeout_at(deadline, forwarded).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ProxyError::Timeout {
                revision: state.key.revision.clone(),
                seconds: settings.timeout_seconds,
            }),
        }
    };
    let (mut resp, conn, slot) = match outcome {
        Ok(parts) => parts,
        Err(err) => return fail(guard, &err, retry_after),
    };
    guard.set_code(resp.status().as_u16());
    proxy::rewrite_response(&mut resp);
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let replica_upgrade = hyper::upgrade::on(&mut resp);
        if let Conn::Http1(conn) = conn {
            conn.detach();
        }
        let held = InFlight {
            conn: None,
            slot,
            _guard: guard,
            complete: false,
        };
        // The client connection carries on with it once hyper lets go.
        client.set_tunnel(Tunnel {
            client: client_upgrade,
            replica: replica_upgrade,
            held,
        });
        return resp.map(|_| body::empty());
    }
    let held = InFlight {
        conn: Some(conn),
        slot,
        _guard: guard,
        complete: false,
    };
    resp.map(|incoming| http_body_util::BodyExt::boxed_unsync(Tracked::new(incoming, held)))
}

/// Waits for a slot and sends the request, retrying on other replicas only
/// while the request has not been written (refused or reset connections).
async fn forward(
    shared: &Shared,
    state: &Arc<RevisionState>,
    settings: Settings,
    mut req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Conn, Slot), ProxyError> {
    let waiting_key = &state.key;
    let refused = |refused: Refused| match refused {
        Refused::Full(full) => ProxyError::QueueFull {
            revision: state.key.revision.clone(),
            queued: full.queued,
        },
        Refused::Failed(message) => ProxyError::RevisionFailed {
            revision: state.key.revision.clone(),
            message,
        },
        Refused::Exhausted => ProxyError::Connect {
            revision: state.key.revision.clone(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        },
        Refused::OverBudget(over) => ProxyError::OverBudget(over),
    };
    // Charged only if the request has to wait; held while it waits.
    let admit = || {
        shared
            .budget
            .charge(Use::WaitingRequest, head_bytes(&req))
            .map_err(Refused::OverBudget)
    };
    let mut slot = state
        .acquire(
            settings.concurrency,
            shared.config.queue_size,
            draw,
            |waiting| {
                shared.poke.poke(ScalePoke {
                    namespace: waiting_key.namespace.clone(),
                    function: waiting_key.function.clone(),
                    revision: waiting_key.revision.clone(),
                    waiting,
                });
            },
            admit,
        )
        .await
        .map_err(refused)?;
    let stalled = match settings.protocol {
        Protocol::H2c => req.body_mut().report_failure(),
        Protocol::Http1 => None,
    };
    let mut tried = Vec::new();
    loop {
        let failed = match slot.upstream.pool.checkout(settings.protocol).await {
            Ok(mut conn) => match proxy::send(&mut conn, req).await {
                Ok(resp) => return Ok((resp, conn, slot)),
                Err((source, None)) => {
                    let clients = &shared.config.clients;
                    let body_failure = RequestBody::failure(&source).or_else(|| {
                        stalled.as_ref().and_then(|flag| {
                            RequestBody::flagged(flag, clients.io_timeout, clients.min_body_rate)
                        })
                    });
                    if let Some(failure) = body_failure {
                        return Err(failure);
                    }
                    return Err(ProxyError::Upstream {
                        revision: state.key.revision.clone(),
                        endpoint: slot.upstream.endpoint.id.clone(),
                        source,
                    });
                }
                Err((source, Some(unsent))) => {
                    req = unsent;
                    std::io::Error::other(source)
                }
            },
            Err(err) => err.into_io(),
        };
        tracing::debug!(revision = %state.key.revision, endpoint = %slot.upstream.endpoint.id, error = %failed, "replica refused; trying another");
        tried.push(Arc::clone(&slot.upstream));
        drop(slot);
        let connect_failed = |source| ProxyError::Connect {
            revision: state.key.revision.clone(),
            source,
        };
        if tried.len() >= MAX_ATTEMPTS {
            return Err(connect_failed(failed));
        }
        // Nothing was sent: the request waits again, in the queue and
        // within its timeout, for a slot on a replica it has not tried.
        let admit = || {
            shared
                .budget
                .charge(Use::WaitingRequest, head_bytes(&req))
                .map_err(Refused::OverBudget)
        };
        slot = match state
            .reacquire(
                settings.concurrency,
                shared.config.queue_size,
                &tried,
                admit,
            )
            .await
        {
            Ok(next) => next,
            Err(Refused::Exhausted) => return Err(connect_failed(failed)),
            Err(other) => return Err(refused(other)),
        };
    }
}

fn fail(mut guard: RequestGuard, err: &ProxyError, retry_after: u32) -> Response<GatewayBody> {
    guard.set_code(err.status().as_u16());
    let key = guard.key();
    match err {
        ProxyError::Connect { .. } | ProxyError::Upstream { .. } => {
            tracing::warn!(namespace = %key.namespace, function = %key.function, error = %err, kind = err.metric_label(), "request failed");
        }
        _ => {
            tracing::debug!(namespace = %key.namespace, function = %key.function, error = %err, kind = err.metric_label(), "request refused");
        }
    }
    error_response(err, retry_after)
}

/// The plain-text answer for `err`; a full queue, a spent memory budget
/// and the other refusals that pass with time add `Retry-After`.
pub(super) fn error_response(err: &ProxyError, retry_after: u32) -> Response<GatewayBody> {
    let mut resp = Response::new(body::full(format!("{err}\n")));
    *resp.status_mut() = err.status();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if matches!(
        err,
        ProxyError::QueueFull { .. }
            | ProxyError::NoRevision { .. }
            | ProxyError::TooManyConnections { .. }
            | ProxyError::OverBudget(_)
    ) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_length_counts_the_target_as_sent() {
        let cases = [
            ("/", 1),
            ("/a/b?x=1", 8),
            ("http://h.ns.localhost/a", 23),
            ("http://h.ns.localhost", 22),
            ("h.ns.localhost:80", 17),
        ];
        for (uri, want) in cases {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(uri_length(&uri), want, "{uri}");
        }
    }
}
