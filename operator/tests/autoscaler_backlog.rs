//! Table tests of the asynchronous backlog in `decide_with_backlog()`: a
//! driver feeds one sample per second, sets the pending count per second and
//! decides every 2 s, with the actuator assumed instant (ready = the previous
//! decision).

use std::time::Duration;

use flint_api::ScaleSpec;
use flint_operator::autoscaler::{
    Backlog, BacklogRoute, DecideConfig, Observation, Reason, Sample, ScaleState, Window, decide,
    decide_with_backlog,
};

/// The Function's `async.maxInFlight` in these tests.
const MAX_IN_FLIGHT: u32 = 64;

struct Run {
    spec: ScaleSpec,
    cfg: DecideConfig,
    window: Window,
    state: ScaleState,
    now: u64,
    /// The revision's share of the traffic, in percent.
    percent: u32,
    /// (time, desired, reason) of every decision.
    log: Vec<(u64, u32, Reason)>,
}

impl Run {
    fn new(spec: ScaleSpec) -> Self {
        let window = Window::new(spec.stable_window.as_std());
        let state = ScaleState::new(&spec, Duration::ZERO);
        Self {
            spec,
            cfg: DecideConfig::default(),
            window,
            state,
            now: 0,
            percent: 100,
            log: Vec::new(),
        }
    }

    /// `secs` seconds of concurrency `load` (None: the metrics source is
    /// down) with `pending` invocations queued for the Function.
    fn run(&mut self, secs: u64, load: Option<f64>, pending: u64) -> &mut Self {
        for _ in 0..secs {
            self.now += 1;
            if let Some(c) = load {
                self.window.push(Sample {
                    at: Duration::from_secs(self.now),
                    concurrency: c,
                    rps: c,
                });
            }
            if self.now.is_multiple_of(2) {
                self.decide(pending);
            }
        }
        self
    }

    fn backlog(&self, pending: u64) -> Backlog {
        Backlog {
            pending,
            max_in_flight: MAX_IN_FLIGHT,
            percent: self.percent,
        }
    }

    fn decide(&mut self, pending: u64) -> (u32, Reason) {
        let obs = Observation {
            ready: self.state.desired,
            poke: None,
        };
        let d = decide_with_backlog(
            &self.spec,
            &self.cfg,
            &self.window,
            obs,
            self.backlog(pending),
            Duration::from_secs(self.now),
            self.state.clone(),
        );
        self.state = d.state;
        self.log.push((self.now, d.desired, d.reason));
        (d.desired, d.reason)
    }

    fn last(&self) -> (u32, Reason) {
        let &(_, d, r) = self.log.last().unwrap();
        (d, r)
    }

    fn since(&self, t: u64) -> impl Iterator<Item = &(u64, u32, Reason)> {
        self.log.iter().filter(move |e| e.0 > t)
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
    for pending_share in [Backlog::NONE, Run::new(spec()).backlog(0)] {
        let mut with = Run::new(spec());
        let mut without = Run::new(spec());
        for &(secs, load) in &script {
            for _ in 0..secs {
                for r in [&mut with, &mut without] {
                    r.now += 1;
                    if let Some(c) = load {
                        r.window.push(Sample {
                            at: Duration::from_secs(r.now),
                            concurrency: c,
                            rps: c,
                        });
                    }
                }
                if with.now.is_multiple_of(2) {
                    let now = Duration::from_secs(with.now);
                    let obs = |r: &Run| Observation {
                        ready: r.state.desired,
                        poke: None,
                    };
                    let a = decide_with_backlog(
                        &with.spec,
                        &with.cfg,
                        &with.window,
                        obs(&with),
                        pending_share,
                        now,
                        with.state.clone(),
                    );
                    let b = decide(
                        &without.spec,
                        &without.cfg,
                        &without.window,
                        obs(&without),
                        now,
                        without.state.clone(),
                    );
                    assert_eq!(a, b, "t={}", with.now);
                    with.state = a.state;
                    without.state = b.state;
                    with.log.push((with.now, a.desired, a.reason));
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
        let mut r = Run::new(spec());
        r.run(20, load, 0);
        // At zero: decided to zero with samples, held (no data) while blind.
        let idle = if load.is_some() {
            Reason::ScaleToZero
        } else {
            Reason::NoData
        };
        assert_eq!(r.last(), (0, idle));
        r.run(2, load, 1);
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
        let mut r = Run::new(ScaleSpec { max: 100, ..spec() });
        r.run(2, Some(0.0), pending);
        assert_eq!(r.last(), (want, Reason::Backlog), "pending {pending}");
    }
}

#[test]
fn the_backlog_is_clamped_by_max() {
    let mut r = Run::new(ScaleSpec { max: 3, ..spec() });
    r.run(2, Some(0.0), 1000);
    assert_eq!(r.last(), (3, Reason::Bounds));
    // Blind, too.
    let mut r = Run::new(ScaleSpec { max: 3, ..spec() });
    r.run(2, None, 1000);
    assert_eq!(r.last(), (3, Reason::Backlog));
}

#[test]
fn request_demand_above_the_backlog_wins() {
    // Concurrency 95 → 10 replicas; the backlog alone would want 7.
    let mut r = Run::new(ScaleSpec { max: 100, ..spec() });
    r.run(120, Some(95.0), 1000);
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
            let mut r = Run::new(ScaleSpec { max: 100, ..spec() });
            r.percent = share.percent;
            r.run(2, Some(0.0), pending);
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
    let mut r = Run::new(ScaleSpec {
        scale_to_zero_grace_period: flint_api::Duration::from_secs(30),
        ..spec()
    });
    r.run(10, Some(20.0), 0);
    let start = r.now;
    r.run(600, Some(0.0), 3);
    assert_eq!(r.since(start).count(), 300);
    for &(t, d, reason) in r.since(start) {
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
        let mut r = Run::new(ScaleSpec {
            max: 100,
            scale_to_zero_grace_period: flint_api::Duration::from_secs(grace),
            ..spec()
        });
        r.run(120, Some(0.0), 1000);
        assert_eq!(r.last(), (7, Reason::Backlog));
        let gone = r.now;
        r.run(grace + 60, Some(0.0), 0);
        let after: Vec<(u64, u32, Reason)> = r.since(gone).copied().collect();
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
