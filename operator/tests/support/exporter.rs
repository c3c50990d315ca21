//! A fake gateway `/metrics` endpoint: serves a test's own registry in the
//! Prometheus text format, as the gateway does, on a free loopback port, so
//! that the metrics sources scrape exactly what they would in a cluster.

use std::net::SocketAddr;

use prometheus::{Encoder, Registry, TextEncoder};

/// Serves `registry` at `/metrics` until the test's runtime ends; `refresh`
/// runs before each scrape (to set the gauges the gateway sets then).
pub async fn serve_metrics(
    registry: Registry,
    refresh: impl Fn() + Clone + Send + Sync + 'static,
) -> SocketAddr {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            refresh();
            let mut buf = Vec::new();
            TextEncoder::new()
                .encode(&registry.gather(), &mut buf)
                .unwrap();
            let text = String::from_utf8(buf).unwrap();
            async move { text }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}
