//! Table tests of the asynchronous backlog in `decide()`: the
//! scenario driver feeds one sample per second, with a pending count set per
//! run (0 until set), and decides every 2 s, with the actuator assumed
//! instant (ready = the previous decision).

#[path = "support/scenario.rs"]
mod scenario;

use std::time::Duration;

use flint_api::ScaleSpec;
use flint_operator::autoscaler::{Backlog, BacklogRoute, Observation, Reason, decide};
use scenario::Scenario;

/// The Function's `async.maxInFlight` in these tests.
const MAX_IN_FLIGHT: u32 = 64;

/// The backlog of a revision at `percent` of the Function's traffic.
fn backlog(pending: u64, percent: u32) -> Backlog {
    Backlog {
        pending,
        max_in_flight: MAX_IN_FLIGHT,
        percent,
    }
}

/// The scenario driver deciding with the backlog (these tests only).
impl Scenario {
    /// Decides with a backlog observed, for a revision at `percent` of
    /// the traffic, nothing pending yet.
    fn with_backlog(spec: ScaleSpec, percent: u32) -> Self {
        let mut r = Scenario::new(spec);
        r.backlog = Some(backlog(0, percent));
        r
    }

    /// Sets the invocations queued for the Function from now on.
    fn pending(&mut self, pending: u64) -> &mut Self {
        self.backlog.as_mut().unwrap().pending = pending;
        self
    }
}

/// Target 10 per replica at 100% utilization, starting at zero.
fn spec() -> ScaleSpec {
    ScaleSpec {
        initial: 0,
        target: 10,
        target_utilization: 100,
        ..ScaleSpec::default()
    }
}

#[test]
fn zero_pending_decides_exactly_as_without_a_backlog() {
    // Idle, a load ramp, a spike, a metrics outage, then quiet to zero.
    let script: [(u64, Option<f64>); 6] = [
        (20, Some(0.0)),
        (60, Some(35.0)),
        (10, Some(200.0)),
        (8, None),
        (30, Some(12.0)),
        (150, Some(0.0)),
    ];
    for pending_share in [Backlog::NONE, backlog(0, 100)] {
        let mut with = Scenario::new(spec());
        let mut without = Scenario::new(spec());
        for &(secs, load) in &script {
            for _ in 0..secs {
                with.tick(load);
                without.tick(load);
                if with.now.is_multiple_of(2) {
                    let now = Duration::from_secs(with.now);
                    let obs = |r: &Scenario, backlog| Observation {
                        ready: r.state.desired,
                        poke: None,
                        backlog,
                    };
                    let a = decide(
                        &with.spec,
                        &with.cfg,
                        &with.window,
                        obs(&with, pending_share),
                        now,
                        with.state.clone(),
                    );
                    let b = decide(
                        &without.spec,
                        &without.cfg,
                        &without.window,
                        obs(&without, Backlog::NONE),
                        now,
                        without.state.clone(),
                    );
                    assert_eq!(a, b, "t={}", with.now);
                    with.state = a.state;
                    without.state = b.state;
                    with.log
                        .push((with.now, a.desired, a.reason, with.state.panicking()));
                }
            }
        }
        // The script does exercise scaling: up, and back to zero.
        assert!(with.log.iter().any(|e| e.1 >= 4), "{:?}", with.log);
        assert_eq!(with.last(), (0, Reason::ScaleToZero));
    }
}

#[test]
fn pending_at_zero_wakes_the_revision_to_one() {
    // With samples (no request traffic) and with the metrics source blind.
    for load in [Some(0.0), None] {
        let mut r = Scenario::with_backlog(spec(), 100);
        r.run(20, load);
        // At zero: decided to zero with samples, held (no data) while blind.
        let idle = if load.is_some() {
            Reason::ScaleToZero
        } else {
            Reason::NoData
        };
        assert_eq!(r.last(), (0, idle));
        r.pending(1).run(2, load);
        assert_eq!(r.last(), (1, Reason::Backlog), "load {load:?}");
    }
}

#[test]
fn a_thousand_pending_with_max_in_flight_64_and_target_10_want_7() {
    // (pending, expected replicas): ceil(min(pending, 64) / 10).
    let table = [
        (1000, 7),
        (64, 7),
        (61, 7),
        (60, 6),
        (10, 1),
        (11, 2),
        (1, 1),
    ];
    for (pending, want) in table {
        let mut r = Scenario::with_backlog(ScaleSpec { max: 100, ..spec() }, 100);
        r.pending(pending).run(2, Some(0.0));
        assert_eq!(r.last(), (want, Reason::Backlog), "pending {pending}");
    }
}

#[test]
fn the_backlog_is_clamped_by_max() {
    let mut r = Scenario::with_backlog(ScaleSpec { max: 3, ..spec() }, 100);
    r.pending(1000).run(2, Some(0.0));
    assert_eq!(r.last(), (3, Reason::Bounds));
    // Blind, too.
    let mut r = Scenario::with_backlog(ScaleSpec { max: 3, ..spec() }, 100);
    r.pending(1000).run(2, None);
    assert_eq!(r.last(), (3, Reason::Backlog));
}

#[test]
fn request_demand_above_the_backlog_wins() {
    // Concurrency 95 → 10 replicas; the backlog alone would want 7.
    let mut r = Scenario::with_backlog(ScaleSpec { max: 100, ..spec() }, 100);
    r.pending(1000).run(120, Some(95.0));
    assert_eq!(r.last(), (10, Reason::Stable));
}

#[test]
fn a_50_50_split_shares_the_backlog_between_both_revisions() {
    let route = BacklogRoute {
        max_in_flight: MAX_IN_FLIGHT,
        traffic: vec![("hello-00002".into(), 50), ("hello-00001".into(), 50)],
    };
    // (pending, replicas of each revision): 64 running, 32 on each → 4;
    // a single pending invocation may land on either → 1 each.
    for (pending, want) in [(1000, 4), (30, 2), (1, 1), (0, 0)] {
        for revision in ["hello-00002", "hello-00001"] {
            let share = route.backlog(pending, revision);
            assert_eq!(share.percent, 50);
            let mut r = Scenario::with_backlog(ScaleSpec { max: 100, ..spec() }, share.percent);
            r.pending(pending).run(2, Some(0.0));
            let reason = if want == 0 {
                Reason::ScaleToZero
            } else {
                Reason::Backlog
            };
            assert_eq!(r.last(), (want, reason), "{revision}, pending {pending}");
        }
    }
    // A revision out of the split gets nothing.
    assert_eq!(route.backlog(1000, "hello-00003").replicas(10.0), 0);
}

#[test]
fn a_backlog_blocks_scale_to_zero() {
    // Invocations waiting for a retry: no request in flight, but pending.
    let mut r = Scenario::with_backlog(
        ScaleSpec {
            scale_to_zero_grace_period: flint_api::Duration::from_secs(30),
            ..spec()
        },
        100,
    );
    r.run(10, Some(20.0));
    let start = r.now;
    r.pending(3).run(600, Some(0.0));
    assert_eq!(r.since(start).count(), 300);
    for &(t, d, reason, _) in r.since(start) {
        assert!(d >= 1, "scaled to zero at t={t} with a backlog");
        if t > start + 70 {
            // The requests have left the stable window: the backlog holds one.
            assert_eq!((d, reason), (1, Reason::Backlog), "t={t}");
        }
    }
}

#[test]
fn when_the_backlog_is_gone_scale_down_follows_after_the_grace_period() {
    for grace in [30u64, 90] {
        let mut r = Scenario::with_backlog(
            ScaleSpec {
                max: 100,
                scale_to_zero_grace_period: flint_api::Duration::from_secs(grace),
                ..spec()
            },
            100,
        );
        r.pending(1000).run(120, Some(0.0));
        assert_eq!(r.last(), (7, Reason::Backlog));
        let gone = r.now;
        r.pending(0).run(grace + 60, Some(0.0));
        let after: Vec<(u64, u32, Reason)> = r
            .since(gone)
            .map(|&(t, d, reason, _)| (t, d, reason))
            .collect();
        // Halving per decision (the max scale-down rate), then the last
        // replica is kept until the grace period since the last backlog ends.
        assert_eq!(after[0], (gone + 2, 3, Reason::Stable));
        assert_eq!(after[1], (gone + 4, 1, Reason::Stable));
        let zero = after.iter().position(|e| e.1 == 0).unwrap();
        assert_eq!(after[zero], (gone + grace, 0, Reason::ScaleToZero));
        assert!(after[2..zero].iter().all(|e| e.1 == 1), "{after:?}");
        assert!(after[zero..].iter().all(|e| e.1 == 0), "{after:?}");
    }
}
