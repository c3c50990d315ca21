//! Child processes for the gateway tests that must measure a gateway's own
//! memory or kill a replica: this test binary runs itself again in a role
//! (`FLINT_TEST_CHILD=gateway|app`) and is driven over stdin/stdout.
//! A child exits when its stdin closes, so none outlives the test.
#![allow(dead_code)]

pub mod budget;
pub mod sharing;
pub mod streaming;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use flint_api::backend::{Endpoint, FunctionRoute, PokeSink, RevisionKey};
use flint_api::poke::ScalePoke;
use flint_runtime::gateway::{Gateway, GatewayConfig};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{ChildStdin, ChildStdout};

use crate::gateway_support::{BOUND, within};

/// Environment variable naming the role of a child process.
pub const ROLE: &str = "FLINT_TEST_CHILD";
/// Environment variable with the child gateway's queue size.
pub const QUEUE: &str = "FLINT_TEST_QUEUE";

/// What a test tells a child gateway.
#[derive(Debug, Serialize, Deserialize)]
pub enum Command {
    /// Replace the routing table.
    Routes(Vec<FunctionRoute>),
    /// Replace one revision's replicas.
    Endpoints(RevisionKey, Vec<Endpoint>),
    /// Share replicas' slots: this gateway's admin address, and the ready
    /// gateways' (`Gateway::set_peers`).
    Peers(SocketAddr, Vec<SocketAddr>),
}

struct NoPoke;
impl PokeSink for NoPoke {
    fn poke(&self, _: ScalePoke) {}
}

/// Runs the role named by `FLINT_TEST_CHILD`, if any; returns whether it did.
pub fn run_child_role() -> bool {
    let Ok(role) = std::env::var(ROLE) else {
        return false;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match role.as_str() {
        "gateway" => rt.block_on(child_gateway()),
        "app" => rt.block_on(child_app()),
        "budget-gateway" => rt.block_on(budget::child_gateway()),
        "share-gateway" => rt.block_on(sharing::child_gateway()),
        "counting-app" => rt.block_on(sharing::counting_app()),
        other => panic!("unknown child role {other}"),
    }
    true
}

/// Lines of stdin, read on a thread of their own; ends when stdin closes.
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A gateway on 127.0.0.1 (data and admin ports printed on one line), fed
/// JSON [`Command`]s on stdin, each acknowledged with `ok`.
async fn child_gateway() {
    let mut config = GatewayConfig::dev();
    config.domain = "localhost".into();
    config.queue_size = std::env::var(QUEUE)
        .ok()
        .and_then(|q| q.parse().ok())
        .unwrap_or(100);
    config.max_buffered_bytes = 16 * 1024;
    config.retry_after_seconds = 2;
    serve_child(Gateway::new(config, Arc::new(NoPoke)).unwrap()).await;
}

/// Serves `gateway` on 127.0.0.1 (data and admin ports printed on one
/// line), applying the JSON [`Command`]s read from stdin, each acknowledged
/// with `ok`, until stdin closes.
pub async fn serve_child(gateway: Gateway) {
    let data = flint_runtime::gateway::listener(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!(
        "{} {}",
        data.local_addr().unwrap(),
        admin.local_addr().unwrap()
    );
    let g = gateway.clone();
    tokio::spawn(async move { g.serve(data, std::future::pending()).await.unwrap() });
    let router = gateway.admin_router();
    tokio::spawn(async move { axum::serve(admin, router).await.unwrap() });
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        match serde_json::from_str(&line).unwrap() {
            Command::Routes(routes) => gateway.set_routes(routes),
            Command::Endpoints(key, endpoints) => gateway.set_endpoints(&key, endpoints),
            Command::Peers(me, ready) => gateway.set_peers(me, ready),
        }
        println!("ok");
    }
}

/// An app whose `/hold` never answers and whose `/stats` tells how many
/// requests it holds; anything else gets `child`.
async fn child_app() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    let held = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let held = Arc::clone(&held);
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let held = Arc::clone(&held);
                async move {
                    let body = match req.uri().path() {
                        "/hold" => {
                            held.fetch_add(1, Ordering::SeqCst);
                            std::future::pending::<()>().await;
                            String::new()
                        }
                        "/stats" => held.load(Ordering::SeqCst).to_string(),
                        _ => "child".to_owned(),
                    };
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    let mut lines = stdin_lines();
    while lines.recv().await.is_some() {}
}

/// A running child process of this test binary.
pub struct Child {
    pub process: tokio::process::Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    /// The addresses it printed when it started.
    pub addrs: Vec<SocketAddr>,
}

impl Child {
    /// Starts this binary in `role` with extra environment `env`.
    pub async fn start(role: &str, env: &[(&str, String)]) -> Self {
        let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
        cmd.env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut process = cmd.spawn().unwrap();
        let stdin = process.stdin.take();
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let first = within(BOUND, lines.next_line()).await.unwrap();
        let addrs = first.split(' ').map(|a| a.parse().unwrap()).collect();
        Self {
            process,
            stdin,
            lines,
            addrs,
        }
    }

    /// Sends `command` to a child gateway and waits for it to be applied.
    pub async fn send(&mut self, command: &Command) {
        let mut line = serde_json::to_string(command).unwrap();
        line.push('\n');
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
        let ack = within(BOUND, self.lines.next_line()).await;
        assert_eq!(ack.as_deref(), Some("ok"));
    }

    /// The child's peak and current resident memory, in bytes
    /// (`VmHWM`, `VmRSS` of /proc/<pid>/status).
    pub fn memory(&self) -> (u64, u64) {
        let pid = self.process.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            let kb: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap();
            kb * 1024
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}
