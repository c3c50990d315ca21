//! 100 MB bodies through a gateway child process, both ways, with the
//! gateway's peak memory checked against the 32 MiB.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::{Child, Command};
use crate::gateway_support::{BOUND, ready, revision, single, within};

const MIB: u64 = 1024 * 1024;
/// Size of each streamed body.
const STREAMED: u64 = 100 * MIB;
/// Chunk size of the test's streams.
const CHUNK: usize = 64 * 1024;
/// Period of the byte pattern bodies carry (a prime, so chunks never align
/// with it).
const PERIOD: usize = 251;
/// The bound on the gateway's memory while bodies stream.
const LIMIT: u64 = 32 * MIB;

type Streamed = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// A pattern buffer long enough to cut any chunk from.
fn pattern() -> Bytes {
    (0..CHUNK + PERIOD).map(|i| (i % PERIOD) as u8).collect()
}

/// `len` pattern bytes starting at stream offset `offset`.
fn pattern_chunk(pattern: &Bytes, offset: u64, len: usize) -> Bytes {
    let start = (offset % PERIOD as u64) as usize;
    pattern.slice(start..start + len)
}

/// A streamed body of `total` pattern bytes, never held whole.
fn pattern_body(total: u64) -> Streamed {
    let pattern = pattern();
    let chunks = futures::stream::unfold(0u64, move |sent| {
        let next = (sent < total).then(|| {
            let len = (total - sent).min(CHUNK as u64) as usize;
            let chunk = pattern_chunk(&pattern, sent, len);
            (Ok(Frame::data(chunk)), sent + len as u64)
        });
        std::future::ready(next)
    });
    StreamBody::new(chunks.boxed())
}

/// Reads `body` to its end, checking every byte is the pattern; returns
/// its length.
async fn check_pattern<B>(body: B) -> u64
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let pattern = pattern();
    let mut body = std::pin::pin!(body);
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rest.len().min(CHUNK);
                assert!(
                    rest[..n] == pattern_chunk(&pattern, seen, n)[..],
                    "corrupt at {seen}"
                );
                seen += n as u64;
                rest = &rest[n..];
            }
        }
    }
    seen
}

/// An app where `POST /sink` checks and counts the body it streams in and
/// `GET /source` streams out 100 MB of pattern.
async fn stream_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = service_fn(|req: Request<Incoming>| async move {
                let body = match req.uri().path() {
                    "/sink" => {
                        let n = check_pattern(req.into_body()).await;
                        Either::Left(Full::new(Bytes::from(n.to_string())))
                    }
                    _ => Either::Right(pattern_body(STREAMED)),
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

/// Uploads then downloads 100 MB through a gateway child process and checks
/// its peak resident memory stays under 32 MiB.
pub async fn hundred_megabytes() {
    let app = stream_app().await;
    let mut gw = Child::start("gateway", &[]).await;
    gw.send(&Command::Routes(vec![single(
        "s",
        revision("s-00001", 0, 120),
    )]))
    .await;
    gw.send(&Command::Endpoints(
        crate::gateway_support::key("s", "s-00001"),
        vec![ready("p", app)],
    ))
    .await;
    let (before, _) = gw.memory();
    let stream = TcpStream::connect(gw.addrs[0]).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let limit = std::time::Duration::from_secs(120);

    let up = Request::post("/sink")
        .header("host", "s.ns.localhost")
        .body(pattern_body(STREAMED))
        .unwrap();
    let resp = within(limit, sender.send_request(up)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let counted = within(BOUND, resp.into_body().collect()).await.to_bytes();
    assert_eq!(counted, STREAMED.to_string());
    let (after_upload, _) = gw.memory();

    // The same client connection carries the download once it is free again.
    within(BOUND, sender.ready()).await;
    let down = Request::get("/source")
        .header("host", "s.ns.localhost")
        .body(pattern_body(0))
        .unwrap();
    let resp = within(BOUND, sender.send_request(down)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let got = tokio::time::timeout(limit, check_pattern(resp.into_body()))
        .await
        .unwrap();
    assert_eq!(got, STREAMED);
    let (peak, _) = gw.memory();
    println!(
        "streaming: gateway peak RSS {} KiB before, {} KiB after the upload, {} KiB after the download",
        before / 1024,
        after_upload / 1024,
        peak / 1024
    );
    assert!(peak < LIMIT, "gateway peak RSS {peak} bytes");
}
