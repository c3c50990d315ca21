//! Upgraded connections (WebSocket and other protocol switches), over real
//! sockets on 127.0.0.1: they hold their replica's `concurrency` slot and
//! their place under the connection cap, close when idle, and graceful
//! shutdown waits for them up to the drain timeout.

mod gateway_support;

use std::time::{Duration, Instant};

use flint_api::Protocol;
use flint_runtime::gateway::GatewayConfig;
use gateway_support::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a tunnel to the test app's echo (`/ws`) through `gw`.
async fn tunnel(gw: &Running) -> TcpStream {
    let mut stream = connect(gw.addr).await;
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nhost: ws.ns.localhost\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    stream
}

/// Sends `text` through the tunnel and checks it comes back.
async fn echo(stream: &mut TcpStream, text: &[u8]) {
    stream.write_all(text).await.unwrap();
    let mut back = vec![0u8; text.len()];
    within(BOUND, stream.read_exact(&mut back)).await;
    assert_eq!(back, text);
}

/// Whether the gateway closed `stream` within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn ws_gateway(config: GatewayConfig, concurrency: u32) -> (Running, App) {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config).await;
    gw.serve_single(
        "ws",
        revision("ws-00001", concurrency, 30),
        vec![ready("p", app.addr)],
    );
    (gw, app)
}

#[tokio::test]
async fn an_upgraded_connection_holds_its_replica_slot() {
    let (gw, _app) = ws_gateway(config(), 1).await;
    let mut stream = tunnel(&gw).await;
    echo(&mut stream, b"hello").await;
    let waiting = gw.spawn_gets(1, "ws.ns.localhost", "/").pop().unwrap();
    let state = gw.gateway.revision(&key("ws", "ws-00001")).unwrap();
    eventually(|| state.waiting() == 1).await;
    assert!(!waiting.is_finished());
    drop(stream);
    let (status, _, body) = within(BOUND, waiting).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    gw.shutdown().await;
}

#[tokio::test]
async fn upgraded_connections_count_against_the_connection_cap() {
    let mut config = config();
    config.clients.max_connections = 1;
    let (gw, _app) = ws_gateway(config, 0).await;
    let mut stream = tunnel(&gw).await;
    echo(&mut stream, b"hello").await;
    let (status, _, body) = get(gw.addr, "ws.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    drop(stream);
    tokio::time::timeout(BOUND, async {
        while get(gw.addr, "ws.ns.localhost", "/").await.0 != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn idle_upgraded_connections_are_closed() {
    let idle = Duration::from_millis(400);
    let mut config = config();
    config.clients.upgrade_idle_timeout = idle;
    let (gw, _app) = ws_gateway(config, 0).await;
    let state = gw.gateway.revision(&key("ws", "ws-00001")).unwrap();
    let mut stream = tunnel(&gw).await;
    // Traffic keeps it open for several idle timeouts.
    let busy = Instant::now();
    while busy.elapsed() < idle * 4 {
        echo(&mut stream, b"still here").await;
        tokio::time::sleep(idle / 4).await;
    }
    assert_eq!(state.in_flight("p"), Some(1));
    // Then silence closes it, and frees its slot.
    let quiet = Instant::now();
    assert!(closed_within(&mut stream, BOUND).await, "still open");
    assert!(
        quiet.elapsed() >= idle / 2,
        "closed after {:?}",
        quiet.elapsed()
    );
    eventually(|| state.in_flight("p") == Some(0)).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_waits_for_upgraded_connections() {
    let (gw, _app) = ws_gateway(config(), 0).await;
    let mut stream = tunnel(&gw).await;
    echo(&mut stream, b"before").await;
    let shutdown = tokio::spawn(gw.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Shutdown began: new connections are refused, the tunnel goes on.
    assert!(
        TcpStream::connect(stream.peer_addr().unwrap())
            .await
            .is_err()
    );
    echo(&mut stream, b"during shutdown").await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the tunnel"
    );
    drop(stream);
    within(BOUND, shutdown).await;
}

#[tokio::test]
async fn shutdown_closes_upgraded_connections_after_the_drain_timeout() {
    let drain = Duration::from_millis(500);
    let mut config = config();
    config.clients.upgrade_drain_timeout = drain;
    let (gw, _app) = ws_gateway(config, 0).await;
    let mut stream = tunnel(&gw).await;
    echo(&mut stream, b"before").await;
    let began = Instant::now();
    let shutdown = tokio::spawn(gw.shutdown());
    // A tunnel that keeps talking is closed once the drain timeout passed.
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            if stream.write_all(b"chatter").await.is_err() {
                return;
            }
            let mut back = [0u8; 7];
            match stream.read_exact(&mut back).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => return,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the tunnel outlived the drain timeout");
    assert!(
        began.elapsed() >= drain / 2,
        "closed after {:?}",
        began.elapsed()
    );
    within(BOUND, shutdown).await;
}
