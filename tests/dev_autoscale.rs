//! The autoscaler end to end in `flint dev`: real processes under real load
//! scale to the predicted count, back to zero after the grace period, and a
//! burst from zero is served without an error.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::{Dev, pids_in, temp_dir, write_function};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn idle_function_returns_to_zero_after_the_grace_period() {
    let dir = temp_dir("to-zero");
    write_function(
        &dir,
        "idle",
        "hi",
        "  scale: {initial: 0, stableWindow: 6s, scaleToZeroGracePeriod: 3s}\n",
    );
    let dev = Dev::start(&dir);
    assert_eq!(dev.call("idle", "/").unwrap().0, 200);
    assert_eq!(pids_in(&dir).len(), 1);
    dev.wait_output(
        WAIT,
        "scale    default/idle-00001  1 -> 0  (scaled to zero)",
    );
    dev.wait_for(Duration::from_secs(20), "the process to be gone", || {
        pids_in(&dir).is_empty()
    });
    // And it comes back on the next request.
    assert_eq!(dev.call("idle", "/").unwrap().0, 200);
}

#[test]
fn constant_load_scales_to_the_predicted_replica_count() {
    // 4 clients each keep one 300 ms request in flight: average concurrency 4;
    // target 1 at 100% utilisation predicts ceil(4 / 1) = 4 replicas.
    let dir = temp_dir("steady");
    write_function(
        &dir,
        "busy",
        "hi",
        "  scale: {initial: 1, max: 10, target: 1, targetUtilization: 100, stableWindow: 6s, scaleToZeroGracePeriod: 5s}\n",
    );
    let dev = Dev::start(&dir);
    dev.wait_output(WAIT, "default/busy-00001  replica 1 ready");
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, errors, gateway) = (stop.clone(), errors.clone(), dev.gateway);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match support::get(gateway, "localhost", "/function/default/busy/slow?ms=300") {
                        Ok((200, _)) => {}
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    dev.wait_for(WAIT, "4 replicas", || pids_in(&dir).len() == 4);
    // It stays there: a stable window later, still exactly the prediction.
    std::thread::sleep(Duration::from_secs(7));
    let steady = pids_in(&dir).len();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(steady, 4, "{}", dev.output());
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    // Load gone: back to zero after the grace period.
    dev.wait_for(WAIT, "scale to zero", || pids_in(&dir).is_empty());
}

#[test]
fn a_burst_from_zero_is_served_without_errors() {
    let dir = temp_dir("burst");
    write_function(
        &dir,
        "bursty",
        "hi",
        "  concurrency: 10\n  scale: {initial: 0, max: 10, target: 10}\n",
    );
    let dev = Dev::start(&dir);
    assert!(pids_in(&dir).is_empty());
    let ok = Arc::new(AtomicUsize::new(0));
    let burst: Vec<_> = (0..200)
        .map(|_| {
            let (ok, gateway) = (ok.clone(), dev.gateway);
            std::thread::spawn(move || {
                if let Ok((200, _)) =
                    support::get(gateway, "localhost", "/function/default/bursty/slow?ms=50")
                {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in burst {
        t.join().unwrap();
    }
    assert_eq!(ok.load(Ordering::Relaxed), 200, "{}", dev.output());
    assert!(dev.output().contains("cold     default/bursty-00001"));
}
