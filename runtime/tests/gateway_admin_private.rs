//! The admin endpoints live on the admin port only: on the data port,
//! `/metrics`, the health checks and the control routes (`/v1/drain`,
//! `/v1/release`, `/v1/capacity`) are paths like any other — a request for
//! them with no Function's Host is refused as unknown, and with a
//! Function's Host it reaches the Function. Real sockets on 127.0.0.1.

mod gateway_support;

use flint_api::Protocol;
use gateway_support::*;
use http::StatusCode;
use tokio::io::AsyncWriteExt;

const ADMIN_PATHS: [&str; 6] = [
    "/metrics",
    "/healthz",
    "/readyz",
    "/v1/drain",
    "/v1/release",
    "/v1/capacity",
];

/// POSTs an empty body to `path` with `host` on the data port; returns the
/// answer's head, lower-cased.
async fn post(addr: std::net::SocketAddr, host: &str, path: &str) -> String {
    let mut conn = connect(addr).await;
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    read_head(&mut conn).await
}

#[tokio::test]
async fn the_data_port_serves_no_admin_endpoint() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config()).await;
    gw.serve_single(
        "hello",
        revision("hello-00001", 0, 30),
        vec![ready("p", app.addr)],
    );
    for path in ADMIN_PATHS {
        // No Function's Host: refused as unknown, never answered as admin.
        let (status, _, body) = get(gw.addr, "nothing.ns.localhost", path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}: {body}");
        assert!(body.contains("nothing"), "GET {path}: {body}");
        let head = post(gw.addr, "nothing.ns.localhost", path).await;
        assert!(head.starts_with("http/1.1 404 "), "POST {path}: {head}");
        // A Function's Host: the Function gets the path.
        let (status, _, body) = get(gw.addr, "hello.ns.localhost", path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        assert!(
            body.starts_with(&format!("app GET {path} ")),
            "GET {path}: {body}"
        );
        let head = post(gw.addr, "hello.ns.localhost", path).await;
        assert!(head.starts_with("http/1.1 200 "), "POST {path}: {head}");
    }
    gw.shutdown().await;
}
