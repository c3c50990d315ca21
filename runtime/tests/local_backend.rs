//! The local backend with real child processes: replicas start on free ports
//! and become endpoints, scale to zero leaves no process, crashes are
//! restarted or reported, draining waits for in-flight requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flint_api::backend::{Endpoint, RevisionKey, ScaleActuator};
use flint_runtime::local::{BackendEvent, EndpointSink, LocalBackend, ProcessSpec};
use tokio::sync::broadcast;

/// Records endpoints; reports a settable in-flight count for every replica.
#[derive(Default)]
struct Recorder {
    endpoints: Mutex<HashMap<RevisionKey, Vec<Endpoint>>>,
    in_flight: AtomicUsize,
}

impl EndpointSink for Recorder {
    fn set_endpoints(&self, revision: &RevisionKey, endpoints: Vec<Endpoint>) {
        self.endpoints
            .lock()
            .unwrap()
            .insert(revision.clone(), endpoints);
    }
    fn in_flight(&self, _: &RevisionKey, _: &str) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

impl Recorder {
    fn serving(&self, key: &RevisionKey) -> Vec<SocketAddr> {
        let map = self.endpoints.lock().unwrap();
        map.get(key)
            .into_iter()
            .flatten()
            .filter(|e| e.ready && !e.terminating)
            .map(|e| e.addr)
            .collect()
    }
}

const SERVER: &str = r#"
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ.get("REPLY", "hi").encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        if os.environ.get("EXIT_AFTER_ONE"):
            self.wfile.flush(); os._exit(7)
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn spec(env: &[(&str, &str)]) -> ProcessSpec {
    ProcessSpec {
        argv: vec!["python3".into(), "-c".into(), SERVER.into()],
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        dir: std::env::temp_dir(),
        probes: Default::default(),
        log_prefix: "test".into(),
        startup_timeout: Duration::from_secs(20),
        stop_grace: Duration::from_secs(2),
    }
}

/// A backend publishing to a fresh recorder, and its event stream.
fn harness() -> (
    Arc<Recorder>,
    LocalBackend,
    broadcast::Receiver<BackendEvent>,
) {
    let sink = Arc::new(Recorder::default());
    let backend = LocalBackend::new(sink.clone());
    let events = backend.subscribe();
    (sink, backend, events)
}

fn key(rev: &str) -> RevisionKey {
    RevisionKey::new("default", "fn", rev)
}

/// Adds revision `rev` of `default/fn` running `spec` (drained for at most
/// `drain`) and scales it to `replicas`; returns its key.
async fn start(
    backend: &LocalBackend,
    rev: &str,
    spec: ProcessSpec,
    drain: Duration,
    replicas: u32,
) -> RevisionKey {
    let k = key(rev);
    backend.add_revision(k.clone(), spec, drain);
    backend.scale(&k, replicas).await.unwrap();
    k
}

/// Waits (bounded) for the next event that `want` accepts.
async fn next_event(
    rx: &mut broadcast::Receiver<BackendEvent>,
    want: impl Fn(&BackendEvent) -> bool,
) -> BackendEvent {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let ev = rx.recv().await.expect("event stream open");
            if want(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("event within 30 s")
}

/// Waits for the next replica to become ready; returns its id.
async fn next_ready(rx: &mut broadcast::Receiver<BackendEvent>) -> u64 {
    match next_event(rx, |e| matches!(e, BackendEvent::ReplicaReady { .. })).await {
        BackendEvent::ReplicaReady { replica, .. } => replica,
        _ => unreachable!(),
    }
}

/// Waits for the next replica process to end; returns whether it crashed
/// and why it ended.
async fn next_exit(rx: &mut broadcast::Receiver<BackendEvent>) -> (bool, String) {
    match next_event(rx, |e| matches!(e, BackendEvent::ReplicaExited { .. })).await {
        BackendEvent::ReplicaExited {
            crashed, reason, ..
        } => (crashed, reason),
        _ => unreachable!(),
    }
}

/// Waits for the revision to be reported failed; returns the message.
async fn next_failure(rx: &mut broadcast::Receiver<BackendEvent>) -> String {
    match next_event(rx, |e| matches!(e, BackendEvent::RevisionFailed { .. })).await {
        BackendEvent::RevisionFailed { message, .. } => message,
        _ => unreachable!(),
    }
}

async fn get(addr: SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn scale_up_serves_and_scale_to_zero_leaves_no_process() {
    let (sink, backend, mut events) = harness();
    let reply = spec(&[("REPLY", "hello from replica")]);
    let k = start(&backend, "fn-00001", reply, Duration::from_secs(5), 2).await;
    for _ in 0..2 {
        next_ready(&mut events).await;
    }
    let addrs = sink.serving(&k);
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0], addrs[1]);
    for addr in &addrs {
        assert!(get(*addr).await.unwrap().ends_with("hello from replica"));
    }
    let replicas = backend.replicas(&k).await.unwrap();
    assert_eq!((replicas.desired, replicas.ready), (2, 2));

    backend.scale(&k, 0).await.unwrap();
    for _ in 0..2 {
        let (crashed, reason) = next_exit(&mut events).await;
        assert!(!crashed, "{reason}");
    }
    assert!(sink.serving(&k).is_empty());
    for addr in addrs {
        assert!(get(addr).await.is_err(), "{addr} still accepts connections");
    }
    backend.shutdown().await;
}

#[tokio::test]
async fn a_command_that_exits_at_start_marks_the_revision_failed_with_its_output() {
    let (sink, backend, mut events) = harness();
    let mut bad = spec(&[]);
    bad.argv = vec![
        "sh".into(),
        "-c".into(),
        "echo 'config file missing' >&2; exit 3".into(),
    ];
    let k = start(&backend, "fn-00002", bad, Duration::from_secs(1), 1).await;
    let message = next_failure(&mut events).await;
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(message.contains("config file missing"), "{message}");
    assert!(sink.serving(&k).is_empty());
    backend.shutdown().await;
}

#[tokio::test]
async fn a_missing_program_is_reported_not_panicked() {
    let (_sink, backend, mut events) = harness();
    let mut bad = spec(&[]);
    bad.argv = vec!["/nonexistent/flint-app".into()];
    start(&backend, "fn-00003", bad, Duration::from_secs(1), 1).await;
    let message = next_failure(&mut events).await;
    assert!(
        message.contains("cannot start \"/nonexistent/flint-app\""),
        "{message}"
    );
    backend.shutdown().await;
}

#[tokio::test]
async fn a_replica_that_crashes_after_serving_is_restarted() {
    let (sink, backend, mut events) = harness();
    let once = spec(&[("EXIT_AFTER_ONE", "1")]);
    let k = start(&backend, "fn-00004", once, Duration::from_secs(1), 1).await;
    assert_eq!(next_ready(&mut events).await, 1);
    let addr = sink.serving(&k)[0];
    let _ = get(addr).await; // the app exits after answering
    let (crashed, reason) = next_exit(&mut events).await;
    assert!(crashed);
    assert!(reason.contains("exit status: 7"), "{reason}");
    assert_eq!(next_ready(&mut events).await, 2);
    assert_eq!(sink.serving(&k).len(), 1);
    backend.shutdown().await;
}

#[tokio::test]
async fn draining_waits_for_in_flight_requests_and_takes_the_replica_out_of_rotation_first() {
    let (sink, backend, mut events) = harness();
    let k = start(&backend, "fn-00005", spec(&[]), Duration::from_secs(30), 1).await;
    next_ready(&mut events).await;
    let addr = sink.serving(&k)[0];

    sink.in_flight.store(1, Ordering::SeqCst);
    backend.scale(&k, 0).await.unwrap();
    // Out of rotation at once, but still running while a request is in flight.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !sink.serving(&k).is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("taken out of rotation");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        get(addr).await.is_ok(),
        "stopped while a request was in flight"
    );

    sink.in_flight.store(0, Ordering::SeqCst);
    let (crashed, reason) = next_exit(&mut events).await;
    assert!(!crashed, "{reason}");
    assert!(get(addr).await.is_err());
    backend.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_every_process() {
    let (sink, backend, mut events) = harness();
    let a = start(&backend, "fn-00006", spec(&[]), Duration::from_secs(1), 2).await;
    let b = start(&backend, "fn-00007", spec(&[]), Duration::from_secs(1), 1).await;
    for _ in 0..3 {
        next_ready(&mut events).await;
    }
    let addrs: Vec<_> = sink
        .serving(&a)
        .into_iter()
        .chain(sink.serving(&b))
        .collect();
    assert_eq!(addrs.len(), 3);
    backend.shutdown().await;
    for addr in addrs {
        assert!(get(addr).await.is_err(), "{addr} survived shutdown");
    }
    assert!(backend.revisions().is_empty());
    assert!(backend.scale(&a, 1).await.is_err());
}

/// Answers `/alive` with 500 and everything else with 200.
const SICK_SERVER: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if self.path == "/alive" else 200
        self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn http_probe(path: &str, failure_threshold: u32) -> flint_runtime::local::LocalProbe {
    flint_runtime::local::LocalProbe {
        check: flint_runtime::local::ProbeCheck::Http {
            path: path.into(),
            headers: Vec::new(),
        },
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        success_threshold: 1,
        failure_threshold,
    }
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_the_replica() {
    let (sink, backend, mut events) = harness();
    let mut sick = spec(&[]);
    sick.argv[2] = SICK_SERVER.into();
    sick.probes.readiness = Some(http_probe("/ready", 3));
    sick.probes.liveness = Some(http_probe("/alive", 2));
    let k = start(&backend, "fn-00007", sick, Duration::from_secs(1), 1).await;
    let first = next_ready(&mut events).await;
    assert_eq!(sink.serving(&k).len(), 1);
    let started = std::time::Instant::now();
    let (crashed, reason) = next_exit(&mut events).await;
    assert!(crashed, "{reason}");
    assert_eq!(
        reason,
        "liveness probe failed 2 times in a row: GET /alive: HTTP 500"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "restarted after {:?}, before two periods",
        started.elapsed()
    );
    let second = next_ready(&mut events).await;
    assert_ne!(first, second);
    backend.shutdown().await;
}

#[tokio::test]
async fn a_readiness_probe_gates_the_endpoint() {
    let dir = std::env::temp_dir().join(format!("flint-local-ready-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (sink, backend, mut events) = harness();
    let mut gated = spec(&[]);
    gated.argv = vec!["python3".into(), "-c".into(), GATED_SERVER.into()];
    gated.dir = dir.clone();
    gated.probes.readiness = Some(http_probe("/ready", 1));
    let k = start(&backend, "fn-00008", gated, Duration::from_secs(1), 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sink.serving(&k).is_empty(), "ready before its probe passed");
    std::fs::write(dir.join("ready-flag"), "").unwrap();
    next_ready(&mut events).await;
    assert_eq!(sink.serving(&k).len(), 1);
    // Failing again, it leaves the rotation without being stopped.
    std::fs::remove_file(dir.join("ready-flag")).unwrap();
    let ev = next_event(&mut events, |e| {
        matches!(e, BackendEvent::ReplicaReadiness { .. })
    })
    .await;
    assert!(
        matches!(&ev, BackendEvent::ReplicaReadiness { ready: false, reason, .. } if reason == "readiness probe failed: GET /ready: HTTP 503"),
        "{ev:?}"
    );
    assert!(sink.serving(&k).is_empty());
    std::fs::write(dir.join("ready-flag"), "").unwrap();
    next_event(&mut events, |e| {
        matches!(e, BackendEvent::ReplicaReadiness { ready: true, .. })
    })
    .await;
    assert_eq!(sink.serving(&k).len(), 1);
    backend.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Answers `/ready` with 200 only while `ready-flag` exists in its directory.
const GATED_SERVER: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path != "/ready" or os.path.exists("ready-flag") else 503
        self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;
