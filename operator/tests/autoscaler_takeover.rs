//! A new leader (or a restarted operator) takes over where the last one
//! stopped: it decides as the old leader would have from what the old one
//! persisted in `status.keepAlive`, and it does not wake revisions that
//! stand at zero (no `initial` hold for a revision that is not new).

#[path = "support/actuator.rs"]
mod actuator;
#[path = "support/autoscaler_loop.rs"]
mod autoscaler_loop;
#[allow(dead_code)]
#[path = "support/scenario.rs"]
mod scenario;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actuator::Memory;
use autoscaler_loop::{Running, config};
use flint_api::backend::RevisionKey;
use flint_api::{KeepAlive, ScaleSpec};
use flint_operator::autoscaler::snapshot::Snapshot;
use flint_operator::autoscaler::source::{MetricsSource, Reading, Readings, SourceError};
use flint_operator::autoscaler::{Autoscaler, Reason, ScaleState};
use prometheus::Registry;
use scenario::Scenario;

/// Wall-clock seconds at the scenarios' time 0.
const BASE_UNIX: u64 = 1_796_479_200;
const HOUR: u64 = 3600;

fn learned() -> ScaleSpec {
    ScaleSpec {
        keep_alive: KeepAlive::Learned,
        ..ScaleSpec::default()
    }
}

/// A function called for one minute at the top of every hour.
fn hourly(s: &mut Scenario, hours: u64) {
    for _ in 0..hours {
        s.run(60, Some(1.0));
        s.run(HOUR - 60, Some(0.0));
    }
}

/// A leader starting at `at`, taking over a revision standing at
/// `desired` (created at time 0), with what was persisted, if anything.
fn new_leader(spec: &ScaleSpec, at: u64, desired: u32, persisted: Option<&str>) -> Scenario {
    let mut s = Scenario::new(spec.clone());
    s.now = at;
    let now = Duration::from_secs(at);
    s.state = ScaleState::new(spec, now);
    s.state.adopt(now, now, desired);
    if let Some(text) = persisted {
        let snapshot = Snapshot::decode(text).unwrap();
        s.state
            .restore(&snapshot, spec, &s.cfg, now, BASE_UNIX + at);
    }
    s
}

/// Forty minutes of quiet, a one-minute call, ten minutes of quiet.
fn next_hour(s: &mut Scenario) -> Vec<(u64, u32, Reason)> {
    let from = s.log.len();
    s.run(40 * 60, Some(0.0));
    s.run(60, Some(1.0));
    s.run(10 * 60, Some(0.0));
    s.log[from..]
        .iter()
        .map(|&(t, d, r, _)| (t, d, r))
        .collect()
}

#[test]
fn a_new_leader_decides_as_the_old_one_from_what_it_persisted() {
    let spec = learned();
    let mut old = Scenario::new(spec.clone());
    hourly(&mut old, 8);
    // Twenty minutes into the ninth hour's quiet: the old leader hands over.
    old.run(60, Some(1.0));
    old.run(19 * 60, Some(0.0));
    let at = old.now;
    let persisted = old
        .state
        .snapshot(&spec, &old.cfg, Duration::from_secs(at), BASE_UNIX + at)
        .encode();
    assert!(persisted.len() <= 1024, "{persisted}");

    let mut taken_over = new_leader(&spec, at, old.state.desired, Some(&persisted));
    let mut fresh = new_leader(&spec, at, old.state.desired, None);
    let want = next_hour(&mut old);
    assert!(
        want.iter().any(|&(_, _, r)| r == Reason::PreWarm),
        "the old leader pre-warms for the hourly call: {want:?}"
    );
    assert_eq!(next_hour(&mut taken_over), want);
    // Without what was persisted, the decisions differ: the test can fail.
    assert_ne!(next_hour(&mut fresh), want);
}

#[test]
fn a_busy_revision_persists_only_what_holds_still() {
    let spec = learned();
    let mut s = Scenario::new(spec.clone());
    hourly(&mut s, 3);
    s.run(120, Some(5.0));
    let at = |s: &Scenario| {
        s.state
            .snapshot(&spec, &s.cfg, Duration::from_secs(s.now), BASE_UNIX + s.now)
    };
    let serving = at(&s);
    assert_eq!(serving.last_active_unix, None);
    assert_eq!(serving.requests_since_idle, 0);
    assert!(serving.histogram.is_some());
    s.run(10, Some(5.0));
    assert_eq!(at(&s), serving, "unchanged while serving");
    s.run(5 * 60, Some(0.0));
    let idle = at(&s);
    assert_eq!(idle.last_active_unix, Some(BASE_UNIX + 3 * HOUR + 130));
    s.run(60, Some(0.0));
    assert_eq!(at(&s), idle, "unchanged while idle");
}

/// Reports no load for every revision.
#[derive(Clone, Default)]
struct Quiet;

impl MetricsSource for Quiet {
    fn name(&self) -> &'static str {
        "quiet"
    }
    async fn collect(&mut self, revisions: &[RevisionKey]) -> Result<Readings, SourceError> {
        Ok(revisions
            .iter()
            .map(|k| (k.clone(), Reading::default()))
            .collect())
    }
}

#[tokio::test]
async fn a_restarted_autoscaler_wakes_no_revision_at_zero() {
    let actuator = Memory::default();
    let idle = RevisionKey::new("default", "idle", "idle-00001");
    let new = RevisionKey::new("default", "new", "new-00001");
    actuator.existing(&idle, Duration::from_secs(HOUR), 0);
    let registry = Registry::new();
    let scaler = Autoscaler::new(actuator.clone(), Quiet, config(), &registry).unwrap();
    let handle = scaler.handle();
    // Both with `initial: 1`: a new revision comes up, an old one at zero stays.
    handle.upsert(idle.clone(), ScaleSpec::default());
    handle.upsert(new.clone(), ScaleSpec::default());
    let running = Running::spawn(scaler);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    running.stop().await;
    let writes = actuator.writes();
    assert!(writes.iter().all(|(k, _)| k != &idle), "{writes:?}");
    assert_eq!(writes.first(), Some(&(new.clone(), 1)), "{writes:?}");
    let report = handle.keep_alive(SystemTime::now());
    let message = |k: &RevisionKey| {
        report
            .entries
            .iter()
            .find(|(r, _)| r == k)
            .map(|(_, s)| s.message.clone())
    };
    assert_eq!(message(&idle).as_deref(), Some("fixed 30s: no request yet"));
    let idle_function = flint_operator::autoscaler::source::FunctionKey::new("default", "idle");
    assert!(
        !report.taking_over.contains(&idle_function),
        "{:?}",
        report.taking_over
    );
}

#[tokio::test]
async fn what_a_leader_reports_restores_the_next_one() {
    // The report's `learned` string, fed to the next leader's upsert, is
    // read back (a damaged one is ignored, not fatal).
    let spec = learned();
    let mut s = Scenario::new(spec.clone());
    hourly(&mut s, 2);
    let text = s
        .state
        .snapshot(&spec, &s.cfg, Duration::from_secs(s.now), BASE_UNIX + s.now)
        .encode();
    let key = RevisionKey::new("default", "hourly", "hourly-00001");
    for persisted in [text.as_str(), "damaged!"] {
        let actuator = Memory::default();
        actuator.existing(&key, Duration::from_secs(2 * HOUR), 0);
        let scaler = Autoscaler::new(actuator, Quiet, config(), &Registry::new()).unwrap();
        let handle = scaler.handle();
        handle.upsert_restoring(key.clone(), spec.clone(), Some(persisted));
        let running = Running::spawn(scaler);
        let seen = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let reports = handle.keep_alive(SystemTime::now()).entries;
            if !reports.is_empty() {
                *seen.lock().unwrap() = reports;
                break;
            }
        }
        running.stop().await;
        let reports = seen.lock().unwrap().clone();
        assert_eq!(reports.len(), 1, "{persisted}");
        let learned = reports[0].1.learned.clone();
        if persisted == text {
            let back = Snapshot::decode(learned.as_deref().unwrap()).unwrap();
            assert_eq!(back.histogram, s.state.idle.as_ref().map(|h| h.parts()));
            assert!(
                reports[0]
                    .1
                    .message
                    .starts_with("learned from 1 idle time,"),
                "{}",
                reports[0].1.message
            );
        } else {
            assert_eq!(learned, None, "nothing learned yet");
        }
    }
}
