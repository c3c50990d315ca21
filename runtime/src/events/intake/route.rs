//! Which requests the intake takes, and for which Function: asynchronous
//! by path (`/async-function/<ns>/<fn>/…`) or by `Prefer: respond-async`,
//! routed by the gateway's own rule so that an asynchronous request reaches
//! the Function a synchronous one with the same Host and path would.

use flint_api::names::FUNCTION_PATH_PREFIX;
use http::{HeaderMap, Request};

use super::AsyncIntake;
use crate::events::invocation::FunctionKey;
use crate::gateway::RouteTable;
use crate::gateway::host::request_host;

/// Path prefix of asynchronous invocations by path.
pub const ASYNC_PATH_PREFIX: &str = "/async-function/";

/// Whether a `Prefer` header asks for an asynchronous answer (RFC 7240).
fn prefers_async(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split([',', ';'])
                .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
        })
    })
}

/// Where an accepted request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed {
    /// The Function.
    pub(super) target: FunctionKey,
    /// The request target to deliver to.
    pub(super) uri: String,
    /// The Host to deliver with (host-routed requests only).
    pub(super) host: Option<String>,
}

/// What the intake makes of a request, decided by the gateway's own routing
/// rule ([`RouteTable::route`]: the Host first, then the path form), so an
/// asynchronous request reaches the Function a synchronous one with the
/// same Host and path would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// Not asynchronous after all: proxy it as usual. A Host naming a
    /// Function makes `/async-function/…` an ordinary path of that
    /// Function, as `/function/…` is for synchronous requests.
    Proxy,
    /// Asynchronous, but no Function routes it: answered 404.
    Unknown,
    /// Asynchronous, for this Function.
    Store(Addressed),
}

impl Routing {
    /// The Function the request is stored for, if it is.
    pub fn function(&self) -> Option<&FunctionKey> {
        match self {
            Self::Store(addressed) => Some(&addressed.target),
            Self::Proxy | Self::Unknown => None,
        }
    }
}

impl AsyncIntake {
    /// Whether the intake takes this request (asynchronous by path or by
    /// `Prefer`).
    pub fn wants<B>(&self, req: &Request<B>) -> bool {
        req.uri().path().starts_with(ASYNC_PATH_PREFIX) || prefers_async(req.headers())
    }

    /// Decides, with the gateway's routing table, whether `req` is taken
    /// and for which Function. Only asked of requests [`Self::wants`] took.
    pub fn route<B, S, G>(&self, req: &Request<B>, table: &RouteTable<S, G>) -> Routing {
        let path = req.uri().path();
        let query = req.uri().query().map_or(String::new(), |q| format!("?{q}"));
        let host = request_host(req);
        let by_async_path = path.strip_prefix(ASYNC_PATH_PREFIX);
        // `/async-function/<ns>/<fn>/…` is routed as its `/function/…` twin.
        let routed_path = by_async_path.map(|rest| format!("{FUNCTION_PATH_PREFIX}{rest}"));
        let Some(routed) = table.route(host, routed_path.as_deref().unwrap_or(path)) else {
            return Routing::Unknown;
        };
        let target = FunctionKey::new(&routed.function.namespace, &routed.function.name);
        match routed.path {
            // Routed by path: delivered to `/function/<ns>/<fn>/…`.
            Some(p) => {
                let trailing = p.rest == "/" && !path.ends_with('/');
                Routing::Store(Addressed {
                    target,
                    uri: format!("{}{}{query}", p.prefix, if trailing { "" } else { p.rest }),
                    host: None,
                })
            }
            // Routed by Host: the path is the Function's own, even when it
            // looks like one of Flint's path forms; asynchronous only when
            // asked for with `Prefer`.
            None if by_async_path.is_some() && !prefers_async(req.headers()) => Routing::Proxy,
            None => Routing::Store(Addressed {
                target,
                uri: req
                    .uri()
                    .path_and_query()
                    .map_or("/".into(), |p| p.to_string()),
                host: Some(host.to_owned()),
            }),
        }
    }
}
