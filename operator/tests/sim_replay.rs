//! `flint sim` replay: exact outcomes on small synthetic traces, and the
//! acceptance check on the development trace when it is present.

use std::time::Duration;

use flint_operator::autoscaler::DecideConfig;
use flint_operator::sim::{self, FunctionTrace, Policy, PolicyReport, SimConfig, simulate};
use indicatif::ProgressBar;

fn trace(minutes: &[(u32, u32)]) -> FunctionTrace {
    FunctionTrace {
        id: "f".into(),
        minutes: minutes.to_vec(),
    }
}

const MIN: Duration = Duration::from_secs(60);

/// `flint sim` with the default decision and simulation settings, silently.
fn replay(traces: &[FunctionTrace], policies: &[Policy]) -> Vec<PolicyReport> {
    sim::replay(
        traces,
        policies,
        &DecideConfig::default(),
        &SimConfig::default(),
        &ProgressBar::hidden(),
    )
}

#[test]
fn fixed_keep_alive_counts_one_cold_start_per_gap_longer_than_the_keep_alive() {
    // Invocations at minutes 1, 5, 30 and 31: gaps of 4, 25 and 1 minutes.
    let t = trace(&[(1, 1), (5, 1), (30, 1), (31, 1)]);
    let cfg = DecideConfig::default();
    let sim = SimConfig::default();
    let ten = simulate(&t, &Policy::fixed(MIN * 10).spec, &cfg, &sim);
    assert_eq!(ten.requests, 4);
    // The first request (from zero) and the one after the 25-minute gap.
    assert_eq!(ten.cold_starts, 2);
    assert_eq!(ten.wait_ms, 2000.0);
    let one = simulate(&t, &Policy::fixed(MIN).spec, &cfg, &sim);
    assert_eq!(one.cold_starts, 3);
    assert!(one.idle_replica_seconds < ten.idle_replica_seconds);
}

#[test]
fn idle_replica_seconds_follow_the_keep_alive() {
    // One request (1 s) at 00:00:30, keep-alive 10 minutes: the replica
    // starts at 30 s (cold, 1 s), serves 31..32 s, and is released at the
    // first decision 600 s after the request ended.
    let t = trace(&[(1, 1)]);
    let stats = simulate(
        &t,
        &Policy::fixed(MIN * 10).spec,
        &DecideConfig::default(),
        &SimConfig::default(),
    );
    assert_eq!(stats.cold_starts, 1);
    // Starting (1 s) + idle after the request until the release.
    assert!(
        (600.0..=603.0).contains(&stats.idle_replica_seconds),
        "{stats:?}"
    );
    // Scale-up once, scale-down once.
    assert_eq!(stats.scale_writes, 2);
}

#[test]
fn a_burst_from_zero_is_one_scale_write_and_waits_one_cold_start() {
    // 600 requests in one minute: 10 per second, 1 s each (~10 in flight).
    let t = trace(&[(3, 600)]);
    let stats = simulate(
        &t,
        &Policy::fixed(MIN).spec,
        &DecideConfig::default(),
        &SimConfig::default(),
    );
    assert_eq!(stats.requests, 600);
    // The first replica needs 1 s: the requests of that second wait.
    assert_eq!(stats.cold_starts, 10);
    assert_eq!(stats.scale_writes, 2);
}

#[test]
fn adaptive_prewarms_a_periodic_function_that_fixed_misses() {
    // Every 30 minutes, all day.
    let minutes: Vec<(u32, u32)> = (0..48).map(|i| (1 + i * 30, 1)).collect();
    let t = trace(&minutes);
    let cfg = DecideConfig::default();
    let sim = SimConfig::default();
    let fixed = simulate(&t, &Policy::fixed(MIN * 10).spec, &cfg, &sim);
    let adaptive = simulate(&t, &Policy::adaptive(MIN * 10).spec, &cfg, &sim);
    assert_eq!(fixed.cold_starts, 48);
    // Cold until the histogram holds enough idle times, then pre-warmed.
    let min_obs = u64::from(cfg.adaptive.min_observations);
    assert_eq!(adaptive.cold_starts, min_obs + 1);
    assert!(adaptive.idle_replica_seconds < fixed.idle_replica_seconds);
}

#[test]
fn reports_compare_policies_to_fixed_ten_minutes() {
    let traces = vec![trace(&[(1, 1), (100, 1)]), trace(&[(1, 2), (2, 2), (3, 2)])];
    let policies = sim::policies(sim::PolicyChoice::All, MIN * 10);
    let reports = replay(&traces, &policies);
    let names: Vec<&str> = reports.iter().map(|r| r.policy.as_str()).collect();
    assert_eq!(
        names,
        [
            "fixed-10m",
            "kpa",
            "adaptive-10m",
            "cost-aware-1e-4",
            "learned"
        ]
    );
    assert_eq!(reports[0].idle_vs_fixed_10m, 1.0);
    assert_eq!(reports[0].requests, 8);
    assert_eq!(reports[0].cold_start_p75_pct, 100.0);
    let json = serde_json::to_value(&reports).unwrap();
    for key in [
        "policy",
        "cold_start_p50_pct",
        "cold_start_p75_pct",
        "cold_start_rate_pct",
        "idle_replica_seconds",
        "idle_vs_fixed_10m",
        "mean_queueing_delay_ms",
    ] {
        assert!(json[0].get(key).is_some(), "missing {key}");
    }
}

#[test]
fn dev_trace_adaptive_beats_fixed_ten_minutes_at_no_more_idle() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/traces/azure2019-dev.csv");
    let Ok(file) = std::fs::File::open(&path) else {
        println!("skipped: {} not found", path.display());
        return;
    };
    let traces = sim::trace::read(std::io::BufReader::new(file)).unwrap();
    assert_eq!(traces.len(), 200);
    let policies = [Policy::fixed(MIN * 10), Policy::adaptive(MIN * 10)];
    let reports = replay(&traces, &policies);
    println!("{}", sim::report::table(&reports));
    let (fixed, adaptive) = (&reports[0], &reports[1]);
    assert!(adaptive.cold_start_p75_pct < fixed.cold_start_p75_pct);
    assert!(adaptive.idle_replica_seconds <= fixed.idle_replica_seconds);
}

/// The learned policy's goal, on each half of the dev trace's functions
/// (tuned on half A, checked on half B): p75 per-function cold starts at
/// most 22 % at no more idle time than fixed 10 minutes, and no more cold
/// starts overall than the adaptive policy.
#[test]
fn dev_trace_learned_meets_its_goal_on_both_halves() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/traces/azure2019-dev.csv");
    let Ok(file) = std::fs::File::open(&path) else {
        println!("skipped: {} not found", path.display());
        return;
    };
    let all = sim::trace::read(std::io::BufReader::new(file)).unwrap();
    for half in [sim::Half::A, sim::Half::B] {
        let traces: Vec<_> = all
            .iter()
            .filter(|t| half.contains(&t.id))
            .cloned()
            .collect();
        assert!(traces.len() > 80 && traces.len() < 120, "{half:?}");
        let policies = [
            Policy::fixed(MIN * 10),
            Policy::adaptive(MIN * 10),
            Policy::learned(MIN * 10, None),
        ];
        let reports = replay(&traces, &policies);
        println!("{half:?}\n{}", sim::report::table(&reports));
        let (adaptive, learned) = (&reports[1], &reports[2]);
        assert!(learned.cold_start_p75_pct <= 22.0, "{half:?}");
        assert!(learned.idle_vs_fixed_10m <= 1.0, "{half:?}");
        assert!(
            learned.cold_start_rate_pct <= adaptive.cold_start_rate_pct,
            "{half:?}"
        );
    }
}
