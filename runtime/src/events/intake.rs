//! The intake: a request with `Prefer: respond-async`, or one sent to
//! `/async-function/<ns>/<fn>/…`, is stored durably and answered `202
//! Accepted` with its invocation id, instead of being proxied. The gateway
//! asks [`AsyncIntake::wants`] on each request (two cheap header/path
//! checks) and hands over the ones it wants.

use std::sync::Arc;

use bytes::Bytes;
use flint_api::names::FUNCTION_PATH_PREFIX;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use super::invocation::{
    ATTEMPT_HEADER, CALLBACK_HEADER, FunctionId, INVOCATION_ID_HEADER, Invocation, new_id, now_ms,
    valid_id,
};
use super::metrics::EventMetrics;
use super::queue::{Enqueued, Queue};
use super::targets::Targets;
use crate::gateway::host::{FunctionPath, function_path, strip_port};

/// Path prefix of asynchronous invocations by path.
pub const ASYNC_PATH_PREFIX: &str = "/async-function/";
/// Default largest request body accepted for asynchronous delivery (NATS's
/// default message limit is 1 MiB, which must also hold the request head).
pub const DEFAULT_MAX_BODY: usize = 512 * 1024;

/// Headers not stored with an invocation: hop-by-hop ones, the ones the
/// delivery sets itself, and the ones only the intake reads.
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

/// Accepts asynchronous invocations onto a queue.
#[derive(Clone)]
pub struct AsyncIntake {
    queue: Arc<dyn Queue>,
    targets: Targets,
    metrics: EventMetrics,
    domain: String,
    max_body: usize,
}

impl std::fmt::Debug for AsyncIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncIntake")
            .field("domain", &self.domain)
            .field("max_body", &self.max_body)
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
struct Addressed {
    target: FunctionId,
    uri: String,
    host: Option<String>,
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
    /// Function hosts under `domain`.
    pub fn new(
        queue: Arc<dyn Queue>,
        targets: Targets,
        metrics: EventMetrics,
        domain: &str,
    ) -> Self {
        Self {
            queue,
            targets,
            metrics,
            domain: domain.to_ascii_lowercase(),
            max_body: DEFAULT_MAX_BODY,
        }
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

    /// The Function a request addresses and the URI to deliver it with.
    fn address<B>(&self, req: &Request<B>) -> Option<Addressed> {
        let path = req.uri().path();
        let query = req.uri().query().map_or(String::new(), |q| format!("?{q}"));
        let by_path = |p: FunctionPath<'_>| Addressed {
            target: FunctionId::new(p.namespace, p.function),
            uri: format!(
                "{}{}{query}",
                p.prefix,
                if p.rest == "/" && !path.ends_with('/') {
                    ""
                } else {
                    p.rest
                }
            ),
            host: None,
        };
        if let Some(rest) = path.strip_prefix(ASYNC_PATH_PREFIX) {
            let rewritten = format!("{FUNCTION_PATH_PREFIX}{rest}");
            return function_path(&rewritten).map(by_path);
        }
        if let Some(p) = function_path(path) {
            return Some(by_path(p));
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())?;
        let bare = strip_port(host).to_ascii_lowercase();
        let labels = bare.strip_suffix(&self.domain)?.strip_suffix('.')?;
        let (name, namespace) = labels.split_once('.')?;
        // `<fn>` or `<tag>-<fn>`: the Function is the longest known suffix.
        let function = std::iter::once(name)
            .chain(name.match_indices('-').map(|(i, _)| &name[i + 1..]))
            .find(|f| self.targets.get(&FunctionId::new(namespace, *f)).is_some())?;
        Some(Addressed {
            target: FunctionId::new(namespace, function),
            uri: req
                .uri()
                .path_and_query()
                .map_or("/".into(), |p| p.to_string()),
            host: Some(host.to_owned()),
        })
    }

    /// Stores `req` and answers 202 with its id; or 404 (unknown Function),
    /// 400 (bad id or callback URL), 413 (body too large), 503 (the queue is
    /// unreachable: nothing was accepted, try again).
    pub async fn accept<B>(&self, req: Request<B>) -> Response<Bytes>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(addressed) = self.address(&req) else {
            return answer(
                StatusCode::NOT_FOUND,
                format!("no function for async request to {}\n", req.uri().path()),
            );
        };
        if self.targets.get(&addressed.target).is_none() {
            return answer(
                StatusCode::NOT_FOUND,
                format!("function {} does not exist\n", addressed.target),
            );
        }
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
            Some(Ok(url))
                if url
                    .parse::<http::Uri>()
                    .is_ok_and(|u| u.scheme_str() == Some("http") && u.host().is_some()) =>
            {
                Some(url.to_owned())
            }
            Some(_) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    format!("{CALLBACK_HEADER} must be an absolute http:// URL\n"),
                );
            }
        };
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => {
                let too_large = err
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                return if too_large {
                    answer(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "async request bodies are limited to {} bytes\n",
                            self.max_body
                        ),
                    )
                } else {
                    answer(
                        StatusCode::BAD_REQUEST,
                        format!("reading the request body failed: {err}\n"),
                    )
                };
            }
        };
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| !DROPPED.contains(&name.as_str()))
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
        match self.queue.enqueue(invocation).await {
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
                tracing::warn!(function = %addressed.target, error = %err, "async request not accepted");
                let mut resp = answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the async queue is unavailable ({err}); nothing was accepted, try again\n"
                    ),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1));
                resp
            }
        }
    }
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
