//! The admin endpoints: `/metrics` (Prometheus text format), `/healthz`
//! (the process runs) and `/readyz` (a routing table has been received).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Gateway;

impl Gateway {
    /// The admin router, to be served on its own listener.
    pub fn admin_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
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
    if gateway.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the routing table\n",
        )
    }
}
