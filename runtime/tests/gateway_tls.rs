//! TLS termination at the gateway, on real sockets of 127.0.0.1: the
//! certificate chosen by SNI (checked with `openssl s_client`), a new
//! certificate set applying to new handshakes while open connections go
//! on, HTTP/2 and HTTP/1.1 by ALPN (checked with `curl`), the first-byte
//! deadline and the connection cap over TLS, upgrades over TLS,
//! `X-Forwarded-Proto`, and the listeners `flint gateway`'s flags name.

mod gateway_support;
mod tls_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flint_api::Protocol;
use flint_runtime::gateway::tls::CertSet;
use flint_runtime::gateway::{Gateway, GatewayConfig, ListenerKind};
use gateway_support::*;
use http::{StatusCode, Version};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tls_support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HOST: &str = "hello.ns.localhost";
const PUBLIC_TLS: (ListenerKind, bool) = (ListenerKind::Public, true);
const PUBLIC: (ListenerKind, bool) = (ListenerKind::Public, false);

/// A gateway with `config` routing `hello` to `app`.
fn routed(config: GatewayConfig, app: SocketAddr) -> Gateway {
    let gateway = Gateway::new(config, Arc::new(Pokes::default())).unwrap();
    gateway.set_routes(vec![single("hello", revision("hello-00001", 10, 10))]);
    gateway.set_endpoints(&key("hello", "hello-00001"), vec![ready("a", app)]);
    gateway
}

/// A certificate set of `host` => `cert` entries and an optional default.
fn set(entries: &[(&str, &Cert)], default: Option<&Cert>) -> CertSet {
    let mut set = CertSet::new();
    for (host, cert) in entries {
        set.insert(host, Arc::clone(&cert.key)).unwrap();
    }
    if let Some(cert) = default {
        set.default(Arc::clone(&cert.key));
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_chosen_by_sni() {
    let app = app("a", Protocol::Http1).await;
    let gateway = routed(config(), app.addr);
    let (exact, wildcard, fallback) = (
        Cert::new(&["api.example.test"]),
        Cert::new(&["*.apps.example.test"]),
        Cert::new(&["default.example.test"]),
    );
    let entries = [
        ("api.example.test", &exact),
        ("*.apps.example.test", &wildcard),
    ];
    gateway.certs().set(set(&entries, Some(&fallback)));
    let served = serve(&gateway, &[PUBLIC_TLS]);
    let addr = served.addrs[0];
    for (name, want, subject) in [
        ("api.example.test", &exact, "CN = api.example.test"),
        ("x.apps.example.test", &wildcard, "CN = *.apps.example.test"),
        ("apps.example.test", &fallback, "CN = default.example.test"),
        (
            "a.b.apps.example.test",
            &fallback,
            "CN = default.example.test",
        ),
        ("other.test", &fallback, "CN = default.example.test"),
    ] {
        let (ok, out) = s_client(addr, name).await;
        assert!(ok, "{name}: {out}");
        assert_eq!(first_pem(&out), Some(want.pem.trim()), "{name}: {out}");
        assert!(out.contains(subject), "{name}: {out}");
    }
    // Without a default, an unknown name fails the handshake (an alert,
    // no certificate).
    gateway.certs().set(set(&entries, None));
    let (ok, out) = s_client(addr, "other.test").await;
    assert!(!ok, "{out}");
    assert!(first_pem(&out).is_none(), "{out}");
    assert!(out.contains("alert"), "{out}");
    // TLS 1.2 and 1.3 both.
    for version in ["-tls1_2", "-tls1_3"] {
        let args = [
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "api.example.test",
            version,
        ];
        let (ok, out) = run("openssl", &args.map(str::to_owned)).await;
        assert!(ok, "{version}: {out}");
        assert_eq!(first_pem(&out), Some(exact.pem.trim()), "{version}: {out}");
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_set_serves_new_handshakes_and_open_connections_go_on() {
    let app = app("a", Protocol::Http1).await;
    let gateway = routed(config(), app.addr);
    let (old, new) = (Cert::new(&[HOST]), Cert::new(&[HOST]));
    gateway.certs().set(set(&[(HOST, &old)], None));
    let served = serve(&gateway, &[PUBLIC_TLS]);
    let addr = served.addrs[0];

    let tls = tls_connect(addr, HOST, &[&old, &new], &[b"http/1.1"]).await;
    assert_eq!(presented(&tls), old.der());
    let mut open = handshake(tls, false).await;
    let (status, _, body) = open.get(HOST, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    gateway.certs().set(set(&[(HOST, &new)], None));
    let (status, _, body) = open.get(HOST, "/again").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("a GET /again"), "{body}");
    let fresh = tls_connect(addr, HOST, &[&old, &new], &[b"http/1.1"]).await;
    assert_eq!(presented(&fresh), new.der());
    let (status, _, _) = handshake(fresh, false).await.get(HOST, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.stats.served.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_picks_http2_or_http1_and_a_backend_answers() {
    let app = app("a", Protocol::Http1).await;
    let gateway = routed(config(), app.addr);
    let cert = Cert::new(&[HOST]);
    gateway.certs().set(set(&[(HOST, &cert)], None));
    let served = serve(&gateway, &[PUBLIC_TLS]);
    let port = served.addrs[0].port();
    let cacert = pem_file(&cert.pem);
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let args = [
            "-sS",
            flag,
            "--cacert",
            &cacert.to_string_lossy(),
            "--resolve",
            &format!("{HOST}:{port}:127.0.0.1"),
            "-w",
            " proto=%{http_version} status=%{http_code}",
            &format!("https://{HOST}:{port}/curl"),
        ];
        let (ok, out) = run("curl", &args.map(str::to_owned)).await;
        assert!(ok, "{flag}: {out}");
        assert!(out.starts_with("a GET /curl"), "{flag}: {out}");
        assert!(
            out.ends_with(&format!(" proto={want} status=200")),
            "{flag}: {out}"
        );
    }
    let _ = std::fs::remove_file(cacert);
    // A rustls client: h2 by ALPN is served as HTTP/2, http/1.1 as HTTP/1.1.
    for (alpn, want) in [
        (b"h2".as_slice(), Version::HTTP_2),
        (b"http/1.1", Version::HTTP_11),
    ] {
        let tls = tls_connect(served.addrs[0], HOST, &[&cert], &[alpn]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let mut sender = handshake(tls, want == Version::HTTP_2).await;
        let (status, version, body) = sender.get(HOST, "/rustls").await;
        assert_eq!((status, version), (StatusCode::OK, want), "{body}");
        assert!(body.starts_with("a GET /rustls"), "{body}");
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_stalled_tls_client_is_dropped_at_the_first_byte_deadline() {
    let app = app("a", Protocol::Http1).await;
    let mut config = config();
    config.clients.first_byte_timeout = Duration::from_millis(300);
    let gateway = routed(config, app.addr);
    let cert = Cert::new(&[HOST]);
    gateway.certs().set(set(&[], Some(&cert)));
    let served = serve(&gateway, &[PUBLIC_TLS]);
    let addr = served.addrs[0];
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // The first bytes of a ClientHello, then nothing.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert!(closed_within(&mut stalled, Duration::from_secs(5)).await);
    assert!(started.elapsed() >= Duration::from_millis(200));
    // A client that does its handshake in time is served.
    let tls = tls_connect(addr, HOST, &[&cert], &[]).await;
    let (status, _, _) = handshake(tls, false).await.get(HOST, "/").await;
    assert_eq!(status, StatusCode::OK);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_count_against_the_one_connection_cap() {
    let app = app("a", Protocol::Http1).await;
    let mut config = config();
    config.clients.max_connections = 1;
    let gateway = routed(config, app.addr);
    let cert = Cert::new(&[HOST]);
    gateway.certs().set(set(&[], Some(&cert)));
    let served = serve(&gateway, &[PUBLIC, PUBLIC_TLS]);
    // A plain connection holds the only place.
    let plain = connect(served.addrs[0]).await;
    let mut holder = handshake(plain, false).await;
    assert_eq!(holder.get(HOST, "/").await.0, StatusCode::OK);
    // A TLS connection is then refused, after its handshake, with 503.
    let tls = tls_connect(served.addrs[1], HOST, &[&cert], &[]).await;
    let (status, _, body) = handshake(tls, false).await.get(HOST, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("connections"), "{body}");
    drop(holder);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_over_tls_becomes_a_tunnel() {
    use tokio::io::AsyncReadExt;
    let app = app("a", Protocol::Http1).await;
    let gateway = routed(config(), app.addr);
    let cert = Cert::new(&[HOST]);
    gateway.certs().set(set(&[], Some(&cert)));
    let served = serve(&gateway, &[PUBLIC_TLS]);
    let mut tls = tls_connect(served.addrs[0], HOST, &[&cert], &[b"http/1.1"]).await;
    let head =
        format!("GET /ws HTTP/1.1\r\nhost: {HOST}\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    for text in [b"hello".as_slice(), b"over tls"] {
        tls.write_all(text).await.unwrap();
        let mut back = vec![0u8; text.len()];
        within(BOUND, tls.read_exact(&mut back)).await;
        assert_eq!(back, text);
    }
    drop(tls);
    served.stop().await;
}

/// An app answering with the `X-Forwarded-Proto` it was sent.
async fn proto_app() -> SocketAddr {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| {
                    let proto = req.headers().get("x-forwarded-proto").cloned();
                    let text = proto.map_or("-".to_owned(), |p| p.to_str().unwrap().to_owned());
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text)))) }
                },
            );
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_is_told_https_for_tls_connections() {
    let gateway = routed(config(), proto_app().await);
    let cert = Cert::new(&[HOST]);
    gateway.certs().set(set(&[], Some(&cert)));
    let served = serve(&gateway, &[PUBLIC, PUBLIC_TLS]);
    let plain = connect(served.addrs[0]).await;
    assert_eq!(handshake(plain, false).await.get(HOST, "/").await.2, "http");
    let tls = tls_connect(served.addrs[1], HOST, &[&cert], &[b"h2"]).await;
    assert_eq!(handshake(tls, true).await.get(HOST, "/").await.2, "https");
    served.stop().await;
}

/// A port of 127.0.0.1 free a moment ago.
fn free_port() -> SocketAddr {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_binds_the_internal_and_tls_listeners_the_configuration_names() {
    let app = app("a", Protocol::Http1).await;
    let mut config = config();
    let (internal, tls) = (free_port(), free_port());
    config.internal_listen = Some(internal);
    config.tls_listen = Some(tls);
    let gateway = routed(config, app.addr);
    let cert = Cert::new(&[HOST]);
    gateway.certs().set(set(&[], Some(&cert)));
    let public = flint_runtime::gateway::listener(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let public_addr = public.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let g = gateway.clone();
    let done = tokio::spawn(async move {
        g.serve_with_workers(public, 2, async {
            let _ = stopped.await;
        })
        .await
    });
    for addr in [public_addr, internal] {
        let (status, _, body) = get(addr, HOST, "/").await;
        assert_eq!(status, StatusCode::OK, "{addr}: {body}");
    }
    let tls = tls_connect(tls, HOST, &[&cert], &[]).await;
    assert_eq!(
        handshake(tls, false).await.get(HOST, "/").await.0,
        StatusCode::OK
    );
    let _ = stop.send(());
    within(BOUND, async { done.await.unwrap() }).await;
}

#[tokio::test]
async fn a_configured_listener_that_cannot_be_bound_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = config();
    config.tls_listen = Some(taken.local_addr().unwrap());
    let gateway = Gateway::new(config, Arc::new(Pokes::default())).unwrap();
    let public = flint_runtime::gateway::listener(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let err = gateway
        .serve_with_workers(public, 1, std::future::pending())
        .await
        .unwrap_err();
    let addr = taken.local_addr().unwrap().to_string();
    assert!(err.to_string().contains(&addr), "{err}");
}
