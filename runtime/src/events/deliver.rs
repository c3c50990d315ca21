//! One delivery attempt: the invocation sent as a plain HTTP request to the
//! gateway's own listener, so it takes the normal data path (routing,
//! traffic split, activation from zero, per-replica `concurrency`).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use flint_api::drain::ControlToken;
use flint_api::names::HEADER_INTERNAL;

use super::invocation::{ATTEMPT_HEADER, INVOCATION_ID_HEADER, Invocation};
use super::policy::Attempt;

/// Most response-body bytes kept for the callback.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// The HTTP client of the worker and the callbacks.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled HTTP/1 client.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub attempt: Attempt,
    /// Response headers (empty without a response).
    pub headers: HeaderMap,
    /// Response body, at most [`MAX_RESULT_BYTES`].
    pub body: Bytes,
    /// Why it failed, when it did without a status.
    pub error: Option<String>,
}

impl Outcome {
    fn failed(attempt: Attempt, error: String) -> Self {
        Self {
            attempt,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            error: Some(error),
        }
    }

    /// The outcome in a few words, for dead-letter reasons and logs.
    pub fn describe(&self) -> String {
        match (&self.attempt, &self.error) {
            (Attempt::Status(code), _) => format!("status {code}"),
            (Attempt::TimedOut, Some(e)) => e.clone(),
            (Attempt::TimedOut, None) => "timed out".to_owned(),
            (Attempt::ConnectionFailed, Some(e)) => format!("connection failed: {e}"),
            (Attempt::ConnectionFailed, None) => "connection failed".to_owned(),
        }
    }
}

/// Where deliveries go: the gateway's own listener, and the token that
/// lets them through Functions' gates (visibility, auth), which each
/// invocation passed when it was accepted.
#[derive(Clone)]
pub struct Destination {
    /// The gateway's URL (`http://127.0.0.1:8080`).
    pub url: String,
    /// Sent as [`HEADER_INTERNAL`]; without one, deliveries to a
    /// cluster-local Function or one with `spec.auth` are refused.
    pub token: Option<ControlToken>,
}

impl std::fmt::Debug for Destination {
    /// The URL only: the token never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

fn build(
    gateway: &Destination,
    inv: &Invocation,
    attempt: u32,
) -> Result<Request<Full<Bytes>>, http::Error> {
    let mut req = Request::builder()
        .method(Method::from_bytes(inv.method.as_bytes())?)
        .uri(format!("{}{}", gateway.url, inv.uri));
    if let Some(headers) = req.headers_mut() {
        for (name, value) in &inv.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        if let Some(host) = &inv.host
            && let Ok(host) = HeaderValue::from_str(host)
        {
            headers.insert(header::HOST, host);
        }
        if let Ok(id) = HeaderValue::from_str(&inv.id) {
            headers.insert(INVOCATION_ID_HEADER, id);
        }
        headers.insert(ATTEMPT_HEADER, HeaderValue::from(attempt));
        // After the stored headers: a stored one of this name never counts.
        headers.remove(HEADER_INTERNAL);
        if let Some(token) = &gateway.token
            && let Ok(value) = HeaderValue::from_str(token.expose())
        {
            headers.insert(HEADER_INTERNAL, value);
        }
    }
    req.body(Full::new(inv.body.clone()))
}

/// Sends attempt `attempt` of `inv` to the gateway at `gateway`,
/// waiting at most `timeout` for the answer.
pub async fn send(
    client: &HttpClient,
    gateway: &Destination,
    inv: &Invocation,
    attempt: u32,
    timeout: Duration,
) -> Outcome {
    let req = match build(gateway, inv, attempt) {
        Ok(req) => req,
        Err(err) => return Outcome::failed(Attempt::Status(400), err.to_string()),
    };
    let exchange = async {
        let resp = client.request(req).await?;
        let (parts, mut body) = resp.into_parts();
        let mut kept = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map(|f| f.into_data()) else {
                break;
            };
            if let Ok(data) = data {
                let room = MAX_RESULT_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        Ok::<_, hyper_util::client::legacy::Error>((parts, kept.freeze()))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((parts, body))) => Outcome {
            attempt: Attempt::Status(parts.status.as_u16()),
            headers: parts.headers,
            body,
            error: None,
        },
        Ok(Err(err)) => Outcome::failed(Attempt::ConnectionFailed, error_chain(&err)),
        Err(_) => Outcome::failed(
            Attempt::TimedOut,
            format!("timed out: no answer within {timeout:?}"),
        ),
    }
}

/// An error with its sources, on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
