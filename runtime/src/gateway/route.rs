//! The request path's first step: where a request goes. [`route`] reads
//! what routing needs of the request once (the length of its target, its
//! one `Host`, its path, whether it asks to switch protocols), looks the
//! Function up in the routing table, draws the revision by the traffic
//! split, and hands the proxy step ([`super::proxy`]) a [`Target`] that
//! holds everything it needs. No I/O, no lock, no allocation unless the
//! request is refused (an absolute-form host aside, copied as before).

use std::sync::Arc;

use flint_api::Protocol;
use http::{HeaderValue, Request};
use rand::Rng;

use super::Table;
use super::error::ProxyError;
use super::gate::Gate;
use super::host::NamedHost;
use super::revision::RevisionState;
use super::rewrite;
use super::server::ListenerKind;
use super::table::{FunctionEntry, Routed};

/// Longest request URI (path and query, or the whole absolute form) the
/// gateway forwards; a longer one gets 414. Apps and their servers commonly
/// stop at 8 KiB, so a longer URI is a client error to report plainly
/// rather than a larger head to buffer (the head as a whole is capped by
/// `max_buffered_bytes`, with 431).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// What the proxy step obeys of a revision, copied out of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Settings {
    /// Most requests in flight on one replica (0: no limit).
    pub concurrency: u32,
    /// Longest time from routing to the replica's response head (0: none).
    pub timeout_seconds: u32,
    /// What the replicas speak.
    pub protocol: Protocol,
}

/// What the request carries to the replica, read from it while routing so
/// the proxy step does not read the request's head again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hop {
    /// The host it is forwarded with ([`NamedHost::forwarded`]).
    pub host: HeaderValue,
    /// Set for the path form: the length of the `/function/<ns>/<fn>`
    /// prefix to strip.
    pub prefix_len: Option<usize>,
    /// Whether it asks to switch protocols (e.g. WebSocket).
    pub upgrade: bool,
}

/// Where a routed request goes: everything the gate and the proxy step
/// need.
#[derive(Debug)]
pub(super) struct Target {
    /// The Function, when its gate checks more than visibility (an open
    /// one is not held, sparing the request a reference count).
    pub guarded: Option<Arc<Function>>,
    /// The revision's live state; the request's one reference to it.
    pub state: Arc<RevisionState>,
    /// The revision's settings.
    pub settings: Settings,
    /// The revision's failure, answered while it has no replica.
    pub failure: Option<String>,
    /// What the request carries to the replica.
    pub hop: Hop,
}

/// A Function as the gateway's table holds it.
pub(super) type Function = FunctionEntry<Arc<RevisionState>, Gate>;

/// Routes `req`, which came on a listener of `listener`'s kind, by
/// `table`, drawing the revision of a split at random.
pub(super) fn route<B>(
    table: &Table,
    req: &Request<B>,
    listener: ListenerKind,
) -> Result<Target, ProxyError> {
    route_with(table, req, listener, || rand::rng().random_range(0..100))
}

/// Routes `req` by `table`; `draw`, called once the Function is found,
/// picks the revision of its split (a number taken modulo the split's
/// total; a tag host names its revision itself).
fn route_with<B>(
    table: &Table,
    req: &Request<B>,
    listener: ListenerKind,
    draw: impl FnOnce() -> u32,
) -> Result<Target, ProxyError> {
    check_uri(req.uri())?;
    let host = NamedHost::checked(req)?;
    let path = req.uri().path();
    // A cluster-local Function is unknown on the public listener: the
    // same 404, so its existence does not show.
    let visible =
        |r: &Routed<'_, '_, Arc<RevisionState>, Gate>| r.function.gate.visible_on(listener);
    let Some(routed) = table.route(host.as_str(), path).filter(visible) else {
        return Err(ProxyError::UnknownFunction {
            host: host.as_str().to_owned(),
            path: path.to_owned(),
        });
    };
    let Some(rev) = routed.revision(draw()) else {
        let f = routed.function;
        return Err(ProxyError::NoRevision {
            namespace: f.namespace.clone(),
            function: f.name.clone(),
        });
    };
    Ok(Target {
        guarded: (!routed.function.gate.is_open()).then(|| Arc::clone(routed.function)),
        state: Arc::clone(&rev.state),
        settings: Settings {
            concurrency: rev.route.concurrency,
            timeout_seconds: rev.route.timeout_seconds,
            protocol: rev.route.protocol,
        },
        failure: rev.route.failure.clone(),
        hop: Hop {
            host: host.forwarded(),
            prefix_len: routed.path.map(|p| p.prefix.len()),
            upgrade: rewrite::is_upgrade(req),
        },
    })
}

/// Refuses what [`route`] refuses before looking anything up (a URI
/// longer than [`MAX_URI_BYTES`], a missing or ambiguous `Host`), for
/// requests that take another way (the async intake).
pub(super) fn check<B>(req: &Request<B>) -> Result<(), ProxyError> {
    check_uri(req.uri())?;
    super::host::check(req)
}

fn check_uri(uri: &http::Uri) -> Result<(), ProxyError> {
    let length = uri_length(uri);
    if length > MAX_URI_BYTES {
        return Err(ProxyError::UriTooLong {
            length,
            limit: MAX_URI_BYTES,
        });
    }
    Ok(())
}

/// Bytes in the request target as the client sent it.
fn uri_length(uri: &http::Uri) -> usize {
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => scheme.len() + 3 + authority.as_str().len() + target,
        (None, Some(authority)) => authority.as_str().len() + target,
        _ => target,
    }
}

#[cfg(test)]
mod tests;
