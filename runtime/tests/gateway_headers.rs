//! What a request's headers may and may not do, over real sockets on
//! 127.0.0.1 (one table per rule): exactly one Host header, the URI's
//! authority over Host (absolute form, HTTP/2 `:authority`), a trailing
//! dot normalised, forwarding claims believed from trusted proxies only,
//! and `Proxy-Authorization` never forwarded.

mod gateway_support;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use gateway_support::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Headers the app reports back, one `name=value` line each (`-` when
/// absent).
const SHOWN: [&str; 7] = [
    "host",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "forwarded",
    "proxy-authorization",
    "authorization",
];

/// An app that answers its `name`, then the headers it got.
async fn header_app(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = service_fn(move |req: Request<Incoming>| async move {
                let mut text = format!("app={name}\n");
                for header in SHOWN {
                    let value = req.headers().get(header).map(|v| v.to_str().unwrap());
                    text.push_str(&format!("{header}={}\n", value.unwrap_or("-")));
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

/// A gateway routing `hello` and `other` (each its own app), trusting
/// `trusted` as proxies.
async fn two_functions(trusted: &str) -> Running {
    let mut config = config();
    config.clients.trusted_proxies = trusted.parse().unwrap();
    let gw = gateway(config).await;
    let hello = header_app("hello").await;
    let other = header_app("other").await;
    gw.gateway.set_routes(vec![
        single("hello", revision("hello-00001", 0, 30)),
        single("other", revision("other-00001", 0, 30)),
    ]);
    gw.gateway
        .set_endpoints(&key("hello", "hello-00001"), vec![ready("h", hello)]);
    gw.gateway
        .set_endpoints(&key("other", "other-00001"), vec![ready("o", other)]);
    gw
}

/// Sends `head` (a request head, written as given) on its own connection;
/// returns the status line and the body.
async fn raw(addr: SocketAddr, head: &str) -> (String, String) {
    let mut stream = connect(addr).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within(BOUND, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test]
async fn requests_need_exactly_one_host_header() {
    let gw = two_functions("").await;
    // (request head, status, a line of the body)
    let cases = [
        (
            "GET / HTTP/1.1\r\nhost: hello.ns.localhost\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 200 OK",
            "app=hello",
        ),
        (
            "GET / HTTP/1.1\r\nhost: hello.ns.localhost\r\nhost: other.ns.localhost\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
            "the request has 2 Host headers; one is allowed",
        ),
        (
            "GET / HTTP/1.1\r\nhost: hello.ns.localhost\r\nhost: hello.ns.localhost\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
            "the request has 2 Host headers",
        ),
        (
            "GET /function/ns/hello/ HTTP/1.1\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
            "the request has no Host header",
        ),
        // HTTP/1.0 needs none; the path form routes it.
        (
            "GET /function/ns/hello/ HTTP/1.0\r\n\r\n",
            "HTTP/1.0 200 OK",
            "app=hello",
        ),
    ];
    for (head, status, line) in cases {
        let (got, body) = raw(gw.addr, head).await;
        assert_eq!(got, status, "{head:?}: {body}");
        assert!(body.contains(line), "{head:?}: {body}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn the_uri_authority_wins_and_a_trailing_dot_is_dropped() {
    let gw = two_functions("").await;
    // (request head, app that answers, Host it sees)
    let cases = [
        (
            "GET http://hello.ns.localhost/x HTTP/1.1\r\nhost: other.ns.localhost\r\nconnection: close\r\n\r\n",
            "app=hello",
            "host=hello.ns.localhost",
        ),
        (
            "GET / HTTP/1.1\r\nhost: hello.ns.localhost.\r\nconnection: close\r\n\r\n",
            "app=hello",
            "host=hello.ns.localhost",
        ),
        (
            "GET / HTTP/1.1\r\nhost: Other.NS.localhost.:8080\r\nconnection: close\r\n\r\n",
            "app=other",
            "host=Other.NS.localhost:8080",
        ),
        (
            "GET http://other.ns.localhost./ HTTP/1.1\r\nhost: hello.ns.localhost\r\nconnection: close\r\n\r\n",
            "app=other",
            "host=other.ns.localhost",
        ),
    ];
    for (head, app, host) in cases {
        let (status, body) = raw(gw.addr, head).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{head:?}: {body}");
        assert!(body.starts_with(app), "{head:?}: {body}");
        assert!(body.contains(&format!("{host}\n")), "{head:?}: {body}");
    }
    // HTTP/2: `:authority` over a `host` header.
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(connect(gw.addr).await),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://hello.ns.localhost/")
        .header("host", "other.ns.localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = within(BOUND, sender.send_request(req)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = within(BOUND, resp.into_body().collect()).await.to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.starts_with("app=hello\nhost=hello.ns.localhost\n"),
        "{body}"
    );
    gw.shutdown().await;
}

const CLAIMING: &str = "GET /function/ns/hello/x HTTP/1.1\r\nhost: gw.example\r\n\
    x-forwarded-proto: https\r\nx-forwarded-host: public.example\r\n\
    x-forwarded-prefix: /api\r\nforwarded: for=192.0.2.1;proto=https\r\n\
    proxy-authorization: Basic c2VjcmV0\r\nauthorization: Bearer app\r\n\
    connection: close\r\n\r\n";

#[tokio::test]
async fn forwarding_claims_pass_only_from_trusted_proxies() {
    // (trusted proxies, what the app sees)
    let cases = [
        (
            "",
            [
                "x-forwarded-proto=http",
                "x-forwarded-host=gw.example",
                "x-forwarded-prefix=/function/ns/hello",
                "forwarded=-",
                "proxy-authorization=-",
                "authorization=Bearer app",
            ],
        ),
        (
            // The test client connects from 127.0.0.1.
            "10.0.0.0/8, 127.0.0.1",
            [
                "x-forwarded-proto=https",
                "x-forwarded-host=public.example",
                "x-forwarded-prefix=/api/function/ns/hello",
                "forwarded=for=192.0.2.1;proto=https",
                "proxy-authorization=-",
                "authorization=Bearer app",
            ],
        ),
        (
            "10.0.0.0/8",
            [
                "x-forwarded-proto=http",
                "x-forwarded-host=gw.example",
                "x-forwarded-prefix=/function/ns/hello",
                "forwarded=-",
                "proxy-authorization=-",
                "authorization=Bearer app",
            ],
        ),
    ];
    for (trusted, lines) in cases {
        let gw = two_functions(trusted).await;
        let (status, body) = raw(gw.addr, CLAIMING).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        for line in lines {
            assert!(
                body.lines().any(|l| l == line),
                "trusted {trusted:?}: {line} in {body}"
            );
        }
        gw.shutdown().await;
    }
}
