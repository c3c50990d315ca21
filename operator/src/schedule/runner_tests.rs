//! The runner in simulated time (tokio's paused clock): a schedule every
//! minute fires once per tick, never twice with two schedulers sharing a
//! store, not again after a restart; and one short real-time run firing
//! through HTTP to a real listener.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use flint_api::backend::{TickClaimError, TickStore};

use super::*;

/// A shared in-memory tick store (what the ConfigMap or embedded store are
/// to real schedulers).
#[derive(Clone, Default)]
struct MemoryTicks(Arc<Mutex<HashMap<String, i64>>>);

impl TickStore for MemoryTicks {
    async fn claim(&self, schedule: &str, tick: i64) -> Result<bool, TickClaimError> {
        let mut m = self.0.lock().unwrap();
        let last = m.entry(schedule.to_owned()).or_insert(i64::MIN);
        if *last >= tick {
            return Ok(false);
        }
        *last = tick;
        Ok(true)
    }
}

/// Records every fired tick.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(String, i64)>>>);

impl Fire for Recorder {
    async fn fire(&self, entry: &plan::Entry, tick: DateTime<Utc>) -> Result<(), FireError> {
        self.0
            .lock()
            .unwrap()
            .push((entry.key.clone(), tick.timestamp()));
        Ok(())
    }
}

fn every_minute() -> Vec<Function> {
    let text = "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: { name: tick }\nspec:\n  image: x\n  scale: { min: 0 }\n  schedules:\n    - { cron: \"* * * * *\" }\n";
    flint_api::parse_functions(text).unwrap()
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 30).unwrap()
}

fn runner(
    ticks: MemoryTicks,
    fire: Recorder,
    schedules: Schedules,
    clock: TokioClock,
) -> CronRunner<MemoryTicks, Recorder, TokioClock> {
    let config = RunnerConfig {
        catch_up: Duration::from_secs(120),
        max_sleep: Duration::from_secs(30),
    };
    CronRunner::new(ticks, fire, clock, schedules, config)
}

#[tokio::test(start_paused = true)]
async fn every_tick_fires_once_with_two_schedulers_and_after_a_restart() {
    let (set, schedules) = ScheduleSet::new();
    set.set_functions(&every_minute());
    let ticks = MemoryTicks::default();
    let fired = Recorder::default();
    let clock = TokioClock::starting_at(start());
    let (stop, stopped) = watch::channel(false);
    let a = tokio::spawn(
        runner(ticks.clone(), fired.clone(), schedules.clone(), clock).run(stopped.clone()),
    );
    let b = tokio::spawn(
        runner(ticks.clone(), fired.clone(), schedules.clone(), clock).run(stopped.clone()),
    );
    // Ten simulated minutes.
    tokio::time::sleep(Duration::from_secs(600)).await;
    stop.send(true).unwrap();
    a.await.unwrap();
    b.await.unwrap();

    // A scheduler starting afterwards (a restart, a failover) finds the
    // last tick within its catch-up window already claimed.
    let (stop2, stopped2) = watch::channel(false);
    let c = tokio::spawn(runner(ticks.clone(), fired.clone(), schedules, clock).run(stopped2));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop2.send(true).unwrap();
    c.await.unwrap();

    let fired = fired.0.lock().unwrap().clone();
    // The tick of 12:00 lies within the catch-up window at 12:00:30 and
    // fires at start; then 12:01 … 12:10.
    let want: Vec<(String, i64)> = (0..=10)
        .map(|m| {
            (
                "default.tick.0".to_owned(),
                Utc.with_ymd_and_hms(2026, 5, 1, 12, m, 0)
                    .unwrap()
                    .timestamp(),
            )
        })
        .collect();
    assert_eq!(fired, want);
}

#[tokio::test(start_paused = true)]
async fn schedule_changes_take_effect_and_removed_schedules_stop() {
    let (set, schedules) = ScheduleSet::new();
    let fired = Recorder::default();
    let (stop, stopped) = watch::channel(false);
    let clock = TokioClock::starting_at(start());
    let task =
        tokio::spawn(runner(MemoryTicks::default(), fired.clone(), schedules, clock).run(stopped));
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert!(
        fired.0.lock().unwrap().is_empty(),
        "no schedules, nothing fired"
    );
    set.set_functions(&every_minute());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after_add = fired.0.lock().unwrap().len();
    set.set_functions(&[]);
    tokio::time::sleep(Duration::from_secs(300)).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    // Added at 12:02:10: 12:02 (within catch-up) and 12:03 fire; nothing after removal.
    assert_eq!(after_add, 2);
    assert_eq!(fired.0.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn real_time_tick_is_fired_through_http() {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = seen_tx.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let id = parts.headers["x-flint-invocation-id"]
                                .to_str()
                                .unwrap()
                                .to_owned();
                            tx.send((parts.method, parts.uri.to_string(), id, body))
                                .unwrap();
                            let mut resp =
                                http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                            *resp.status_mut() = http::StatusCode::ACCEPTED;
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let text = "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: { name: tick, namespace: team }\nspec:\n  image: x\n  schedules:\n    - { cron: \"* * * * *\", path: /run, method: PUT, body: hello }\n";
    let (set, schedules) = ScheduleSet::new();
    set.set_functions(&flint_api::parse_functions(text).unwrap());
    // A clock 1.5 s before a minute boundary, running in real time, with
    // no catch-up: the next tick comes after a real wait.
    let minute = Utc.with_ymd_and_hms(2026, 5, 1, 12, 1, 0).unwrap();
    let clock = TokioClock::starting_at(minute - chrono::Duration::milliseconds(1500));
    let config = RunnerConfig {
        catch_up: Duration::from_secs(1),
        max_sleep: Duration::from_secs(30),
    };
    let (stop, stopped) = watch::channel(false);
    let began = std::time::Instant::now();
    let runner = CronRunner::new(
        MemoryTicks::default(),
        HttpFire::new(&format!("http://{addr}")),
        clock,
        schedules,
        config,
    );
    let task = tokio::spawn(runner.run(stopped));
    let (method, uri, id, body) = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        began.elapsed() >= Duration::from_millis(1400),
        "fired at the tick, not before"
    );
    assert_eq!(method, http::Method::PUT);
    assert_eq!(uri, "/async-function/team/tick/run");
    assert_eq!(id, format!("cron.team.tick.0.{}", minute.timestamp()));
    assert_eq!(body, bytes::Bytes::from_static(b"hello"));
    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(seen.try_recv().is_err(), "fired once");
}
