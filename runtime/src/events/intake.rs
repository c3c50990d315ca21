//! The intake: a request with `Prefer: respond-async`, or one sent to
//! `/async-function/<ns>/<fn>/…`, is stored durably and answered `202
//! Accepted` with its invocation id, instead of being proxied. The gateway
//! asks [`AsyncIntake::wants`] on each request (two cheap header/path
//! checks) and hands over the ones it wants.

use std::sync::Arc;

use bytes::Bytes;
use flint_api::names::FUNCTION_PATH_PREFIX;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};

use super::address::AddressPolicy;
use super::body::{self, BodyError};
use super::connect::{CallbackTargetError, check_url};
use super::invocation::{
    ATTEMPT_HEADER, CALLBACK_HEADER, FunctionKey, INVOCATION_ID_HEADER, Invocation, new_id, now_ms,
    valid_id,
};
use super::metrics::EventMetrics;
use super::queue::{Enqueued, Queue, QueueError};
use super::targets::Targets;
use crate::budget::{MemoryBudget, OverBudget, Use, head_bytes};
use crate::gateway::RouteTable;
use crate::gateway::host::request_host;

/// Path prefix of asynchronous invocations by path.
pub const ASYNC_PATH_PREFIX: &str = "/async-function/";
/// Default largest request body accepted for asynchronous delivery (NATS's
/// default message limit is 1 MiB, which must also hold the request head).
pub const DEFAULT_MAX_BODY: usize = 512 * 1024;

/// Headers not stored with an invocation: hop-by-hop ones, the ones the
/// delivery sets itself, and the ones only the intake reads.
/// `Proxy-Authorization` is the gateway's, never the function's.
const DROPPED: [&str; 14] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "prefer",
    CALLBACK_HEADER,
    INVOCATION_ID_HEADER,
    ATTEMPT_HEADER,
];

/// The caller's credentials: stored (and replayed to the function on every
/// attempt, possibly long after the caller sent them) only when the
/// Function opts in with `async.storeCredentials`.
const CREDENTIALS: [&str; 2] = ["authorization", "cookie"];

/// Whether header `name` is stored with an invocation of a Function that
/// does (`store_credentials`) or does not store credentials.
fn stored(name: &str, store_credentials: bool) -> bool {
    !DROPPED.contains(&name) && (store_credentials || !CREDENTIALS.contains(&name))
}

/// The one thing the intake asks of its queue: to store an invocation.
/// The gateway holds one intake type whichever queue is behind it, and a
/// [`Queue`] cannot be a trait object without naming its ticket type, so
/// the intake keeps its queue as this trait, which every [`Queue`] is.
trait Enqueue: Send + Sync {
    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>>;
}

impl<Q: Queue> Enqueue for Q {
    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Queue::enqueue(self, invocation)
    }
}

/// Accepts asynchronous invocations onto a queue.
#[derive(Clone)]
pub struct AsyncIntake {
    queue: Arc<dyn Enqueue>,
    targets: Targets,
    metrics: EventMetrics,
    max_body: usize,
    callbacks: Arc<AddressPolicy>,
    budget: MemoryBudget,
}

impl std::fmt::Debug for AsyncIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncIntake")
            .field("max_body", &self.max_body)
            .field("callbacks", &self.callbacks)
            .field("budget", &self.budget.limit())
            .finish_non_exhaustive()
    }
}

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
    target: FunctionKey,
    uri: String,
    host: Option<String>,
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

fn answer(status: StatusCode, body: String) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

impl AsyncIntake {
    /// An intake storing onto `queue` the invocations of `targets`, with
    /// callback URLs refused by the default [`AddressPolicy`].
    pub fn new<Q: Queue>(queue: Arc<Q>, targets: Targets, metrics: EventMetrics) -> Self {
        Self {
            queue,
            targets,
            metrics,
            max_body: DEFAULT_MAX_BODY,
            callbacks: Arc::new(AddressPolicy::default()),
            budget: MemoryBudget::unlimited(),
        }
    }

    /// The same intake charging the bodies it reads and stores to `budget`
    /// (the gateway's, given by [`crate::gateway::Gateway::set_async_intake`]);
    /// a body that does not fit is answered 503 with `Retry-After`.
    pub fn with_memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The same intake checking callback URLs against `policy` (the one
    /// the callbacks connect under).
    pub fn with_callback_policy(mut self, policy: AddressPolicy) -> Self {
        self.callbacks = Arc::new(policy);
        self
    }

    /// The same intake with another body limit.
    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// The async metrics in Prometheus text format (appended to the
    /// gateway's `/metrics`).
    pub fn metrics_text(&self) -> Result<String, crate::metrics::MetricsError> {
        self.metrics
            .encode()
            .map_err(|source| crate::metrics::MetricsError::Register {
                name: "flint_async_*",
                source,
            })
    }

    /// Whether the intake takes this request (asynchronous by path or by
    /// `Prefer`).
    pub fn wants<B>(&self, req: &Request<B>) -> bool {
        req.uri().path().starts_with(ASYNC_PATH_PREFIX) || prefers_async(req.headers())
    }

    /// Decides, with the gateway's routing table, whether `req` is taken
    /// and for which Function. Only asked of requests [`Self::wants`] took.
    pub fn route<B, S>(&self, req: &Request<B>, table: &RouteTable<S>) -> Routing {
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

    /// Stores `req` and answers 202 with its id; or 404 (unknown Function),
    /// 400 (bad id or callback URL), 413 (body too large), 503 with
    /// `Retry-After` (the queue is unreachable, or full, or the gateway's
    /// memory budget has no room for the body: nothing was accepted, try
    /// again).
    /// `routing` is what [`Self::route`] decided for `req`; a request to be
    /// proxied is answered 500 (the caller should not have handed it over).
    pub async fn accept<B>(&self, req: Request<B>, routing: Routing) -> Response<Bytes>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let addressed = match routing {
            Routing::Store(addressed) => addressed,
            Routing::Unknown => {
                return answer(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no function for async request to host {:?}, path {}\n",
                        request_host(&req),
                        req.uri().path()
                    ),
                );
            }
            Routing::Proxy => {
                return answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "a synchronous request reached the async intake\n".to_owned(),
                );
            }
        };
        let Some(target) = self.targets.get(&addressed.target) else {
            return answer(
                StatusCode::NOT_FOUND,
                format!(
                    "function {} does not accept async invocations\n",
                    addressed.target
                ),
            );
        };
        let now = now_ms();
        let id = match req.headers().get(INVOCATION_ID_HEADER).map(|v| v.to_str()) {
            None => new_id(now),
            Some(Ok(id)) if valid_id(id) => id.to_owned(),
            Some(_) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{INVOCATION_ID_HEADER} must be 1-128 characters of letters, digits and -_.:@\n"
                    ),
                );
            }
        };
        let callback_url = match req.headers().get(CALLBACK_HEADER).map(|v| v.to_str()) {
            None => None,
            Some(Ok(url)) => match url.parse::<http::Uri>() {
                Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => {
                    if let Err(refused) = self.check_callback(url, &uri, &addressed.target).await {
                        return refused;
                    }
                    Some(url.to_owned())
                }
                _ => None,
            },
            Some(Err(_)) => None,
        };
        if callback_url.is_none() && req.headers().contains_key(CALLBACK_HEADER) {
            return answer(
                StatusCode::BAD_REQUEST,
                format!("{CALLBACK_HEADER} must be an absolute http:// URL\n"),
            );
        }
        // The head, then the body as it is read, then the queue's encoded
        // copy: charged before they are held, released once stored.
        let mut charge = match self.budget.charge(Use::AsyncBody, head_bytes(&req)) {
            Ok(charge) => charge,
            Err(over) => return self.over_budget(&addressed.target, &over),
        };
        let (parts, body) = req.into_parts();
        let body = match body::read(body, self.max_body, &mut charge).await {
            Ok(body) => body,
            Err(BodyError::OverBudget(over)) => return self.over_budget(&addressed.target, &over),
            Err(err @ BodyError::TooLarge { .. }) => {
                return answer(StatusCode::PAYLOAD_TOO_LARGE, format!("{err}\n"));
            }
            Err(err @ BodyError::Read(_)) => {
                return answer(StatusCode::BAD_REQUEST, format!("{err}\n"));
            }
        };
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| stored(name.as_str(), target.store_credentials))
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let invocation = Invocation {
            id: id.clone(),
            target: addressed.target.clone(),
            method: parts.method.as_str().to_owned(),
            uri: addressed.uri,
            host: addressed.host,
            headers,
            callback_url,
            enqueued_at_ms: now,
            body,
        };
        if let Err(over) = charge.grow(encoded_bytes(&invocation)) {
            return self.over_budget(&addressed.target, &over);
        }
        let enqueued = self.queue.enqueue(invocation).await;
        drop(charge);
        match enqueued {
            Ok(enqueued) => {
                if enqueued == Enqueued::New {
                    self.metrics.accepted(&addressed.target);
                }
                let mut resp = answer(StatusCode::ACCEPTED, format!("{{\"id\":\"{id}\"}}\n"));
                let headers = resp.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                if let Ok(v) = HeaderValue::from_str(&id) {
                    headers.insert(INVOCATION_ID_HEADER, v);
                }
                resp
            }
            Err(err) => {
                tracing::warn!(function = %addressed.target, error = %err, kind = err.metric_label(), "async request not accepted");
                self.metrics.refused(&addressed.target, err.metric_label());
                refusal(&err)
            }
        }
    }
}

/// What a queue's encoded copy of `inv` holds while it is stored: the body
/// and the stored head, with room for the record's framing.
fn encoded_bytes(inv: &Invocation) -> usize {
    let headers: usize = inv.headers.iter().map(|(n, v)| n.len() + v.len() + 8).sum();
    inv.body.len() + headers + inv.uri.len() + inv.id.len() + 512
}

/// Seconds a caller is asked to wait when the queue is full: room comes
/// back only as deliveries settle, so hammering sooner cannot help.
pub const FULL_RETRY_AFTER_SECONDS: u16 = 30;

/// The 503 answering a request the queue did not take, with `Retry-After`
/// and a body naming why: full (a flood; nothing was accepted) or
/// unreachable.
fn refusal(err: &QueueError) -> Response<Bytes> {
    let (body, retry_after) = match err {
        QueueError::Full { .. } => (
            format!("the async queue is full ({err}); nothing was accepted, try again later\n"),
            FULL_RETRY_AFTER_SECONDS,
        ),
        _ => (
            format!("the async queue is unavailable ({err}); nothing was accepted, try again\n"),
            1,
        ),
    };
    let mut resp = answer(StatusCode::SERVICE_UNAVAILABLE, body);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    resp
}

impl AsyncIntake {
    /// The 503 refusing a request the memory budget has no room for,
    /// counted as `flint_async_refused_total{reason="memory_budget"}`.
    fn over_budget(&self, target: &FunctionKey, over: &OverBudget) -> Response<Bytes> {
        tracing::debug!(function = %target, wanted = over.wanted, held = over.held, limit = over.limit, "async request refused: memory budget spent");
        self.metrics.refused(target, "memory_budget");
        let mut resp = answer(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{over}; nothing was accepted, try again\n"),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
        resp
    }

    /// Checks callback `url` against the address policy: `Err` holds the
    /// answer refusing the request (400 naming the URL and why; 503 when
    /// the resolver did not answer in time).
    async fn check_callback(
        &self,
        url: &str,
        uri: &http::Uri,
        target: &FunctionKey,
    ) -> Result<(), Response<Bytes>> {
        let Err(err) = check_url(&self.callbacks, uri).await else {
            return Ok(());
        };
        tracing::info!(function = %target, %url, reason = err.metric_label(), error = %err, "callback URL refused");
        let hint = match err {
            CallbackTargetError::Refused { .. } => {
                "; callbacks may not reach loopback, link-local, private or cluster addresses unless the gateway allows them (--callback-allow-cidrs, FLINT_CALLBACK_ALLOW_CIDRS)"
            }
            _ => "",
        };
        if matches!(err, CallbackTargetError::ResolveTimeout { .. }) {
            let mut resp = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{CALLBACK_HEADER} {url}: {err}; nothing was accepted, try again\n"),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
            return Err(resp);
        }
        Err(answer(
            StatusCode::BAD_REQUEST,
            format!("{CALLBACK_HEADER} {url} refused: {err}{hint}\n"),
        ))
    }
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
