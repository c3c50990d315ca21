//! Taking a request the intake wants: its id and callback URL checked, its
//! body read within the size limit and the memory budget, only the headers
//! the Function may see kept, and the invocation stored before the 202.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};

use super::AsyncIntake;
use super::answer::{answer, refusal};
use super::route::Routing;
use crate::budget::{Use, head_bytes};
use crate::events::body::{self, BodyError};
use crate::events::invocation::{
    ATTEMPT_HEADER, CALLBACK_HEADER, INVOCATION_ID_HEADER, Invocation, new_id, now_ms, valid_id,
};
use crate::events::queue::Enqueued;
use crate::gateway::host::request_host;

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

impl AsyncIntake {
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
