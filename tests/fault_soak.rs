//! Soak: mixed load on several functions in `flint dev`, with random bursts
//! and pauses that scale them up, down and to zero, and random changes to
//! their scale bounds. No request may fail and `flint dev`'s memory must
//! not grow beyond a bound. `FLINT_SOAK_SECONDS` sets the length (default
//! 40 s; the full soak is `FLINT_SOAK_SECONDS=600`).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Dev, get, rss_kib, temp_dir, write_atomic, write_fault_function};

/// A small deterministic generator (xorshift64*), so a failing run can be
/// replayed with the same seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

const FUNCTIONS: [&str; 3] = ["alpha", "beta", "gamma"];

fn scale(max: u64) -> String {
    format!(
        "  concurrency: 4\n  scale: {{initial: 0, max: {max}, target: 2, targetUtilization: 100, stableWindow: 6s, scaleToZeroGracePeriod: 2s}}\n"
    )
}

#[test]
fn soak_mixed_load_with_random_scale_events_has_no_error_and_bounded_memory() {
    let seconds: u64 = std::env::var("FLINT_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("FLINT_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let dir = temp_dir("soak");
    for f in FUNCTIONS {
        write_fault_function(&dir, f, f, &[], &scale(4));
    }
    let dev = Dev::start(&dir);
    let end = Instant::now() + Duration::from_secs(seconds);
    let stop = Arc::new(AtomicBool::new(false));
    // (function, status, body) of every request that did not answer 200.
    let failures: Arc<Mutex<Vec<(String, u16, String)>>> = Arc::default();
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clients: Vec<_> = (0..6u64)
        .map(|c| {
            let (stop, failures, served, gateway) =
                (stop.clone(), failures.clone(), served.clone(), dev.gateway);
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (c + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                while !stop.load(Ordering::Relaxed) {
                    // A burst of requests on one function, then a pause that
                    // is sometimes long enough for it to go to zero.
                    let f = FUNCTIONS[rng.below(3) as usize];
                    let burst = 5 + rng.below(40);
                    for _ in 0..burst {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let path = format!("/function/default/{f}/?ms={}", rng.below(60));
                        match get(gateway, "localhost", &path) {
                            Ok((200, _)) => {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((status, body)) => {
                                failures.lock().unwrap().push((f.to_owned(), status, body))
                            }
                            Err(e) => {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push((f.to_owned(), 0, e.to_string()))
                            }
                        }
                    }
                    let pause = if rng.below(4) == 0 {
                        9000
                    } else {
                        rng.below(500)
                    };
                    let until = Instant::now() + Duration::from_millis(pause);
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        })
        .collect();
    // Random changes to the scale bounds (not new revisions) every few seconds.
    let mut rng = Rng(seed);
    let mut rss = Vec::new();
    let warm = Instant::now() + Duration::from_secs(seconds / 4);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1000 + rng.below(3000)));
        let f = FUNCTIONS[rng.below(3) as usize];
        let path = dir.join(f).join("function.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let (head, _) = text.split_once("  concurrency:").unwrap();
        write_atomic(&path, &format!("{head}{}", scale(1 + rng.below(4))));
        if Instant::now() >= warm {
            rss.push(rss_kib(dev.child.id()));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert_eq!(*failures, Vec::new(), "{}", dev.output());
    let served = served.load(Ordering::Relaxed);
    assert!(served >= seconds * 10, "only {served} requests served");
    let out = dev.output();
    assert!(out.contains("(scaled to zero)"), "no scale to zero:\n{out}");
    assert!(
        !out.contains("-00002"),
        "a scale change must not cut a revision:\n{out}"
    );
    // Memory after the warm-up quarter: the last sample within 16 MiB of the first.
    let (first, last) = (rss[0], rss[rss.len() - 1]);
    assert!(
        last <= first + 16 * 1024,
        "RSS grew from {first} KiB to {last} KiB: {rss:?}"
    );
    eprintln!("soak: {served} requests over {seconds}s, RSS KiB {rss:?}");
}
