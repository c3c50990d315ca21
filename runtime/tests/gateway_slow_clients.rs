//! Slow clients cannot hold a replica's `concurrency` slot for the
//! revision's whole `timeoutSeconds`, over real sockets on 127.0.0.1: a
//! request body trickled at 1 byte/s, and a client that stops reading its
//! response, each lose their request after the I/O timeout; a body sent one
//! byte a second, well inside the default I/O timeout, loses it once below
//! the minimum body rate; and the request waiting behind them on a
//! `concurrency: 1` replica is served.

mod gateway_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flint_api::Protocol;
use gateway_support::*;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

/// The I/O timeout of these tests' gateways.
const IO_TIMEOUT: Duration = Duration::from_millis(500);
/// The revisions' timeout: what a slow client could hold a slot for
/// without the I/O timeout.
const TIMEOUT_SECONDS: u32 = 60;

async fn slow_gateway() -> Running {
    let mut config = config();
    config.clients.io_timeout = IO_TIMEOUT;
    gateway(config).await
}

/// Waits for a GET of `/` at `host`, which must wait for the only slot,
/// and checks it is served well before `TIMEOUT_SECONDS`.
async fn served_behind(addr: SocketAddr, host: &str, expect: &str) {
    let started = Instant::now();
    let (status, _, body) = get(addr, host, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with(expect), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(u64::from(TIMEOUT_SECONDS) / 4),
        "waited {:?}",
        started.elapsed()
    );
}

/// Starts a POST to `host` whose 100-byte body comes one byte a second,
/// once `app` has the request (and, at `concurrency: 1`, the only slot);
/// returns the client's reading half and the trickling task.
async fn trickle(
    addr: SocketAddr,
    host: &str,
    app: &App,
) -> (tokio::net::tcp::OwnedReadHalf, tokio::task::JoinHandle<()>) {
    let (reader, mut writer) = connect(addr).await.into_split();
    let head = format!("POST /echo HTTP/1.1\r\nhost: {host}\r\ncontent-length: 100\r\n\r\nx");
    writer.write_all(head.as_bytes()).await.unwrap();
    eventually(|| app.stats.in_flight.load(Ordering::SeqCst) == 1).await;
    let task = tokio::spawn(async move {
        for _ in 0..TIMEOUT_SECONDS {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(b"x").await.is_err() {
                break;
            }
        }
    });
    (reader, task)
}

#[tokio::test]
async fn a_body_trickled_at_one_byte_a_second_loses_its_slot() {
    for protocol in [Protocol::Http1, Protocol::H2c] {
        let app = app("app", protocol).await;
        let gw = slow_gateway().await;
        let mut rev = revision("slow-00001", 1, TIMEOUT_SECONDS);
        rev.protocol = protocol;
        gw.serve_single("slow", rev, vec![ready("p", app.addr)]);
        let (mut reader, trickle) = trickle(gw.addr, "slow.ns.localhost", &app).await;
        served_behind(gw.addr, "slow.ns.localhost", "app GET /").await;
        let head = read_head(&mut reader).await;
        assert!(head.starts_with("http/1.1 408 "), "{protocol:?}: {head}");
        trickle.abort();
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn a_body_below_the_minimum_rate_loses_its_slot_with_the_default_settings() {
    // Defaults: a 30 s I/O timeout (one byte a second never trips it) and
    // 240 bytes/s after 5 s of grace.
    let defaults = config().clients;
    let min = defaults
        .min_body_rate
        .expect("a minimum body rate by default");
    assert!(defaults.io_timeout >= Duration::from_secs(10));
    for protocol in [Protocol::Http1, Protocol::H2c] {
        let app = app("app", protocol).await;
        let gw = gateway(config()).await;
        let mut rev = revision("trickle-00001", 1, TIMEOUT_SECONDS);
        rev.protocol = protocol;
        gw.serve_single("trickle", rev, vec![ready("p", app.addr)]);
        let (mut reader, trickle) = trickle(gw.addr, "trickle.ns.localhost", &app).await;
        let started = Instant::now();
        let (status, _, body) = get(gw.addr, "trickle.ns.localhost", "/").await;
        let waited = started.elapsed();
        assert_eq!(status, StatusCode::OK, "{protocol:?}: {body}");
        // Served once the grace was spent, long before the I/O timeout.
        assert!(
            waited >= min.grace - Duration::from_secs(1) && waited < defaults.io_timeout / 2,
            "{protocol:?}: waited {waited:?}"
        );
        let head = read_head(&mut reader).await;
        assert!(head.starts_with("http/1.1 408 "), "{protocol:?}: {head}");
        trickle.abort();
        gw.shutdown().await;
    }
}

/// 64 KiB of response, again and again.
struct Endless;

static CHUNK: [u8; 65536] = [b'x'; 65536];

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

/// An app answering `/big` with an endless body and anything else with
/// `ok`.
async fn endless_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = service_fn(|req: Request<Incoming>| async move {
                let body = if req.uri().path() == "/big" {
                    http_body_util::Either::Left(Endless)
                } else {
                    http_body_util::Either::Right(http_body_util::Full::new(Bytes::from("ok")))
                };
                Ok::<_, Infallible>(Response::new(body))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_slot() {
    let app = endless_app().await;
    let gw = slow_gateway().await;
    let key = gw.serve_single(
        "big",
        revision("big-00001", 1, TIMEOUT_SECONDS),
        vec![ready("p", app)],
    );
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(gw.addr).await.unwrap();
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nhost: big.ns.localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stalled).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    let state = gw.gateway.revision(&key).unwrap();
    assert_eq!(state.in_flight("p"), Some(1));
    // The client reads nothing more; the request behind it is served once
    // the gateway's writes have stalled for the I/O timeout.
    served_behind(gw.addr, "big.ns.localhost", "ok").await;
    // And the stalled client's connection was closed.
    let mut buf = vec![0u8; 1 << 20];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled connection is still open");
    gw.shutdown().await;
}
