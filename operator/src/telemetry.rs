//! The operator's admin endpoints: `/metrics` (Prometheus text format),
//! `/healthz` (the process is alive) and `/readyz` (it has reached the API
//! server and knows whether it leads).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

#[derive(Clone)]
struct Admin {
    registry: Registry,
    ready: Arc<AtomicBool>,
}

/// The admin router over `registry`; `/readyz` answers 200 once `ready` is set.
pub fn admin_router(registry: Registry, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Admin { registry, ready })
}

/// Serves the admin router on `listener` until `shutdown` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    registry: Registry,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, admin_router(registry, ready))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(admin): State<Admin>) -> (StatusCode, String) {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&admin.registry.gather(), &mut buf) {
        Ok(()) => (StatusCode::OK, String::from_utf8_lossy(&buf).into_owned()),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        ),
    }
}

async fn readyz(State(admin): State<Admin>) -> (StatusCode, &'static str) {
    if admin.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the API server has not been reached yet\n",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let registry = Registry::new();
        let counter = prometheus::IntCounter::new("flint_test_total", "test").unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        counter.inc();
        let ready = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_admin(listener, registry, ready.clone(), async {
            let _ = stopped.await;
        }));
        let body = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
            assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
            ready.store(true, Ordering::Release);
            assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
            get(addr, "/metrics").await
        })
        .await
        .unwrap();
        assert!(body.contains("\nflint_test_total 1\n"), "{body}");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
