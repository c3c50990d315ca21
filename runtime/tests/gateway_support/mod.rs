//! Shared pieces of the gateway tests: a real app on 127.0.0.1, a gateway
//! serving on 127.0.0.1, a recording poke sink and a small client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flint_api::backend::{Endpoint, FunctionRoute, PokeSink, RevisionKey, RevisionRoute};
use flint_api::poke::ScalePoke;
use flint_api::{Protocol, TrafficStatus};
use flint_runtime::gateway::{ClientSettings, Gateway, GatewayConfig, RevisionState};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

#[path = "../support_common/serving.rs"]
mod serving;
use serving::{Serving, serve};

/// Upper bound on any single wait in a test, so a bug fails instead of hanging.
pub const BOUND: Duration = Duration::from_secs(10);

/// What a test app observed.
#[derive(Default)]
pub struct AppStats {
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub served: AtomicUsize,
}

/// A test app: answers `<name> <method> <path>` plus the forwarded headers;
/// `/hold` waits for a permit from `gate`; `/slow` answers after 2 ms; `/echo` returns the body;
/// `/ws` accepts an upgrade and echoes bytes.
pub struct App {
    pub addr: SocketAddr,
    pub stats: Arc<AppStats>,
    pub gate: Arc<Semaphore>,
    _stop: oneshot::Sender<()>,
}

async fn app_handler(
    name: &'static str,
    stats: Arc<AppStats>,
    gate: Arc<Semaphore>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let resp = match req.uri().path() {
        "/slow" => {
            // Long enough for requests to pile up on the replica.
            tokio::time::sleep(Duration::from_millis(2)).await;
            Response::new(Full::new(Bytes::from(format!("{name} GET /slow "))))
        }
        "/hold" => {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            Response::new(Full::new(Bytes::from(format!("{name} held"))))
        }
        "/whoami" => {
            // What the gateway told the app of its caller, and the
            // credentials that reached it.
            let h = req.headers();
            let mut seen: Vec<String> = h
                .iter()
                .filter(|(k, _)| {
                    let k = k.as_str();
                    k.starts_with("x-flint-") || k == "authorization" || k == "x-api-key"
                })
                .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("?")))
                .collect();
            seen.sort();
            Response::new(Full::new(Bytes::from(format!("{name} {}", seen.join(" ")))))
        }
        "/echo" => {
            let body = req
                .body_mut()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Response::new(Full::new(body))
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on.await {
                    let mut io = TokioIo::new(upgraded);
                    let (mut r, mut w) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "echo")
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
        _ => {
            let h = req.headers();
            let get = |k: &str| {
                h.get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            let text = format!(
                "{name} {} {path} prefix={} xff={} host={} version={:?}",
                req.method(),
                get("x-forwarded-prefix"),
                get("x-forwarded-for"),
                get("host"),
                req.version(),
            );
            Response::new(Full::new(Bytes::from(text)))
        }
    };
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    stats.served.fetch_add(1, Ordering::SeqCst);
    Ok(resp)
}

/// Starts an app speaking `protocol` on a free port of 127.0.0.1.
pub async fn app(name: &'static str, protocol: Protocol) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(AppStats::default());
    let gate = Arc::new(Semaphore::new(0));
    let (stop, mut stopped) = oneshot::channel();
    let (s, g) = (Arc::clone(&stats), Arc::clone(&gate));
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => r.unwrap(),
                _ = &mut stopped => return,
            };
            let (s, g) = (Arc::clone(&s), Arc::clone(&g));
            let svc = service_fn(move |req| app_handler(name, Arc::clone(&s), Arc::clone(&g), req));
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                match protocol {
                    Protocol::Http1 => {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .with_upgrades()
                            .await;
                    }
                    Protocol::H2c => {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await;
                    }
                }
            });
        }
    });
    App {
        addr,
        stats,
        gate,
        _stop: stop,
    }
}

/// Records every poke.
#[derive(Default)]
pub struct Pokes(pub Mutex<Vec<ScalePoke>>);

impl PokeSink for Pokes {
    fn poke(&self, poke: ScalePoke) {
        self.0.lock().unwrap().push(poke);
    }
}

impl Pokes {
    pub fn taken(&self) -> Vec<ScalePoke> {
        self.0.lock().unwrap().clone()
    }
}

/// A gateway serving on a free port of 127.0.0.1.
pub struct Running {
    pub gateway: Gateway,
    pub addr: SocketAddr,
    pub pokes: Arc<Pokes>,
    serving: Serving,
}

impl Running {
    /// Stops accepting and waits (bounded) for the server to drain.
    pub async fn shutdown(self) {
        self.serving.stop(BOUND).await;
    }

    /// Routes all of Function `ns/<function>` to `rev`, which has no
    /// replicas yet; returns the revision's key.
    pub fn route_single(&self, function: &str, rev: RevisionRoute) -> RevisionKey {
        let key = key(function, &rev.name);
        self.gateway.set_routes(vec![single(function, rev)]);
        key
    }

    /// Routes all of Function `ns/<function>` to `rev` and gives it
    /// `replicas`; returns the revision's key.
    pub fn serve_single(
        &self,
        function: &str,
        rev: RevisionRoute,
        replicas: Vec<Endpoint>,
    ) -> RevisionKey {
        let key = self.route_single(function, rev);
        self.gateway.set_endpoints(&key, replicas);
        key
    }

    /// Sends `n` concurrent GETs of `path` at `host`, each on its own
    /// connection; the handles give their answers.
    pub fn spawn_gets(&self, n: usize, host: &str, path: &str) -> Vec<JoinHandle<Answer>> {
        (0..n)
            .map(|_| {
                let (addr, host, path) = (self.addr, host.to_owned(), path.to_owned());
                tokio::spawn(async move { get(addr, &host, &path).await })
            })
            .collect()
    }

    /// Sends `n` concurrent GETs of `path` at `host` to revision `key`, which
    /// has no free replica, and waits (bounded) until all `n` wait in its
    /// queue; returns their handles and the revision's state.
    pub async fn queue_gets(
        &self,
        key: &RevisionKey,
        n: usize,
        host: &str,
        path: &str,
    ) -> (Vec<JoinHandle<Answer>>, Arc<RevisionState>) {
        let requests = self.spawn_gets(n, host, path);
        let state = self.gateway.revision(key).unwrap();
        eventually(|| state.waiting() == n).await;
        (requests, state)
    }
}

pub fn config() -> GatewayConfig {
    GatewayConfig {
        domain: "localhost".into(),
        queue_size: 100,
        max_buffered_bytes: 16 * 1024,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        internal_listen: None,
        tls_listen: None,
        retry_after_seconds: 2,
        memory_budget_bytes: flint_runtime::budget::DEFAULT_MEMORY_BUDGET_BYTES,
        clients: ClientSettings::default(),
        peers: Default::default(),
        access: Default::default(),
    }
}

pub async fn gateway(config: GatewayConfig) -> Running {
    let pokes = Arc::new(Pokes::default());
    let gateway = Gateway::new(config, pokes.clone()).unwrap();
    let serving = serve(&gateway);
    Running {
        gateway,
        addr: serving.addr,
        pokes,
        serving,
    }
}

pub fn revision(name: &str, concurrency: u32, timeout_seconds: u32) -> RevisionRoute {
    RevisionRoute {
        name: name.into(),
        concurrency,
        timeout_seconds,
        protocol: Protocol::Http1,
        failure: None,
        probe_starting: false,
    }
}

pub fn traffic(revision: &str, percent: u32, tag: Option<&str>) -> TrafficStatus {
    TrafficStatus {
        revision_name: revision.into(),
        percent,
        latest_revision: tag.is_none(),
        tag: tag.map(Into::into),
        url: None,
    }
}

/// A Function `ns/<name>` with one revision `<name>-00001` taking all traffic.
pub fn single(name: &str, rev: RevisionRoute) -> FunctionRoute {
    FunctionRoute {
        namespace: "ns".into(),
        name: name.into(),
        traffic: vec![traffic(&rev.name, 100, None)],
        revisions: vec![rev],
        access: Default::default(),
    }
}

pub fn key(function: &str, revision: &str) -> RevisionKey {
    RevisionKey::new("ns", function, revision)
}

pub fn ready(id: &str, addr: SocketAddr) -> Endpoint {
    Endpoint {
        id: id.into(),
        addr,
        ready: true,
        terminating: false,
    }
}

/// Opens a TCP connection to `addr`.
pub async fn connect(addr: SocketAddr) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

/// A response's status, headers and body text.
pub type Answer = (StatusCode, http::HeaderMap, String);

/// A one-shot HTTP/1.1 client: its own connection per request.
pub async fn request(gateway: SocketAddr, req: Request<Full<Bytes>>) -> Answer {
    let stream = connect(gateway).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = within(BOUND, sender.send_request(req)).await;
    let (parts, body) = resp.into_parts();
    let body = within(BOUND, body.collect()).await.to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// GET `path` at `host` through the gateway.
pub async fn get(gateway: SocketAddr, host: &str, path: &str) -> Answer {
    let req = Request::builder()
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    request(gateway, req).await
}

/// Reads a response head from `io` one byte at a time, so that nothing after
/// it (an upgraded stream's first bytes) is consumed; returns it lowercased.
pub async fn read_head(io: &mut (impl AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        within(BOUND, io.read_exact(&mut byte)).await;
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

/// Awaits `fut`, failing the test if it takes longer than `limit` or
/// ends in an error.
pub async fn within<T, E: std::fmt::Debug>(
    limit: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> T {
    tokio::time::timeout(limit, fut).await.unwrap().unwrap()
}

/// Waits (bounded) until `cond` holds.
pub async fn eventually(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(BOUND, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
}

/// The samples of `name` in Prometheus text, by their label set text.
pub fn samples(text: &str, name: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            if !(labels.is_empty() || labels.starts_with('{')) {
                return None;
            }
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}
