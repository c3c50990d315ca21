//! The intake's answers: plain-text bodies saying what happened, and for
//! the refusals that trying again can cure (a full or unreachable queue, a
//! spent memory budget, a resolver that did not answer) a `Retry-After`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::AsyncIntake;
use crate::budget::OverBudget;
use crate::events::connect::{CallbackTargetError, check_url};
use crate::events::invocation::{CALLBACK_HEADER, FunctionKey};
use crate::events::queue::QueueError;

/// A plain-text answer with `status` and `body`.
pub(super) fn answer(status: StatusCode, body: String) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Seconds a caller is asked to wait when the queue is full: room comes
/// back only as deliveries settle, so hammering sooner cannot help.
pub const FULL_RETRY_AFTER_SECONDS: u16 = 30;

/// The 503 answering a request the queue did not take, with `Retry-After`
/// and a body naming why: full (a flood; nothing was accepted) or
/// unreachable.
pub(super) fn refusal(err: &QueueError) -> Response<Bytes> {
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
    pub(super) fn over_budget(&self, target: &FunctionKey, over: &OverBudget) -> Response<Bytes> {
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
    pub(super) async fn check_callback(
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
