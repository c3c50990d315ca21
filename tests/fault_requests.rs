//! Faults on the request path, end to end in `flint dev` (the real binary,
//! real processes, loopback sockets): a replica killed while it serves, a
//! backlog far beyond the queue limit, slow clients, oversized requests.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Dev, free_port, get, metric, pids_in, rss_kib, temp_dir, write_fault_function};

const WAIT: Duration = Duration::from_secs(60);

/// Sends `request` on a fresh connection and reads the whole answer
/// (status, head, body); the gateway may close while we still write.
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.write_all(request);
    read_answer(&mut s)
}

/// Reads an HTTP/1.1 answer to the end of the connection.
fn read_answer(s: &mut TcpStream) -> (u16, String, String) {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (status, head.to_owned(), body.to_owned())
}

#[test]
fn a_replica_killed_under_load_fails_only_what_was_sent_to_it_with_502() {
    killed_under_load(0);
}

#[test]
fn a_replica_killed_at_its_concurrency_limit_fails_only_what_was_sent_to_it() {
    killed_under_load(1);
}

/// Two replicas under load from three clients; a long "marker" request is
/// on one of them when its process is killed. The marker fails with 502,
/// as does any other request the gateway had already sent to that replica
/// (the 502 names it); every other request is served, by the other replica
/// or the restarted one. With `concurrency: 1` the marker is the only
/// request the killed replica holds.
fn killed_under_load(concurrency: u32) {
    let dir = temp_dir(&format!("fault-killed-{concurrency}"));
    let log = dir.join("requests.log");
    write_fault_function(
        &dir,
        "victim",
        "hi",
        &[("REQUEST_LOG", log.to_str().unwrap())],
        &format!("  concurrency: {concurrency}\n  scale: {{initial: 2, min: 2, max: 2}}\n"),
    );
    let dev = Dev::start(&dir);
    dev.wait_output(WAIT, "default/victim-00001  replica 1 ready");
    dev.wait_output(WAIT, "default/victim-00001  replica 2 ready");
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<(String, u16, String)>>> = Arc::default();
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (stop, outcomes, gateway) = (stop.clone(), outcomes.clone(), dev.gateway);
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("c{c}-{n}");
                    let path = format!("/function/default/victim/?ms=50&id={id}");
                    let (status, body) = get(gateway, "localhost", &path).unwrap_or_default();
                    outcomes.lock().unwrap().push((id, status, body));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let marker = {
        let gateway = dev.gateway;
        std::thread::spawn(move || {
            get(
                gateway,
                "localhost",
                "/function/default/victim/?ms=15000&id=marker",
            )
            .unwrap()
        })
    };
    let mut victim = 0;
    dev.wait_for(WAIT, "the marker to reach a replica", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        victim = text
            .lines()
            .find_map(|l| {
                l.strip_suffix(" marker")?
                    .strip_prefix("start ")?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        victim != 0
    });
    assert!(pids_in(&dir).contains(&victim));
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, body) = marker.join().unwrap();
    // Load goes on while the replica is replaced.
    dev.wait_output(WAIT, "crash    default/victim-00001");
    dev.wait_output(WAIT, "default/victim-00001  replica 3 ready");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("victim"), "{body}");
    let out = dev.output();
    let replica = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("crash    default/victim-00001  replica ")?
                .split_once(':')
                .map(|(n, _)| n.to_owned())
        })
        .unwrap();
    let killed = format!("replica {replica} of revision victim-00001");
    assert!(body.contains(&killed), "{body}");
    let outcomes = outcomes.lock().unwrap();
    let ok = outcomes.iter().filter(|(_, s, _)| *s == 200).count();
    let sent_to_killed = outcomes
        .iter()
        .filter(|(_, s, b)| *s == 502 && b.contains(&killed))
        .count();
    let other: Vec<_> = outcomes
        .iter()
        .filter(|(_, s, b)| *s != 200 && !(*s == 502 && b.contains(&killed)))
        .collect();
    assert_eq!(other, Vec::<&(String, u16, String)>::new(), "{out}");
    assert_eq!(ok + sent_to_killed, outcomes.len());
    assert!(ok >= 20, "only {ok} requests served");
    // Every request the killed replica had received and not answered failed.
    let text = std::fs::read_to_string(&log).unwrap();
    let answered: std::collections::HashSet<&str> = outcomes
        .iter()
        .filter(|(_, s, _)| *s == 200)
        .map(|(id, _, _)| id.as_str())
        .collect();
    let lost: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("start {victim} ")))
        .filter(|id| *id != "marker" && !answered.contains(id))
        .collect();
    assert!(lost.len() <= sent_to_killed, "{lost:?}");
    if concurrency == 1 {
        // The marker held the killed replica's one slot: it received nothing else.
        let after_marker: Vec<_> = text
            .lines()
            .skip_while(|l| !l.ends_with(" marker"))
            .skip(1)
            .filter(|l| l.starts_with(&format!("start {victim} ")))
            .collect();
        assert_eq!(after_marker, Vec::<&str>::new());
    }
}

#[test]
fn a_backlog_far_beyond_the_queue_gets_503_with_retry_after_in_bounded_memory() {
    // The function needs 6 s to start, so all 2,000 requests arrive while it
    // is at zero: the first 50 wait in the queue and are served, the other
    // 1,950 are refused at once.
    const QUEUE: usize = 50;
    const SENT: usize = 2000;
    let dir = temp_dir("fault-backlog");
    write_fault_function(
        &dir,
        "deep",
        "hi",
        &[("START_DELAY_MS", "6000")],
        "  scale: {initial: 0, max: 1}\n",
    );
    let dev = Dev::start_with(
        &dir,
        free_port(),
        &["--queue-size", &QUEUE.to_string()],
        &[],
    );
    let before = rss_kib(dev.child.id());
    // 8 KiB of headers per request: the backlog offers 16 MiB of heads.
    let filler = "f".repeat(8 * 1024);
    let mut streams: Vec<TcpStream> = (0..SENT)
        .map(|i| {
            let mut s = TcpStream::connect(dev.gateway).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            write!(
                s,
                "GET /function/default/deep/?id={i} HTTP/1.1\r\nHost: localhost\r\nX-Filler: {filler}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    // Every refusal is counted before the RSS is taken; the queued requests
    // still wait for the replica then.
    let overflow = || {
        metric(
            dev.admin,
            flint_api::metrics::QUEUE_OVERFLOW_TOTAL,
            &["revision=\"deep-00001\""],
        )
    };
    dev.wait_for(WAIT, "every refusal", || {
        overflow() >= (SENT - QUEUE) as f64
    });
    let during = rss_kib(dev.child.id());
    let (mut served, mut refused) = (0, 0);
    for mut s in streams.drain(..) {
        let (status, head, body) = read_answer(&mut s);
        match status {
            200 => served += 1,
            503 => {
                assert!(
                    head.to_ascii_lowercase().contains("\r\nretry-after: 1"),
                    "{head}"
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {head}\n{body}\n{}", dev.output()),
        }
    }
    assert_eq!((served, refused), (QUEUE, SENT - QUEUE), "{}", dev.output());
    assert_eq!(overflow(), (SENT - QUEUE) as f64);
    // Bound: the queued requests' buffers (50 × 64 KiB) plus per-connection
    // state for 2,000 connections, far below the 16 MiB of heads offered.
    let grown = during.saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "RSS grew {grown} KiB (from {before} KiB)"
    );
}

#[test]
fn slow_clients_do_not_starve_others() {
    // 100 connections dribble their request heads a byte at a time and 50
    // dribble their bodies; meanwhile 200 ordinary requests are all served.
    let dir = temp_dir("fault-slow-clients");
    write_fault_function(&dir, "shared", "hi", &[], "  scale: {initial: 1, max: 1}\n");
    let dev = Dev::start(&dir);
    dev.wait_output(WAIT, "default/shared-00001  replica 1 ready");
    let stop = Arc::new(AtomicBool::new(false));
    let dribbler = {
        let (stop, gateway) = (stop.clone(), dev.gateway);
        std::thread::spawn(move || {
            let mut heads: Vec<TcpStream> = (0..100)
                .map(|_| {
                    let mut s = TcpStream::connect(gateway).unwrap();
                    s.write_all(b"GET /function/default/shared/ HTTP/1.1\r\nHost: loc")
                        .unwrap();
                    s
                })
                .collect();
            let mut bodies: Vec<TcpStream> = (0..50)
                .map(|_| {
                    let mut s = TcpStream::connect(gateway).unwrap();
                    s.write_all(b"POST /function/default/shared/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n").unwrap();
                    s
                })
                .collect();
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                for s in heads.iter_mut() {
                    let _ = s.write_all(b"a");
                }
                for s in bodies.iter_mut() {
                    let _ = s.write_all(b"b");
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let ok = Arc::new(AtomicUsize::new(0));
    let others: Vec<_> = (0..4)
        .map(|_| {
            let (ok, gateway) = (ok.clone(), dev.gateway);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    if let Ok((200, _)) = get(gateway, "localhost", "/function/default/shared/") {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in others {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let dribbled = dribbler.join().unwrap();
    assert_eq!(ok.load(Ordering::Relaxed), 200, "{}", dev.output());
    assert!(dribbled > 0);
}

#[test]
fn oversized_headers_get_431() {
    let dir = temp_dir("fault-oversized");
    write_fault_function(&dir, "small", "hi", &[], "  scale: {initial: 1}\n");
    let dev = Dev::start(&dir);
    dev.wait_output(WAIT, "default/small-00001  replica 1 ready");
    let big = "x".repeat(100 * 1024);
    let (status, head, _) = exchange(
        dev.gateway,
        format!("GET /function/default/small/ HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status, 431, "{head}");
    // It did not reach the function, which still serves.
    assert_eq!(dev.call("small", "/").unwrap().0, 200);
    let served = metric(
        dev.admin,
        flint_api::metrics::REQUESTS_TOTAL,
        &["revision=\"small-00001\""],
    );
    assert_eq!(served, 1.0);
}

#[test]
fn an_oversized_uri_gets_414() {
    let dir = temp_dir("fault-long-uri");
    write_fault_function(&dir, "small", "hi", &[], "  scale: {initial: 1}\n");
    let dev = Dev::start(&dir);
    dev.wait_output(WAIT, "default/small-00001  replica 1 ready");
    // Above the gateway's URI limit (8 KiB), below its head buffer (64 KiB).
    let big = "x".repeat(16 * 1024);
    let (status, head, _) = exchange(
        dev.gateway,
        format!("GET /function/default/small/?q={big} HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status, 414, "{head}");
}
