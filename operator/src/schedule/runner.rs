//! The cron runner: wakes at each schedule's next tick, claims the tick in
//! the shared [`TickStore`] (so of any number of schedulers, across
//! restarts and failovers, one fires it at most once), and fires it as an
//! asynchronous invocation (so retries and dead letters apply, and a
//! Function at zero is woken by the gateway).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flint_api::backend::TickStore;
use flint_api::metrics as names;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::watch;

use super::fire::Fire;
use super::plan::{self, Entry};

/// Wall-clock time, injectable so tests can run days of schedule in
/// milliseconds.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that starts at a chosen instant and advances with tokio's clock
/// (paused in tests, so sleeps complete at once in simulated time).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: DateTime<Utc>,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start` now.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            start,
            base: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.base;
        self.start + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
    }
}

/// Runner settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerConfig {
    /// Oldest missed tick still fired when a scheduler (re)starts.
    pub catch_up: Duration,
    /// Longest sleep between looks (schedule changes are also noticed at once).
    pub max_sleep: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            catch_up: Duration::from_secs(300),
            max_sleep: Duration::from_secs(30),
        }
    }
}

/// The schedules a runner follows; replaced whole when Functions change.
pub type Schedules = watch::Receiver<Vec<Arc<Entry>>>;

/// Fires cron schedules.
pub struct CronRunner<S, F, C> {
    store: S,
    fire: F,
    clock: C,
    schedules: Schedules,
    config: RunnerConfig,
    ticks: Option<IntCounterVec>,
}

impl<S: TickStore, F: Fire, C: Clock> CronRunner<S, F, C> {
    /// A runner following `schedules`, claiming ticks in `store`, firing
    /// through `fire`.
    pub fn new(store: S, fire: F, clock: C, schedules: Schedules, config: RunnerConfig) -> Self {
        Self {
            store,
            fire,
            clock,
            schedules,
            config,
            ticks: None,
        }
    }

    /// Counts ticks (`flint_schedule_ticks_total`) in `registry`.
    pub fn with_metrics(mut self, registry: &Registry) -> Result<Self, prometheus::Error> {
        let c = IntCounterVec::new(
            Opts::new(names::SCHEDULE_TICKS_TOTAL, "Schedule ticks, by result."),
            &[
                names::LABEL_NAMESPACE,
                names::LABEL_FUNCTION,
                names::LABEL_RESULT,
            ],
        )?;
        registry.register(Box::new(c.clone()))?;
        self.ticks = Some(c);
        Ok(self)
    }

    fn count(&self, e: &Entry, result: &str) {
        if let Some(c) = &self.ticks {
            c.with_label_values(&[e.namespace.as_str(), e.function.as_str(), result])
                .inc();
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let catch_up = chrono::Duration::from_std(self.config.catch_up)
            .unwrap_or(chrono::Duration::minutes(5));
        let mut since: HashMap<String, DateTime<Utc>> = HashMap::new();
        loop {
            let entries = self.schedules.borrow_and_update().clone();
            let now = self.clock.now();
            since.retain(|k, _| entries.iter().any(|e| &e.key == k));
            let mut wake = now
                + chrono::Duration::from_std(self.config.max_sleep)
                    .unwrap_or(chrono::Duration::seconds(30));
            for entry in &entries {
                let from = *since.entry(entry.key.clone()).or_insert(now - catch_up);
                if let Some(tick) = plan::due(&entry.cron, entry.tz, from, now, catch_up) {
                    self.tick(entry, tick).await;
                }
                since.insert(entry.key.clone(), now);
                if let Some(next) = plan::next_tick(&entry.cron, entry.tz, now) {
                    wake = wake.min(next);
                }
            }
            let nap = (wake - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                r = self.schedules.changed() => if r.is_err() { return },
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn tick(&self, entry: &Entry, tick: DateTime<Utc>) {
        match self.store.claim(&entry.key, tick.timestamp()).await {
            Ok(true) => match self.fire.fire(entry, tick).await {
                Ok(()) => {
                    self.count(entry, "fired");
                    tracing::info!(schedule = %entry.key, cron = %entry.expr, %tick, "schedule fired");
                }
                Err(err) => {
                    self.count(entry, "failed");
                    tracing::warn!(schedule = %entry.key, %tick, error = %err, "schedule tick could not be fired");
                }
            },
            Ok(false) => {
                self.count(entry, "skipped");
                tracing::debug!(schedule = %entry.key, %tick, "tick already fired elsewhere");
            }
            Err(err) => {
                self.count(entry, "failed");
                tracing::warn!(schedule = %entry.key, %tick, error = %err, "claiming the tick failed; not fired");
            }
        }
    }
}
