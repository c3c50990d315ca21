//! The server end to end on loopback: every listener's connections reach
//! the request path tagged with their listener and TLS, and a Function
//! answers on each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flint_api::backend::{Endpoint, FunctionRoute, PokeSink, RevisionKey, RevisionRoute};
use flint_api::poke::ScalePoke;
use flint_api::{Protocol, TrafficStatus};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::super::tls::{CertSet, certified_key, self_signed};
use super::super::{Gateway, GatewayConfig};
use super::seen::{self, HEADER};
use super::{Listener, ListenerKind, listener};

const BOUND: Duration = Duration::from_secs(10);

struct NoPokes;

impl PokeSink for NoPokes {
    fn poke(&self, _: ScalePoke) {}
}

/// An app on loopback answering every request with `app`.
async fn app() -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                    Bytes::from_static(b"app"),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A gateway routing `hello.ns.localhost` to an app.
async fn gateway() -> Gateway {
    let gateway = Gateway::new(GatewayConfig::dev(), Arc::new(NoPokes)).unwrap();
    let rev = RevisionRoute {
        name: "hello-00001".into(),
        concurrency: 10,
        timeout_seconds: 10,
        protocol: Protocol::Http1,
        failure: None,
        probe_starting: false,
    };
    gateway.set_routes(vec![FunctionRoute {
        namespace: "ns".into(),
        name: "hello".into(),
        traffic: vec![TrafficStatus {
            revision_name: rev.name.clone(),
            percent: 100,
            latest_revision: true,
            tag: None,
            url: None,
        }],
        revisions: vec![rev],
        access: Default::default(),
    }]);
    let endpoint = Endpoint {
        id: "a".into(),
        addr: app().await,
        ready: true,
        terminating: false,
    };
    gateway.set_endpoints(
        &RevisionKey::new("ns", "hello", "hello-00001"),
        vec![endpoint],
    );
    gateway
}

/// GET / of `hello.ns.localhost` on `io`, named `name`: its status and body.
async fn get<IO>(io: IO, name: &str) -> (u16, String)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/")
        .header("host", "hello.ns.localhost")
        .header(HEADER, name)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(BOUND, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_tags_its_connections_for_the_request_path() {
    let gateway = gateway().await;
    let (cert, key) = self_signed(&["*.ns.localhost".to_owned()]).unwrap();
    let mut certs = CertSet::new();
    certs.default(Arc::new(
        certified_key(cert.as_bytes(), key.as_bytes()).unwrap(),
    ));
    gateway.certs().set(certs);
    let bind = || listener(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let listeners = vec![
        Listener::plain(bind(), ListenerKind::Public),
        Listener::plain(bind(), ListenerKind::Internal),
        Listener::tls(
            bind(),
            ListenerKind::Internal,
            gateway.tls_config().unwrap(),
        ),
    ];
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = gateway.clone();
    let serving = tokio::spawn(async move {
        served
            .serve_listeners_with_workers(listeners, 2, async {
                let _ = stopped.await;
            })
            .await
    });

    let public = get(TcpStream::connect(addrs[0]).await.unwrap(), "public").await;
    let internal = get(TcpStream::connect(addrs[1]).await.unwrap(), "internal").await;
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addrs[2]).await.unwrap();
    let name = ServerName::try_from("hello.ns.localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap();
    let internal_tls = get(tls, "internal-tls").await;

    for answer in [&public, &internal, &internal_tls] {
        assert_eq!(answer, &(200, "app".to_owned()));
    }
    assert_eq!(seen::seen("public"), Some((ListenerKind::Public, false)));
    assert_eq!(
        seen::seen("internal"),
        Some((ListenerKind::Internal, false))
    );
    assert_eq!(
        seen::seen("internal-tls"),
        Some((ListenerKind::Internal, true))
    );

    let _ = stop.send(());
    tokio::time::timeout(BOUND, serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serving_no_listener_is_an_error() {
    let gateway = Gateway::new(GatewayConfig::dev(), Arc::new(NoPokes)).unwrap();
    let err = gateway
        .serve_listeners_with_workers(Vec::new(), 1, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs a listener"), "{err}");
}
