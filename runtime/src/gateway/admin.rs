//! The admin endpoints: `/metrics` (Prometheus text format), `/healthz`
//! (the process runs), `/readyz` (a routing table has been received), and
//! for the operator only (control token), `/v1/drain` and `/v1/release`:
//! replicas about to be removed leave rotation and are reported drained
//! once nothing runs on them; and for the other gateways (control token),
//! `/v1/capacity`: asks for free slots on replicas ([`super::capacity`]).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flint_api::backend::RevisionKey;
use flint_api::drain::{DRAIN_PATH, DrainReply, DrainRequest, HOLD_GRACE_SECONDS, RELEASE_PATH};

use super::Gateway;

/// How often a drain looks at the in-flight count of the replicas it waits for.
const DRAIN_POLL: Duration = Duration::from_millis(50);

impl Gateway {
    /// The admin router, to be served on its own listener.
    pub fn admin_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .merge(
                Router::new()
                    .route(DRAIN_PATH, post(drain))
                    .route(RELEASE_PATH, post(release))
                    .route(
                        super::capacity::wire::CAPACITY_PATH,
                        post(super::capacity::lend::capacity).layer(
                            axum::extract::DefaultBodyLimit::max(
                                super::capacity::wire::MAX_BODY_BYTES,
                            ),
                        ),
                    )
                    .route_layer(axum::middleware::from_fn_with_state(
                        self.clone(),
                        control_only,
                    )),
            )
            .with_state(self.clone())
    }
}

async fn metrics(State(gateway): State<Gateway>) -> impl IntoResponse {
    match gateway.metrics_text() {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            text,
        ),
        Err(err) => {
            tracing::error!(error = %err, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{err}\n"),
            )
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(gateway): State<Gateway>) -> (StatusCode, &'static str) {
    if !gateway.routes_known() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the routing table\n",
        )
    } else if !gateway.peers_known() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the gateway set\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The refusal of a control request without the operator's token: 403 when
/// this gateway has none configured, 401 naming what is wrong when the
/// request lacks it or carries another; `None` when the request may go ahead.
fn refusal(gateway: &Gateway, headers: &HeaderMap) -> Option<Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let refusal = flint_api::drain::authorize(gateway.control_token(), presented).err()?;
    tracing::warn!(refusal = refusal.label(), "control request refused");
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut refused = plain(status, format!("{refusal}\n"));
    if status == StatusCode::UNAUTHORIZED {
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(flint_api::drain::WWW_AUTHENTICATE),
        );
    }
    Some(refused)
}

/// Lets a control request through only with the operator's token.
async fn control_only(
    State(gateway): State<Gateway>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match refusal(&gateway, request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

fn key_of(req: &DrainRequest) -> RevisionKey {
    RevisionKey::new(
        req.namespace.clone(),
        req.function.clone(),
        req.revision.clone(),
    )
}

/// Holds the pods out of rotation (until the drain's timeout plus
/// [`HOLD_GRACE_SECONDS`], or a release) and answers once none of them has a
/// request in flight here, or when the timeout passes, with what is left.
async fn drain(State(gateway): State<Gateway>, Json(req): Json<DrainRequest>) -> Response {
    let key = key_of(&req);
    let Some(state) = gateway.revision(&key) else {
        // Never routed here: nothing in flight, nothing to hold.
        return Json(DrainReply { in_flight: 0 }).into_response();
    };
    let now = Instant::now();
    let timeout = Duration::from_secs(u64::from(req.timeout_seconds));
    let until = now + timeout + Duration::from_secs(u64::from(HOLD_GRACE_SECONDS));
    state.hold(&req.pods, until, now);
    tracing::info!(revision = %key, pods = ?req.pods, "draining replicas before a scale-down");
    // The hold lapses by itself if the scale-down never comes.
    let lapse = std::sync::Arc::clone(&state);
    tokio::spawn(async move {
        tokio::time::sleep_until(until.into()).await;
        lapse.release(&[], Instant::now());
    });
    let deadline = now + timeout;
    loop {
        let in_flight = state.in_flight_on(&req.pods);
        if in_flight == 0 || Instant::now() >= deadline {
            tracing::info!(revision = %key, in_flight, waited_ms = now.elapsed().as_millis() as u64, "drain answered");
            return Json(DrainReply { in_flight }).into_response();
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Puts held pods back into rotation: the scale-down was called off.
async fn release(State(gateway): State<Gateway>, Json(req): Json<DrainRequest>) -> Response {
    if let Some(state) = gateway.revision(&key_of(&req)) {
        state.release(&req.pods, Instant::now());
        tracing::info!(revision = %key_of(&req), pods = ?req.pods, "drain called off; replicas back in rotation");
    }
    StatusCode::NO_CONTENT.into_response()
}
