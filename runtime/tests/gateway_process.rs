//! Gateway tests that need separate processes: the gateway's own memory
//! (measured from /proc of a gateway child process) under a large backlog
//! and while 100 MB bodies stream through, and a replica process killed
//! mid-load. This binary runs itself again as those children, so it has its
//! own small test runner (`harness = false`): tests run one at a time and
//! accept the usual name filters.

mod gateway_process_support;
mod gateway_support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flint_api::Protocol;
use gateway_process_support::{Child, Command, QUEUE};
use gateway_support::*;
use http::StatusCode;
use tokio::io::AsyncWriteExt;

const MIB: u64 = 1024 * 1024;
/// Chunk size of the backlog's request bodies.
const CHUNK: usize = 64 * 1024;

type Test = (&'static str, fn());

fn run(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

fn main() {
    if gateway_process_support::run_child_role() {
        return;
    }
    let tests: [Test; 9] = [
        (
            "queue_overflow_under_a_large_backlog_is_503_and_memory_stays_bounded",
            || run(backlog()),
        ),
        (
            "hundred_megabyte_bodies_stream_both_ways_in_under_32_mib",
            || run(gateway_process_support::streaming::hundred_megabytes()),
        ),
        (
            "a_replica_killed_mid_load_fails_only_what_it_received",
            || run(replica_killed()),
        ),
        (
            "a_flood_of_heads_and_async_bodies_stays_within_the_memory_budget",
            || run(gateway_process_support::budget::flood()),
        ),
        (
            "two_gateways_share_a_replicas_concurrency_without_losing_throughput",
            || {
                run(gateway_process_support::sharing::gateways_share_a_replica(
                    2,
                ))
            },
        ),
        (
            "three_gateways_share_a_replicas_concurrency_without_losing_throughput",
            || {
                run(gateway_process_support::sharing::gateways_share_a_replica(
                    3,
                ))
            },
        ),
        (
            "a_dead_gateway_costs_only_its_share_until_the_gateway_set_changes",
            || {
                run(gateway_process_support::sharing::a_dead_peer_costs_only_its_share_until_the_set_changes())
            },
        ),
        (
            "a_gateway_joining_and_leaving_under_load_never_exceeds_concurrency",
            || {
                run(gateway_process_support::sharing::a_gateway_joining_and_leaving_under_load_never_exceeds_concurrency())
            },
        ),
        (
            "gateways_that_do_not_share_each_admit_the_whole_concurrency",
            || run(gateway_process_support::sharing::without_sharing_the_limit_is_per_gateway()),
        ),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exact = args.iter().any(|a| a == "--exact");
    // Filters are the bare arguments; the values of libtest's options that
    // take one (`--test-threads 1`, `--skip name`) are not filters.
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--skip" => skips.extend(it.next()),
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                it.next();
            }
            _ if a.starts_with('-') => {}
            _ => filters.push(a),
        }
    }
    let matches = |name: &str, f: &String| {
        if exact {
            name == f.as_str()
        } else {
            name.contains(f.as_str())
        }
    };
    let selected: Vec<&Test> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| matches(name, f)))
        .filter(|(name, _)| !skips.iter().any(|f| matches(name, f)))
        .filter(|_| !args.iter().any(|a| a == "--ignored"))
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in selected {
            println!("{name}: test");
        }
        return;
    }
    println!("\nrunning {} tests", selected.len());
    let count = selected.len();
    let began = std::time::Instant::now();
    let mut failed = Vec::new();
    for (name, test) in selected {
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(*name);
        }
    }
    // The summary line has libtest's shape, for tools that add them up.
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    if !failed.is_empty() {
        println!("\nfailures: {failed:?}");
    }
    println!(
        "\ntest result: {verdict}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s",
        count - failed.len(),
        failed.len(),
        tests.len() - count,
        began.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}

/// Starts a child gateway with queue size `queue` serving Function
/// `ns/<name>` (one revision, no replica yet).
async fn child_gateway(queue: usize, name: &str, concurrency: u32) -> Child {
    let mut gw = Child::start("gateway", &[(QUEUE, queue.to_string())]).await;
    let rev = revision(&format!("{name}-00001"), concurrency, 60);
    gw.send(&Command::Routes(vec![single(name, rev)])).await;
    gw
}

/// One sample of the child's metrics, by label set.
async fn metric(admin: SocketAddr, name: &str, labels: &str) -> f64 {
    let (_, _, text) = get(admin, "admin", "/metrics").await;
    samples(&text, name).get(labels).copied().unwrap_or(0.0)
}

/// 1,000 requests wait at zero, each pushing a 1 MiB body the gateway must
/// not read yet; one more is refused with 503 and `Retry-After`; the
/// gateway holds no body bytes, only its per-connection buffers.
async fn backlog() {
    const QUEUED: usize = 1000;
    let gw = child_gateway(QUEUED, "bl", 0).await;
    let (data, admin) = (gw.addrs[0], gw.addrs[1]);
    let (before, _) = gw.memory();
    let written = Arc::new(AtomicU64::new(0));
    let chunk = Bytes::from(vec![7u8; CHUNK]);
    let clients: Vec<_> = (0..QUEUED)
        .map(|_| {
            let (written, chunk) = (Arc::clone(&written), chunk.clone());
            tokio::spawn(async move {
                let mut s = connect(data).await;
                let head = format!(
                    "POST /upload HTTP/1.1\r\nhost: bl.ns.localhost\r\ncontent-length: {MIB}\r\n\r\n"
                );
                s.write_all(head.as_bytes()).await.unwrap();
                for _ in 0..MIB / CHUNK as u64 {
                    s.write_all(&chunk).await.unwrap();
                    written.fetch_add(CHUNK as u64, Ordering::SeqCst);
                }
                s
            })
        })
        .collect();
    let labels = "{function=\"bl\",namespace=\"ns\",revision=\"bl-00001\"}";
    tokio::time::timeout(Duration::from_secs(60), async {
        while metric(admin, "flint_queue_depth", labels).await != QUEUED as f64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    // Let the clients write until the sockets push back.
    let mut last = 0;
    tokio::time::timeout(BOUND, async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = written.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
    })
    .await
    .unwrap();

    let (status, headers, body) = get(data, "bl.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(
        body,
        "revision bl-00001 has 1000 requests waiting already; retry later\n"
    );
    assert_eq!(
        metric(admin, "flint_queue_overflow_total", labels).await,
        1.0
    );
    assert_eq!(metric(admin, "flint_queue_depth", labels).await, 1000.0);

    let (peak, _) = gw.memory();
    let offered = written.load(Ordering::SeqCst);
    println!(
        "backlog: {QUEUED} waiting, {} MiB of bodies written by clients, gateway peak RSS {} MiB (before {} MiB)",
        offered / MIB,
        peak / MIB,
        before / MIB
    );
    // Bodies of waiting requests stay in the kernel's socket buffers: the
    // gateway's growth is bounded by its per-connection buffers
    // (queue × 16 KiB = 16 MiB) plus per-connection bookkeeping.
    assert!(
        peak - before < 48 * MIB,
        "gateway grew by {} MiB holding the backlog",
        (peak - before) / MIB
    );
    assert!(offered > 2 * peak, "the clients offered {offered} bytes");
    for c in clients {
        c.abort();
    }
}

/// Replica `a` (a separate process) and replica `b` each hold requests when
/// `a` is killed: what `a` received fails with 502, naming the replica and
/// revision; requests sent after are retried on `b` (a is still listed, its
/// port now refuses) and succeed; nothing hangs.
async fn replica_killed() {
    const HELD: usize = 20;
    const AFTER: usize = 40;
    let mut a = Child::start("app", &[]).await;
    let a_addr = a.addrs[0];
    let b = app("b", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let k = gw.serve_single(
        "k",
        revision("k-00001", 0, 30),
        vec![ready("a", a_addr), ready("b", b.addr)],
    );
    let state = gw.gateway.revision(&k).unwrap();
    let mut requests = gw.spawn_gets(HELD, "k.ns.localhost", "/hold");
    // Every held request reached its replica.
    let held_by_a = tokio::time::timeout(BOUND, async {
        loop {
            let on_a: usize = get(a_addr, "a", "/stats").await.2.parse().unwrap();
            let on_b = b.stats.in_flight.load(Ordering::SeqCst);
            if on_a + on_b == HELD && state.in_flight("a") == Some(on_a as u32) {
                return on_a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert!(held_by_a > 0 && held_by_a < HELD, "a holds {held_by_a}");

    a.process.kill().await.unwrap();
    requests.extend(gw.spawn_gets(AFTER, "k.ns.localhost", "/"));
    b.gate.add_permits(HELD);
    let mut ok = 0;
    let mut bad_gateway = 0;
    for r in requests {
        let (status, _, body) = within(BOUND, r).await;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::BAD_GATEWAY => {
                assert!(
                    body.starts_with("replica a of revision k-00001 failed: "),
                    "{body}"
                );
                bad_gateway += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(bad_gateway, held_by_a);
    assert_eq!(ok, HELD - held_by_a + AFTER);
    assert_eq!(
        b.stats.served.load(Ordering::SeqCst),
        HELD - held_by_a + AFTER
    );
    assert_eq!(state.in_flight("a"), Some(0));
    gw.shutdown().await;
}
