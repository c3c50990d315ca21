//! Table tests of `decide()` against Knative KPA behaviour: a driver feeds one
//! sample per second and decides every 2 s, with the actuator assumed instant
//! (ready = the previous decision).

#[path = "support/scenario.rs"]
mod scenario;

use std::time::Duration;

use flint_api::{KeepAlive, ScaleSpec};
use flint_operator::autoscaler::Reason;
use scenario::Scenario;

fn spec() -> ScaleSpec {
    ScaleSpec::default()
}

#[test]
fn steady_load_scales_to_ceil_of_concurrency_over_target() {
    // target 100 × 70% = 70 per replica.
    for (load, want) in [
        (1.0, 1),
        (70.0, 1),
        (70.5, 2),
        (140.0, 2),
        (350.0, 5),
        (351.0, 6),
        (700.0, 10),
        (6999.0, 100),
        (10_000.0, 100),
    ] {
        let mut r = Scenario::new(spec());
        r.run(300, Some(load));
        let (desired, reason) = r.last();
        assert_eq!(desired, want, "load {load}");
        let expected_reason = if want == 100 && load > 7000.0 {
            Reason::Bounds
        } else {
            Reason::Stable
        };
        assert_eq!(reason, expected_reason, "load {load}");
        assert!(!r.state.panicking(), "load {load}");
    }
}

#[test]
fn rps_metric_uses_the_rps_signal() {
    let mut r = Scenario::new(ScaleSpec {
        metric: flint_api::ScaleMetric::Rps,
        target: 10,
        target_utilization: 100,
        ..spec()
    });
    r.run(300, Some(45.0));
    assert_eq!(r.last(), (5, Reason::Stable));
}

#[test]
fn triple_spike_panics_within_the_panic_window_and_scales_up_at_once() {
    let mut r = Scenario::new(spec());
    r.run(300, Some(350.0));
    assert_eq!(r.last(), (5, Reason::Stable));
    let spike = r.now;
    r.run(20, Some(1050.0));
    let first_panic = r.since(spike).find(|e| e.3).copied().unwrap();
    // Panic window: 10% of 60 s.
    assert!(
        first_panic.0 <= spike + 6,
        "entered panic at {first_panic:?}"
    );
    assert_eq!(first_panic.2, Reason::Panic);
    // At once: the panic decision already scales beyond the stable estimate
    // (which is still 6), without waiting for the stable window.
    assert!(first_panic.1 >= 10, "{first_panic:?}");
    assert_eq!(r.last(), (15, Reason::Panic));
}

#[test]
fn panic_never_scales_down_and_exits_after_a_stable_window() {
    let mut r = Scenario::new(spec());
    r.run(300, Some(350.0));
    let spike = r.now;
    r.run(10, Some(1050.0));
    assert_eq!(r.last(), (15, Reason::Panic));
    let entered = r.since(spike).find(|e| e.3).unwrap().0;
    let drop = r.now;
    r.run(150, Some(350.0));
    let mut prev = 15;
    let mut exited_at = None;
    for &(t, d, reason, panicking) in r.since(drop) {
        if panicking {
            assert_eq!((d, reason), (15, Reason::Panic), "t={t}");
        } else if exited_at.is_none() {
            exited_at = Some(t);
        }
        if exited_at.is_none() {
            assert!(d >= prev, "scaled down in panic at t={t}");
        }
        prev = d;
    }
    let exited_at = exited_at.unwrap();
    // Demand last crossed the threshold (2 × ready) before the drop, while
    // replicas were still coming up; panic ends one stable window (60 s)
    // after that, not before.
    assert!(
        exited_at >= entered + 60,
        "entered {entered}, exited {exited_at}"
    );
    assert!(exited_at <= drop + 60 + 2, "exited at {exited_at}");
    assert_eq!(r.last(), (5, Reason::Stable), "{:?}", r.log.last());
}

#[test]
fn traffic_stop_reaches_zero_only_after_the_grace_period() {
    for grace in [30u64, 90, 600] {
        let mut r = Scenario::new(ScaleSpec {
            scale_to_zero_grace_period: flint_api::Duration::from_secs(grace),
            ..spec()
        });
        r.run(120, Some(20.0));
        let stop = r.now;
        r.run(grace + 60, Some(0.0));
        let zero_at = r.since(stop).find(|e| e.1 == 0).copied().unwrap();
        for &(t, d, _, _) in r.since(stop).filter(|e| e.0 < stop + grace) {
            assert_eq!(d, 1, "grace {grace}: scaled to {d} at t={t}");
        }
        assert_eq!(zero_at.2, Reason::ScaleToZero);
        assert!(zero_at.0 >= stop + grace, "grace {grace}: {zero_at:?}");
        assert!(zero_at.0 <= stop + grace + 2, "grace {grace}: {zero_at:?}");
    }
}

#[test]
fn scale_down_is_rate_limited_to_half_per_decision() {
    let mut r = Scenario::new(ScaleSpec {
        stable_window: flint_api::Duration::from_secs(6),
        ..spec()
    });
    r.run(60, Some(1400.0));
    assert_eq!(r.last().0, 20);
    let drop = r.now;
    r.run(20, Some(10.0));
    let seq: Vec<u32> = r.since(drop).map(|e| e.1).collect();
    // Unbounded, the 6-second average would give 14, 7, 1: the last steps
    // are held to half of the replicas before.
    assert_eq!(&seq[..5], &[14, 7, 3, 1, 1], "{seq:?}");
    for pair in seq.windows(2) {
        assert!(pair[1] >= pair[0] / 2, "{seq:?}");
    }
}

#[test]
fn min_and_max_are_respected() {
    let mut r = Scenario::new(ScaleSpec {
        max: 3,
        initial: 1,
        ..spec()
    });
    r.run(120, Some(700.0));
    assert_eq!(r.last(), (3, Reason::Bounds));

    let mut r = Scenario::new(ScaleSpec {
        min: 2,
        initial: 2,
        ..spec()
    });
    r.run(600, Some(0.0));
    assert_eq!(r.last(), (2, Reason::Bounds));
    assert!(r.log.iter().all(|e| e.1 >= 2));
}

#[test]
fn metrics_outage_holds_the_current_scale_and_never_reaches_zero() {
    let mut r = Scenario::new(spec());
    r.run(120, Some(350.0));
    assert_eq!(r.last().0, 5);
    let outage = r.now;
    r.run(3600, None);
    for &(t, d, reason, _) in r.since(outage + 6) {
        assert_eq!((d, reason), (5, Reason::NoData), "t={t}");
    }
    // Recovery with no traffic: the idleness is counted from the end of the
    // outage, so zero comes one grace period later, not at once.
    let back = r.now;
    r.run(100, Some(0.0));
    let zero_at = r.since(back).find(|e| e.1 == 0).unwrap().0;
    assert!(zero_at >= back + 30, "zero at {zero_at}, back at {back}");
    assert!(r.since(back).all(|e| e.1 >= 1 || e.0 >= back + 30));
}

#[test]
fn a_revision_at_zero_stays_at_zero_when_data_arrives_after_a_blind_start() {
    // A new revision at zero: the source needs two scrapes before it has a
    // rate, so the first decisions are blind. When data arrives, showing no
    // traffic, nothing may wake up: only a request (a poke) brings it up.
    let mut r = Scenario::new(ScaleSpec {
        initial: 0,
        ..spec()
    });
    r.run(10, None);
    r.run(120, Some(0.0));
    assert!(r.log.iter().all(|e| e.1 == 0), "{:?}", r.log);
    assert_eq!(r.decide(Some(1)), (1, Reason::Poke));
}

#[test]
fn stale_samples_count_as_an_outage() {
    let mut r = Scenario::new(spec());
    r.run(100, Some(70.0));
    // The window still holds samples, but the newest is older than 5 s.
    r.now += 7;
    assert_eq!(r.decide(None), (1, Reason::NoData));
}

#[test]
fn poke_scales_from_zero_at_once_sized_by_waiting_requests() {
    for (waiting, want) in [(1, 1), (70, 1), (71, 2), (300, 5)] {
        let mut r = Scenario::new(ScaleSpec {
            initial: 0,
            ..spec()
        });
        r.run(120, Some(0.0));
        assert_eq!(r.last(), (0, Reason::ScaleToZero));
        r.now += 1;
        assert_eq!(
            r.decide(Some(waiting)),
            (want, Reason::Poke),
            "waiting {waiting}"
        );
        // A second poke of the same cold start changes nothing.
        assert_eq!(r.decide(Some(waiting)).0, want);
        // The next tick, before the request shows up in the metrics, keeps it.
        r.run(2, Some(0.0));
        assert_eq!(r.last().0, want, "{:?}", &r.log[r.log.len() - 3..]);
    }
}

#[test]
fn poke_during_a_metrics_outage_still_scales_from_zero() {
    let mut r = Scenario::new(ScaleSpec {
        initial: 0,
        ..spec()
    });
    r.run(100, Some(0.0));
    assert_eq!(r.last().0, 0);
    r.run(30, None);
    assert_eq!(r.last(), (0, Reason::NoData));
    assert_eq!(r.decide(Some(2)), (1, Reason::Poke));
}

#[test]
fn scale_down_delay_holds_the_trailing_maximum() {
    let mut r = Scenario::new(ScaleSpec {
        stable_window: flint_api::Duration::from_secs(6),
        scale_down_delay: flint_api::Duration::from_secs(30),
        ..spec()
    });
    r.run(60, Some(700.0));
    assert_eq!(r.last().0, 10);
    let drop = r.now;
    r.run(150, Some(140.0));
    for &(t, d, reason, _) in r.since(drop).filter(|e| e.0 < drop + 30) {
        assert_eq!((d, reason), (10, Reason::ScaleDownDelay), "t={t}");
    }
    let first_lower = r.since(drop).find(|e| e.1 < 10).unwrap();
    assert_eq!(first_lower.0, drop + 30, "{first_lower:?}");
    assert_eq!(r.last(), (2, Reason::Stable));
}

#[test]
fn initial_scale_is_held_for_the_first_stable_window() {
    let mut r = Scenario::new(ScaleSpec {
        initial: 3,
        ..spec()
    });
    r.run(58, Some(0.0));
    assert!(r.log.iter().all(|e| e.1 == 3 && e.2 == Reason::Initial));
    r.run(4, Some(0.0));
    assert_eq!(r.last(), (0, Reason::ScaleToZero));
}

#[test]
fn adaptive_keep_alive_prewarms_a_periodic_function() {
    let mut r = Scenario::new(ScaleSpec {
        initial: 0,
        keep_alive: KeepAlive::Adaptive,
        scale_to_zero_grace_period: flint_api::Duration::from_secs(600),
        ..spec()
    });
    // One 2-second request every 30 minutes, for a day.
    for _ in 0..48 {
        r.run(2, Some(1.0));
        r.run(1798, Some(0.0));
    }
    let h = r.state.idle.as_ref().unwrap().windows().unwrap();
    assert_eq!(h.prewarm, Duration::from_secs(29 * 60 * 9 / 10));
    // Over the last period: released soon after the request, back before
    // the next one, and up when it arrives.
    let last_req = r.now - 1798;
    let period: Vec<_> = r.since(last_req).collect();
    let released = period.iter().find(|e| e.1 == 0).unwrap();
    // Kept through gaps shorter than a minute (`min_idle`), then released.
    assert!(released.0 <= last_req + 64, "{released:?}");
    let prewarmed = period.iter().find(|e| e.2 == Reason::PreWarm).unwrap();
    assert!(prewarmed.0 >= last_req + h.prewarm.as_secs());
    assert_eq!(r.last(), (1, Reason::PreWarm));
}

#[test]
fn same_inputs_give_the_same_decision() {
    let mut a = Scenario::new(spec());
    let mut b = Scenario::new(spec());
    for load in [10.0, 500.0, 3000.0, 0.0, 80.0] {
        a.run(37, Some(load));
        b.run(37, Some(load));
    }
    assert_eq!(a.log, b.log);
    assert_eq!(a.state, b.state);
}

/// At a high keep-alive price the learned policy's shortest idle time is
/// half a minute: a function whose idle times are all far beyond what the
/// price pays for is released about 30 s after its last request, not after
/// a minute (the floor a fixed one-minute keep-alive would set).
#[test]
fn an_expensive_learned_policy_releases_after_half_a_minute() {
    let spec = ScaleSpec {
        min: 0,
        initial: 0,
        keep_alive: KeepAlive::Learned,
        scale_to_zero_grace_period: flint_api::Duration::from_secs(600),
        ..spec()
    };
    let release_after = |price: f64| {
        let mut r = Scenario::new(spec.clone());
        r.cfg.learned = flint_operator::autoscaler::keepalive::LearnedConfig::at_price(price);
        // One 2-second request every five hours, for two days.
        for _ in 0..10 {
            r.run(2, Some(1.0));
            r.run(5 * 3600 - 2, Some(0.0));
        }
        let last_req = r.now - (5 * 3600 - 2);
        let released = r.since(last_req).find(|e| e.1 == 0).unwrap();
        released.0 - last_req
    };
    let cheap = release_after(1.3e-4);
    let dear = release_after(1e-2);
    assert!(
        (30..=36).contains(&dear),
        "released {dear} s after the request"
    );
    assert!(
        cheap >= 60,
        "the default keeps at least a minute: {cheap} s"
    );
}
