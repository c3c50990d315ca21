//! Faults around scaling, end to end in `flint dev` (the real binary, real
//! processes, loopback sockets): replicas removed while they serve
//! requests, a new revision rolled under load while it is still starting,
//! and the autoscaler's metrics source going away and coming back.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use support::{Dev, free_port, get, metric, pids_in, temp_dir, write_atomic, write_fault_function};

const WAIT: Duration = Duration::from_secs(60);

/// Outcomes of a load run: (status or 0 for an I/O error, body), in order.
type Outcomes = Arc<Mutex<Vec<(u16, String)>>>;

/// `clients` threads calling `path` on `function` back to back until `stop`.
fn load(
    dev: &Dev,
    function: &str,
    path: &str,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> (Outcomes, Vec<JoinHandle<()>>) {
    let outcomes: Outcomes = Arc::default();
    let threads = (0..clients)
        .map(|_| {
            let (stop, outcomes, gateway) = (stop.clone(), outcomes.clone(), dev.gateway);
            let path = format!("/function/default/{function}{path}");
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let outcome = get(gateway, "localhost", &path).unwrap_or((0, String::new()));
                    outcomes.lock().unwrap().push(outcome);
                }
            })
        })
        .collect();
    (outcomes, threads)
}

/// Stops the load and returns (successes, every other outcome).
fn finish(
    stop: &AtomicBool,
    threads: Vec<JoinHandle<()>>,
    outcomes: &Outcomes,
) -> (usize, Vec<(u16, String)>) {
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let all = outcomes.lock().unwrap();
    let ok = all.iter().filter(|(s, _)| *s == 200).count();
    let failed = all.iter().filter(|(s, _)| *s != 200).cloned().collect();
    (ok, failed)
}

#[test]
fn scaling_down_while_every_replica_serves_a_request_fails_none() {
    // Four clients keep a 1 s request on each of four replicas; lowering
    // scale.max to 1 (not a new revision) makes the autoscaler remove three
    // replicas while each still serves a request: those must drain.
    let dir = temp_dir("fault-scale-down");
    let scale =
        "  scale: {initial: 1, max: MAX, target: 1, targetUtilization: 100, stableWindow: 6s}\n";
    write_fault_function(&dir, "shrink", "hi", &[], &scale.replace("MAX", "4"));
    let dev = Dev::start(&dir);
    dev.wait_output(WAIT, "default/shrink-00001  replica 1 ready");
    let stop = Arc::new(AtomicBool::new(false));
    let (outcomes, threads) = load(&dev, "shrink", "/?ms=1000", 4, &stop);
    dev.wait_for(WAIT, "4 replicas", || pids_in(&dir).len() == 4);
    let manifest = dir.join("shrink/function.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    write_atomic(&manifest, &text.replace("max: 4", "max: 1"));
    dev.wait_for(WAIT, "1 replica", || pids_in(&dir).len() == 1);
    // A few more rounds on the one replica that is left.
    std::thread::sleep(Duration::from_secs(2));
    let (ok, failed) = finish(&stop, threads, &outcomes);
    assert_eq!(failed, Vec::new(), "{}", dev.output());
    assert!(ok >= 8, "only {ok} requests completed");
    assert!(
        !dev.output().contains("shrink-00002"),
        "a scale change must not cut a revision:\n{}",
        dev.output()
    );
    // Three replicas left while serving, and each was stopped, not crashed.
    let out = dev.output();
    assert_eq!(
        out.matches("stop     default/shrink-00001").count(),
        3,
        "{out}"
    );
    assert_eq!(
        out.matches("crash    default/shrink-00001").count(),
        0,
        "{out}"
    );
}

#[test]
fn a_revision_rolled_under_load_takes_traffic_only_once_ready() {
    // The new revision needs 3 s before it listens. Had traffic moved to it
    // before it was ready, requests would have waited for it: the gateway
    // counts each such wait as a cold start of that revision.
    let dir = temp_dir("fault-rollout");
    write_fault_function(&dir, "roll", "v1", &[], "  scale: {initial: 1}\n");
    let dev = Dev::start(&dir);
    dev.wait_output(WAIT, "default/roll-00001  replica 1 ready");
    let stop = Arc::new(AtomicBool::new(false));
    let (outcomes, threads) = load(&dev, "roll", "/?ms=20", 4, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let manifest = dir.join("roll/function.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "value: \"v1\"}",
        "value: \"v2\"}, {name: START_DELAY_MS, value: \"3000\"}",
    );
    write_atomic(&manifest, &text);
    dev.wait_output(WAIT, "traffic default/roll: 100% roll-00002");
    let v2_answers = || {
        outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, b)| b.starts_with("v2 "))
            .count()
    };
    dev.wait_for(WAIT, "answers from v2", || v2_answers() >= 20);
    let (ok, failed) = finish(&stop, threads, &outcomes);
    assert_eq!(failed, Vec::new(), "{}", dev.output());
    let all = outcomes.lock().unwrap();
    // Answers move from v1 to v2 once, and never back.
    let first_v2 = all.iter().position(|(_, b)| b.starts_with("v2 ")).unwrap();
    assert!(all[..first_v2].iter().all(|(_, b)| b.starts_with("v1 ")));
    let late_v1 = all[first_v2..]
        .iter()
        .filter(|(_, b)| b.starts_with("v1 "))
        .count();
    // Up to one request per client was already on its way to v1.
    assert!(
        late_v1 <= 4,
        "{late_v1} v1 answers after the first v2 answer"
    );
    assert_eq!(ok, all.len());
    let waited = metric(
        dev.admin,
        flint_api::metrics::COLD_STARTS_TOTAL,
        &["revision=\"roll-00002\""],
    );
    assert_eq!(waited, 0.0, "requests waited for the starting revision");
}

/// A stand-in for the autoscaler's metrics source: forwards `GET` to the
/// real `/metrics` of `flint dev`'s admin port while `up`, and closes every
/// connection unanswered while not.
fn metrics_relay(port: u16, admin_port: u16, up: Arc<AtomicBool>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if !up.load(Ordering::Relaxed) {
                continue; // dropped: the scrape fails
            }
            let mut head = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while reader.read_line(&mut head).is_ok_and(|n| n > 2) {
                if head.ends_with("\r\n\r\n") {
                    break;
                }
            }
            let admin = ([127, 0, 0, 1], admin_port).into();
            let Ok((200, body)) = get(admin, "localhost", "/metrics") else {
                continue;
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

#[test]
fn with_the_metrics_source_down_nothing_scales_to_zero_until_it_returns() {
    let dir = temp_dir("fault-metrics-down");
    write_fault_function(
        &dir,
        "kept",
        "hi",
        &[],
        "  scale: {initial: 1, stableWindow: 6s, scaleToZeroGracePeriod: 2s}\n",
    );
    let (relay, admin) = (free_port(), free_port());
    let up = Arc::new(AtomicBool::new(false));
    metrics_relay(relay, admin, up.clone());
    let url = format!("http://127.0.0.1:{relay}/metrics");
    let dev = Dev::start_with(&dir, admin, &[], &[("FLINT_DEV_METRICS_URL", &url)]);
    dev.wait_output(WAIT, "default/kept-00001  replica 1 ready");
    assert_eq!(dev.call("kept", "/").unwrap().0, 200);
    // Idle for longer than the stable window and the grace period together:
    // with a working source it would be at zero by now (as below).
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(pids_in(&dir).len(), 1, "{}", dev.output());
    assert!(!dev.output().contains("scaled to zero"), "{}", dev.output());
    let (status, autoscaler) = get(dev.admin, "localhost", "/metrics/autoscaler").unwrap();
    assert_eq!(status, 200);
    let errors = autoscaler
        .lines()
        .filter(|l| l.starts_with(flint_api::metrics::METRICS_SOURCE_ERRORS_TOTAL))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>();
    assert!(errors > 0.0, "no scrape failed:\n{autoscaler}");
    // The source returns: decisions resume and the idle function goes to zero.
    up.store(true, Ordering::Relaxed);
    dev.wait_output(
        WAIT,
        "scale    default/kept-00001  1 -> 0  (scaled to zero)",
    );
    dev.wait_for(WAIT, "the process to be gone", || pids_in(&dir).is_empty());
    assert_eq!(dev.call("kept", "/").unwrap().0, 200);
}
