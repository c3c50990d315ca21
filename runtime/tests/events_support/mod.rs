//! Shared pieces of the async-invocation tests: a function that fails 20%
//! of its attempts transiently and counts what it handled, a gateway that
//! brings it up from zero on the first poke, a submitter, and a real
//! nats-server on a free loopback port.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flint_api::backend::{Endpoint, FunctionRoute, PokeSink, RevisionKey, RevisionRoute};
use flint_api::poke::ScalePoke;
use flint_api::{Protocol, TrafficStatus};
use flint_runtime::events::{AsyncIntake, FunctionKey, Target, Targets};
use flint_runtime::gateway::{Gateway, GatewayConfig};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

#[path = "../support_common/serving.rs"]
mod serving;
use serving::{Serving, serve};

pub const NS: &str = "default";
pub const FUNCTION: &str = "work";
pub const REVISION: &str = "work-00001";
/// Replica concurrency of the function (the gateway's hard limit).
pub const CONCURRENCY: u32 = 8;

pub fn function_id() -> FunctionKey {
    FunctionKey::new(NS, FUNCTION)
}

pub fn revision_key() -> RevisionKey {
    RevisionKey::new(NS, FUNCTION, REVISION)
}

/// Whether attempt `attempt` of `id` fails (a fixed 20% of all attempts,
/// independent per attempt, the same in every run).
pub fn fails(id: &str, attempt: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain([b'#']).chain(attempt.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finaliser, so attempts of one id are independent.
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h.is_multiple_of(5)
}

/// What the function saw.
#[derive(Default)]
pub struct Seen {
    /// Successful handlings per invocation id.
    pub handled: Mutex<HashMap<String, u32>>,
    pub attempts: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl Seen {
    pub fn handled_count(&self) -> usize {
        self.handled.lock().unwrap().len()
    }
}

async fn handle(
    seen: Arc<Seen>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
    seen.attempts.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (id, attempt) = (header("x-flint-invocation-id"), header("x-flint-attempt"));
    tokio::task::yield_now().await;
    let resp = if fails(&id, &attempt) {
        let mut r = Response::new(Full::new(Bytes::from_static(b"transient failure")));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        r
    } else {
        *seen.handled.lock().unwrap().entry(id.clone()).or_default() += 1;
        Response::new(Full::new(Bytes::from(format!("done {id}"))))
    };
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(resp)
}

/// The function's process: a server on 127.0.0.1, not yet known to any
/// gateway (the function is at zero until a gateway's poke brings it in).
pub struct Function {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    _stop: oneshot::Sender<()>,
}

pub async fn function() -> Function {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let (stop, mut stopped) = oneshot::channel();
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => r.unwrap(),
                _ = &mut stopped => return,
            };
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(Arc::clone(&s), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Function {
        addr,
        seen,
        _stop: stop,
    }
}

/// Forwards pokes to a task that brings the replica up.
struct PokeChannel(mpsc::UnboundedSender<ScalePoke>);

impl PokeSink for PokeChannel {
    fn poke(&self, poke: ScalePoke) {
        let _ = self.0.send(poke);
    }
}

/// A gateway serving the function, which starts at zero: the first poke
/// registers its replica.
pub struct RunningGateway {
    pub gateway: Gateway,
    pub addr: SocketAddr,
    pub pokes: Arc<AtomicUsize>,
    serving: Serving,
}

impl RunningGateway {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(self) {
        self.serving.stop(Duration::from_secs(30)).await;
    }
}

pub async fn gateway(function_addr: SocketAddr) -> RunningGateway {
    gateway_with(&[(FUNCTION, function_addr)]).await
}

/// A gateway serving each `(name, addr)` as Function `default/<name>`
/// (revision `<name>-00001`), each at zero until its first poke.
pub async fn gateway_with(functions: &[(&str, SocketAddr)]) -> RunningGateway {
    let (tx, mut rx) = mpsc::unbounded_channel();
    // The listener is bound by `serve`; the rest is `flint dev`'s.
    let config = GatewayConfig {
        domain: "localhost".into(),
        queue_size: 10_000,
        max_buffered_bytes: 64 * 1024,
        retry_after_seconds: 1,
        ..GatewayConfig::dev()
    };
    let gateway = Gateway::new(config, Arc::new(PokeChannel(tx))).unwrap();
    let route = |name: &str| FunctionRoute {
        namespace: NS.into(),
        name: name.into(),
        revisions: vec![RevisionRoute {
            name: format!("{name}-00001"),
            concurrency: CONCURRENCY,
            timeout_seconds: 10,
            protocol: Protocol::Http1,
            failure: None,
            probe_starting: false,
        }],
        traffic: vec![TrafficStatus {
            revision_name: format!("{name}-00001"),
            percent: 100,
            tag: None,
            latest_revision: true,
            url: None,
        }],
        access: Default::default(),
    };
    gateway.set_routes(functions.iter().map(|(name, _)| route(name)).collect());
    let pokes = Arc::new(AtomicUsize::new(0));
    let (g, p) = (gateway.clone(), Arc::clone(&pokes));
    let mut at_zero: HashMap<String, SocketAddr> = functions
        .iter()
        .map(|(name, addr)| (name.to_string(), *addr))
        .collect();
    tokio::spawn(async move {
        // A Function's first poke brings its replica up; once every one is
        // up the task ends, so it does not keep the gateway alive.
        while !at_zero.is_empty() {
            let Some(poke) = rx.recv().await else { return };
            let Some(addr) = at_zero.remove(&poke.function) else {
                continue;
            };
            p.fetch_add(1, Ordering::SeqCst);
            let key = RevisionKey::new(poke.namespace, poke.function, poke.revision);
            g.set_endpoints(
                &key,
                vec![Endpoint {
                    id: "replica-1".into(),
                    addr,
                    ready: true,
                    terminating: false,
                }],
            );
        }
    });
    let serving = serve(&gateway);
    RunningGateway {
        gateway,
        addr: serving.addr,
        pokes,
        serving,
    }
}

/// Sets the function as the one async target with `max_retries`.
pub fn set_target(targets: &Targets, max_retries: u32, max_in_flight: u32) {
    set_targets(targets, &[FUNCTION], max_retries, max_in_flight);
}

/// Sets the Functions `default/<name>` as the async targets.
pub fn set_targets(targets: &Targets, names: &[&str], max_retries: u32, max_in_flight: u32) {
    let target = Target {
        max_retries,
        max_age: Duration::from_secs(600),
        max_in_flight,
        timeout: Duration::from_secs(10),
        store_credentials: false,
    };
    targets.set(
        names
            .iter()
            .map(|name| (FunctionKey::new(NS, *name), target))
            .collect(),
    );
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// POSTs invocation `id` to `/async-function/…` until it is answered 202
/// (a 503 while the queue is unreachable means "not accepted, try again").
pub async fn submit(client: &HttpClient, gateway: &str, id: &str) -> u32 {
    let mut refusals = 0;
    loop {
        let req = Request::post(format!("{gateway}/async-function/{NS}/{FUNCTION}/job"))
            .header("x-flint-invocation-id", id)
            .body(Full::new(Bytes::from(format!("payload of {id}"))))
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(15), client.request(req)).await {
            Ok(Ok(resp)) if resp.status() == StatusCode::ACCEPTED => return refusals,
            _ => {
                refusals += 1;
                assert!(refusals < 200, "invocation {id} never accepted");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Submits `ids` with `parallel` submitters, each pausing `pace` between
/// submissions.
pub async fn submit_all(gateway: String, ids: Vec<String>, parallel: usize, pace: Duration) -> u32 {
    let ids = Arc::new(Mutex::new(ids));
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (ids, gateway) = (Arc::clone(&ids), gateway.clone());
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut refusals = 0;
            loop {
                let next = ids.lock().unwrap().pop();
                let Some(id) = next else { return refusals };
                refusals += submit(&client, &gateway, &id).await;
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
        }));
    }
    let mut refusals = 0;
    for t in tasks {
        refusals += t.await.unwrap();
    }
    refusals
}

/// Fetches the gateway's `/metrics` text.
pub fn metrics(gateway: &Gateway) -> String {
    gateway.metrics_text().unwrap()
}

/// The value of the sample `name{labels}` in `text` (0 when absent).
pub fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `done()` or `limit` passes.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// A nats-server with JetStream on a free loopback port, storing in `dir`,
/// requiring `token` of its clients when set.
pub struct NatsServer {
    pub port: u16,
    pub dir: PathBuf,
    pub token: Option<String>,
    child: Option<std::process::Child>,
}

pub fn nats_available() -> bool {
    std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl NatsServer {
    pub fn start(dir: &Path) -> Self {
        Self::start_with_token(dir, None)
    }

    /// A server that refuses clients without `token` (`--auth`), as the
    /// chart's does.
    pub fn start_with_token(dir: &Path, token: Option<&str>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            port,
            dir: dir.to_owned(),
            token: token.map(str::to_owned),
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// How the gateway reaches this server (with its token).
    pub fn settings(&self) -> flint_runtime::events::NatsSettings {
        let settings = flint_runtime::events::NatsSettings::new(self.url());
        match &self.token {
            Some(token) => settings.with_token(token.as_str()),
            None => settings,
        }
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn restart(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .args(self.token.iter().flat_map(|t| ["--auth", t.as_str()]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server) must be installed");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The final check: every accepted invocation was handled successfully
/// exactly once, or dead-lettered (after the last retry) and never handled.
pub fn assert_each_settled_once(seen: &Seen, ids: &[String], dead: &[String]) {
    let handled = seen.handled.lock().unwrap();
    let twice: Vec<_> = handled.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    let dead: std::collections::HashSet<&String> = dead.iter().collect();
    for id in ids {
        let ok = handled.contains_key(id);
        let gave_up = dead.contains(id);
        assert!(ok ^ gave_up, "{id}: handled={ok} dead-lettered={gave_up}");
    }
    assert_eq!(handled.len() + dead.len(), ids.len());
}

/// The check after a crash of the worker: every accepted invocation was
/// handled or dead-lettered (none lost); only those in flight at the crash,
/// at most `in_flight`, may have been handled twice or handled and then
/// dead-lettered on a later attempt (their first outcome died with the
/// worker).
pub fn assert_none_lost(seen: &Seen, ids: &[String], dead: &[String], in_flight: usize) {
    let handled = seen.handled.lock().unwrap();
    let dead: std::collections::HashSet<&String> = dead.iter().collect();
    let mut repeated = Vec::new();
    for id in ids {
        let times = handled.get(id).copied().unwrap_or(0);
        let gave_up = dead.contains(id);
        assert!(
            times > 0 || gave_up,
            "{id} was lost: never handled, not dead-lettered"
        );
        if times > 1 || (times > 0 && gave_up) {
            repeated.push((id, times, gave_up));
        }
    }
    assert!(
        repeated.len() <= in_flight,
        "{} invocations repeated, more than the {in_flight} in flight at the crash: {repeated:?}",
        repeated.len()
    );
}

/// The intake type is what the gateway hands requests to.
pub fn attach(gateway: &Gateway, intake: AsyncIntake) {
    gateway.set_async_intake(intake);
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "flint-{name}-{}-{}",
            std::process::id(),
            flint_runtime::events::invocation::new_id(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
