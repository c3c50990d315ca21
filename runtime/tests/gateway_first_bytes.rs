//! The deadline on a connection's first bytes, over 2,000 real sockets on
//! 127.0.0.1: silent sockets and partial HTTP/2 prefaces are closed at the
//! deadline without a busy wait, the process's descriptor count returns to
//! its baseline, and normal requests are served meanwhile.
//!
//! The only test of its binary, since it counts the whole process's
//! descriptors and CPU time. It holds 4,000 descriptors (both ends of each
//! socket), so the limit must be above 4,100.

mod gateway_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flint_api::Protocol;
use gateway_support::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raises this process's soft limit on open descriptors to `want` (or the
/// hard limit, if lower): the test holds thousands of sockets at once, and
/// many machines start processes at 1,024. Fails the test, saying so, when
/// the hard limit is too low.
fn raise_descriptor_limit(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let target = want.min(hard);
    if soft < target {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard).unwrap();
    }
    assert!(
        target >= 4_200,
        "this test needs about 4,200 open descriptors; the hard limit is {hard} (raise it with ulimit -Hn)"
    );
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// User and system CPU time of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), in clock ticks (100 per second).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Whether the gateway closed `stream` (end of stream or reset) within
/// `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether `stream` is still open, without waiting.
fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

async fn ok_get(addr: SocketAddr) {
    let (status, _, body) = get(addr, "hello.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_partial_preface_sockets_are_closed_at_the_deadline() {
    let deadline = Duration::from_secs(4);
    let app = app("app", Protocol::Http1).await;
    raise_descriptor_limit(8_192);
    let mut config = config();
    config.clients.first_byte_timeout = deadline;
    // Room for the silent sockets and the requests served meanwhile: the
    // cap is tested on its own.
    config.clients.max_connections = 4_096;
    let gw = gateway(config).await;
    gw.serve_single(
        "hello",
        revision("hello-00001", 0, 30),
        vec![ready("p", app.addr)],
    );
    // Warm up every worker's pool of replica connections, so the requests
    // below open no new descriptor.
    for _ in 0..8 {
        ok_get(gw.addr).await;
    }
    let baseline = open_descriptors();
    let opened = Instant::now();
    let mut sockets = Vec::new();
    for i in 0..2000 {
        let mut stream = connect(gw.addr).await;
        if i % 2 == 1 {
            // A preface that stops 4 bytes short.
            stream
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n")
                .await
                .unwrap();
        }
        sockets.push(stream);
    }
    // Normal requests are served meanwhile, without waiting for the
    // deadline of the silent ones.
    for _ in 0..20 {
        within(BOUND, async {
            ok_get(gw.addr).await;
            Ok::<_, ()>(())
        })
        .await;
    }
    let (cpu_before, waiting) = (cpu_time(), Instant::now());
    if opened.elapsed() < deadline / 2 {
        assert!(
            sockets.iter().all(still_open),
            "sockets were closed before their deadline"
        );
    }
    for (i, stream) in sockets.iter_mut().enumerate() {
        let left = (deadline + BOUND).saturating_sub(opened.elapsed());
        assert!(closed_within(stream, left).await, "socket {i} still open");
    }
    // Waiting on 1,000 partial prefaces is not a busy loop: a spinning
    // wait would keep a core or two busy all along.
    let (cpu, waited) = (cpu_time() - cpu_before, waiting.elapsed());
    assert!(cpu < waited / 2, "{cpu:?} of CPU in {waited:?}");
    drop(sockets);
    ok_get(gw.addr).await;
    // Back to the baseline or below (a replica connection pooled at the
    // baseline may have been closed since): none of the sockets leaked.
    tokio::time::timeout(BOUND, async {
        while open_descriptors() > baseline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} descriptors, {baseline} before", open_descriptors()));
    gw.shutdown().await;
}
