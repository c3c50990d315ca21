//! The gateway-wide memory budget under a flood, measured on a gateway
//! child process with the chart's defaults: five revisions at zero whose
//! replicas never come, flooded with 60 KiB request heads, and 1,000
//! concurrent 500 KiB asynchronous bodies at once. Every request gets an
//! answer — accepted (202), waited and timed out (504), or refused (503
//! with `Retry-After`) — and the gateway's peak RSS stays under the chart's
//! default memory limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flint_api::backend::{PokeSink, RevisionRoute};
use flint_api::poke::ScalePoke;
use flint_runtime::events::queue::Enqueued;
use flint_runtime::events::scripted::{Script, Scripted};
use flint_runtime::events::{
    AsyncIntake, EventMetrics, FunctionKey, Invocation, QueueError, Target, Targets,
};
use flint_runtime::gateway::{Gateway, GatewayConfig};
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Child, Command};
use crate::gateway_support::{BOUND, get, revision, samples, single};

const KIB: usize = 1024;
const MIB: u64 = 1024 * 1024;
/// The chart's default memory limit of a gateway pod
/// (`gateway.resources.limits.memory` in charts/flint/values.yaml; the
/// chart's own tests check that it holds the default budget and headroom).
const CHART_MEMORY_LIMIT: u64 = 256 * MIB;
/// Revisions at zero.
const REVISIONS: usize = 5;
/// Requests sent to each: a full queue's worth (the default `queueSize`).
const PER_REVISION: usize = 1000;
/// Size of each request head.
const HEAD: usize = 60 * KIB;
/// Asynchronous requests, all at once.
const ASYNC: usize = 1000;
/// Size of each asynchronous body.
const BODY: usize = 500 * KIB;
/// How long the test queue takes to store an invocation.
const STORE_TIME: Duration = Duration::from_millis(200);
/// The revisions' `timeoutSeconds`: how long a waiting request waits.
const TIMEOUT_SECONDS: u32 = 4;

struct NoPoke;
impl PokeSink for NoPoke {
    fn poke(&self, _: ScalePoke) {}
}

/// A queue that takes [`STORE_TIME`] to store an invocation, holding its
/// encoded copy meanwhile (as a store or a NATS client does), then forgets
/// it: the flood tests the gateway's memory, not a store's.
struct SlowStore;

impl Script for SlowStore {
    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(async move {
            let encoded = invocation.encode().unwrap();
            tokio::time::sleep(STORE_TIME).await;
            drop(encoded);
            Ok(Enqueued::New)
        })
    }
}

fn function(i: usize) -> String {
    format!("f{i}")
}

fn at_zero(i: usize) -> RevisionRoute {
    revision(&format!("{}-00001", function(i)), 0, TIMEOUT_SECONDS)
}

/// The child: a gateway with the chart's defaults (queue size, buffer and
/// memory budget) whose async intake stores into [`SlowStore`]; data and
/// admin ports printed on one line, routes fed as JSON on stdin. Its
/// connection cap is raised above the flood's 6,000 connections, so that
/// every request reaches the budget (the cap is tested on its own).
pub async fn child_gateway() {
    let mut config = GatewayConfig::dev();
    config.domain = "localhost".into();
    config.clients.max_connections = 8_000;
    config.retry_after_seconds = 1;
    let gateway = Gateway::new(config, Arc::new(NoPoke)).unwrap();
    let targets = Targets::default();
    let target = Target {
        max_retries: 0,
        max_age: Duration::from_secs(60),
        max_in_flight: 1,
        timeout: Duration::from_secs(u64::from(TIMEOUT_SECONDS)),
        store_credentials: false,
    };
    targets.set(
        (0..REVISIONS)
            .map(|i| (FunctionKey::new("ns", function(i)), target))
            .collect(),
    );
    gateway.set_async_intake(AsyncIntake::new(
        Arc::new(Scripted(SlowStore)),
        targets,
        EventMetrics::new().unwrap(),
    ));
    super::serve_child(gateway).await;
}

/// What a client saw.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seen {
    /// A status, and whether `Retry-After` came with it.
    Answer(u16, bool),
    /// No answer: the connection failed or closed first.
    Lost(String),
}

/// Sends `head` and then `body` on a connection of its own and reads the
/// response head (writing and reading at once: a refused body is not read
/// by the gateway).
async fn exchange(addr: SocketAddr, head: Bytes, body: Bytes) -> Seen {
    let stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return Seen::Lost(format!("connect: {e}")),
    };
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // A write may fail once the gateway has answered and closed.
        if wr.write_all(&head).await.is_ok() {
            let _ = wr.write_all(&body).await;
        }
        wr
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let seen = loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            break Seen::Answer(status, text.contains("\r\nretry-after: "));
        }
        match tokio::time::timeout(BOUND * 6, rd.read(&mut buf)).await {
            Ok(Ok(0)) => break Seen::Lost("closed without an answer".into()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break Seen::Lost(format!("read: {e}")),
            Err(_) => break Seen::Lost("no answer in time".into()),
        }
    };
    writer.abort();
    seen
}

/// A GET to revision `i` with a head of [`HEAD`] bytes.
fn big_head(i: usize) -> Bytes {
    let mut head = format!("GET / HTTP/1.1\r\nhost: {}.ns.localhost\r\n", function(i));
    let filler = "h".repeat(4000);
    let mut n = 0;
    while head.len() + 4100 < HEAD {
        head.push_str(&format!("x-filler-{n}: {filler}\r\n"));
        n += 1;
    }
    let rest = HEAD - head.len() - "x-last: \r\n\r\n".len();
    head.push_str(&format!("x-last: {}\r\n\r\n", "l".repeat(rest)));
    assert_eq!(head.len(), HEAD);
    Bytes::from(head)
}

pub async fn flood() {
    let mut gw = Child::start("budget-gateway", &[]).await;
    let (data, admin) = (gw.addrs[0], gw.addrs[1]);
    gw.send(&Command::Routes(
        (0..REVISIONS)
            .map(|i| single(&function(i), at_zero(i)))
            .collect(),
    ))
    .await;
    let (before, _) = gw.memory();
    let async_head = Bytes::from(format!(
        "POST /work HTTP/1.1\r\nhost: f0.ns.localhost\r\nprefer: respond-async\r\ncontent-length: {BODY}\r\n\r\n"
    ));
    let body = Bytes::from(vec![b'a'; BODY]);
    let began = std::time::Instant::now();
    // Heads and bodies interleaved, one async request after every five
    // heads, so both compete for the budget from the start.
    let heads: Vec<Bytes> = (0..REVISIONS).map(big_head).collect();
    let mut clients = Vec::new();
    for n in 0..REVISIONS * PER_REVISION {
        let head = heads[n % REVISIONS].clone();
        clients.push((
            "head",
            tokio::spawn(async move { exchange(data, head, Bytes::new()).await }),
        ));
        if n % REVISIONS == REVISIONS - 1 {
            let (head, body) = (async_head.clone(), body.clone());
            clients.push((
                "async",
                tokio::spawn(async move { exchange(data, head, body).await }),
            ));
        }
    }
    let mut seen: HashMap<(&str, Seen), usize> = HashMap::new();
    for (kind, client) in clients {
        *seen.entry((kind, client.await.unwrap())).or_insert(0) += 1;
    }
    let took = began.elapsed();
    let (peak, _) = gw.memory();
    let (_, _, text) = get(admin, "admin", "/metrics").await;
    let refused = samples(&text, "flint_memory_budget_refused_total");
    let budget = samples(&text, "flint_memory_budget_bytes")[""];
    println!(
        "budget flood: {seen:?} in {:.1}s; budget {} MiB, refusals {refused:?}; gateway peak RSS {} MiB (before {} MiB)",
        took.as_secs_f64(),
        budget as u64 / MIB,
        peak / MIB,
        before / MIB
    );
    let count = |kind: &str, status: u16, retry_after: bool| {
        seen.get(&(kind, Seen::Answer(status, retry_after)))
            .copied()
            .unwrap_or(0)
    };
    // Every request got an answer, and only these.
    let heads_total = REVISIONS * PER_REVISION;
    let (heads_refused, heads_waited) = (count("head", 503, true), count("head", 504, false));
    let (async_refused, async_accepted) = (count("async", 503, true), count("async", 202, false));
    assert_eq!(heads_refused + heads_waited, heads_total, "{seen:?}");
    assert_eq!(async_refused + async_accepted, ASYNC, "{seen:?}");
    // The budget, not the queues, turned the flood away: every queue had
    // room, so every 503 is a refusal the budget counted.
    assert!(heads_refused > 0 && heads_waited > 0, "{seen:?}");
    assert!(async_refused > 0 && async_accepted > 0, "{seen:?}");
    assert_eq!(
        refused["{use=\"waiting_request\"}"] as usize, heads_refused,
        "{refused:?}"
    );
    assert_eq!(
        refused["{use=\"async_body\"}"] as usize, async_refused,
        "{refused:?}"
    );
    assert_eq!(samples(&text, "flint_memory_budget_held_bytes")[""], 0.0);
    assert!(
        peak < CHART_MEMORY_LIMIT,
        "gateway peak RSS {} MiB is over the chart's limit of {} MiB",
        peak / MIB,
        CHART_MEMORY_LIMIT / MIB
    );
}
