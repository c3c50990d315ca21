//! The autoscaler loop: reads the metrics source every second, decides every
//! revision every 2 s (and at once on a poke), and writes through the
//! [`ScaleActuator`] only when the desired count changes.
//!
//! Pokes arrive through [`AutoscalerHandle`] (`handle.rs`, which also adds,
//! removes and reports on revisions from other tasks) and, from gateways in
//! other processes, over HTTP ([`poke_router`], `poke.rs`). Several pokes
//! for a revision already scaling from zero lead to the same decision, hence
//! to a single write. Every poke's `waiting` counts at most the gateway's
//! queue size ([`AutoscalerConfig::max_waiting`]): no gateway can hold more
//! requests for a revision, so no poke may claim more.
//!
//! The asynchronous backlog: each successful scrape also yields the pending
//! invocations per Function ([`MetricsSource::take_pending`]); callers tell
//! the loop how each Function's backlog reaches its revisions
//! ([`AutoscalerHandle::set_backlog_routes`]: `async.maxInFlight` and the
//! resolved traffic split), and each decision gets its revision's share
//! while the reading is no older than the staleness limit of the samples.
//! A Function with no route set adds no backlog demand.
//!
//! Dormant revisions (at zero, nothing to wake them: see [`super::dormant`])
//! cost a few comparisons per tick: no replica read, no decision, no
//! sample pushed, and their per-revision gauges leave `/metrics` once they
//! have been dormant for [`super::dormant::SERIES_GRACE`]. A poke, a
//! sample with traffic or pending work wakes them at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use flint_api::ScaleSpec;
use flint_api::backend::{RevisionKey, ScaleActuator, Standing};
use flint_api::poke::ScalePoke;
use flint_api::sync::lock;
use prometheus::Registry;
use tokio::sync::mpsc;

use super::backlog::BacklogBook;
use super::decide::{DecideConfig, Observation, ScaleState, decide};
use super::dormant::{SERIES_GRACE, Situation, is_dormant};
use super::metrics::AutoscalerMetrics;
use super::snapshot::Snapshot;
use super::source::{MetricsSource, Pending};
use super::window::{Sample, Window};

mod handle;
mod poke;

pub use handle::{AutoscalerHandle, KeepAliveReport};
pub use poke::poke_router;

/// Settings of the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalerConfig {
    /// How often the metrics source is read.
    pub scrape_interval: Duration,
    /// How often every revision is decided.
    pub decide_interval: Duration,
    /// Tunables of `decide()`.
    pub decide: DecideConfig,
    /// The most requests a poke may report waiting: the gateway's
    /// per-revision queue size. A larger claim is cut to it, so a poke
    /// cannot ask for more replicas than a full queue needs.
    pub max_waiting: u32,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            scrape_interval: Duration::from_secs(1),
            decide_interval: Duration::from_secs(2),
            decide: DecideConfig::default(),
            max_waiting: flint_api::poke::DEFAULT_QUEUE_SIZE,
        }
    }
}

/// Why the autoscaler could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AutoscalerError {
    /// Registering its metrics failed (e.g. registered twice).
    #[error("registering the autoscaler metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// One revision as the loop tracks it.
struct Tracked {
    spec: ScaleSpec,
    window: Window,
    state: ScaleState,
    written: Option<u32>,
    ready: u32,
    /// Whether the revision's standing was read from the backend (see
    /// [`ScaleState::adopt`]); no decision is made before.
    adopted: bool,
    /// What a previous leader persisted, applied at adoption (boxed: most
    /// revisions have none, and the idle histogram is half a kilobyte).
    restore: Option<Box<Snapshot>>,
    /// Since when the ticks skip it (see [`super::dormant`]); `None` while
    /// it is decided every tick.
    dormant_since: Option<Duration>,
    /// Whether its per-revision gauges are exported.
    gauges: bool,
}

/// The autoscaler's clock starts this far in, so that activity a previous
/// leader persisted (up to this long before the start, far beyond any
/// keep-alive window) still maps to a time on it.
const CLOCK_ORIGIN: Duration = Duration::from_secs(24 * 3600);

/// What a handle asks of the loop (see `handle.rs`).
enum Command {
    Poke(ScalePoke),
}

/// The state the loop shares with its handles, each part under its own lock.
struct Shared {
    revisions: Mutex<HashMap<RevisionKey, Tracked>>,
    decide: DecideConfig,
    backlogs: Mutex<BacklogBook>,
    epoch: Instant,
    commands: mpsc::UnboundedSender<Command>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.epoch.elapsed() + CLOCK_ORIGIN
    }
}

/// The autoscaler: owns the actuator and the source; run it with [`Autoscaler::run`].
pub struct Autoscaler<A, S> {
    actuator: A,
    source: S,
    config: AutoscalerConfig,
    metrics: AutoscalerMetrics,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl<A: ScaleActuator, S: MetricsSource> Autoscaler<A, S> {
    /// An autoscaler writing through `actuator`, reading `source`, with its
    /// metrics registered in `registry`.
    pub fn new(
        actuator: A,
        source: S,
        config: AutoscalerConfig,
        registry: &Registry,
    ) -> Result<Self, AutoscalerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let decide = config.decide;
        Ok(Self {
            actuator,
            source,
            config,
            metrics: AutoscalerMetrics::new(registry)?,
            shared: Arc::new(Shared {
                revisions: Mutex::new(HashMap::new()),
                decide,
                backlogs: Mutex::new(BacklogBook::default()),
                epoch: Instant::now(),
                commands: tx,
            }),
            commands: rx,
        })
    }

    /// The handle to add revisions and to poke.
    pub fn handle(&self) -> AutoscalerHandle {
        AutoscalerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let mut scrape = tokio::time::interval(self.config.scrape_interval);
        scrape.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = tokio::time::interval(self.config.decide_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                Some(Command::Poke(p)) = self.commands.recv() => {
                    let key = RevisionKey::new(p.namespace, p.function, p.revision);
                    let waiting = p.waiting.min(self.config.max_waiting);
                    if waiting < p.waiting {
                        tracing::debug!(revision = %key, claimed = p.waiting, counted = waiting, "poke claims more waiting requests than a queue holds");
                    }
                    self.decide_one(&key, Some(waiting)).await;
                }
                _ = scrape.tick() => self.scrape().await,
                _ = tick.tick() => self.tick().await,
            }
        }
    }

    /// The revisions this tick decides; marks the others dormant (and
    /// drops their gauges once dormant for [`SERIES_GRACE`]). One pass,
    /// a few comparisons per dormant revision, no allocation for them.
    fn awake_for_tick(&self) -> Vec<RevisionKey> {
        let now = self.shared.now();
        let busy = lock(&self.shared.backlogs).busy(now, self.config.decide.stale_after);
        let mut revs = lock(&self.shared.revisions);
        let mut awake = Vec::new();
        for (key, t) in revs.iter_mut() {
            let situation = Situation {
                written: t.written,
                ready: t.ready,
                adopted: t.adopted && t.restore.is_none(),
                backlog: busy
                    .get(key.namespace.as_str())
                    .is_some_and(|f| f.contains(key.function.as_str())),
            };
            if !is_dormant(&t.spec, &t.state, &t.window, situation, now) {
                t.dormant_since = None;
                awake.push(key.clone());
                continue;
            }
            let since = *t.dormant_since.get_or_insert(now);
            if t.gauges && now.saturating_sub(since) >= SERIES_GRACE {
                self.metrics.forget(key);
                t.gauges = false;
            }
        }
        awake
    }

    /// One decision pass: every revision not dormant has its ready
    /// replicas read and is decided (what the loop does every
    /// [`AutoscalerConfig::decide_interval`]; public for benchmarks).
    pub async fn tick(&self) {
        let keys = self.awake_for_tick();
        for key in keys {
            self.refresh_ready(&key).await;
            self.decide_one(&key, None).await;
        }
    }

    /// One read of the metrics source into the revisions' windows (what
    /// the loop does every [`AutoscalerConfig::scrape_interval`]; public
    /// for benchmarks).
    pub async fn scrape(&mut self) {
        let keys = self.handle().awake();
        let result = self.source.collect(&keys).await;
        let at = self.shared.now();
        match result {
            Ok(readings) => {
                if let Some(pending) = self.source.take_pending() {
                    self.record_pending(at, pending);
                }
                let mut revs = lock(&self.shared.revisions);
                for (key, r) in readings {
                    if let Some(t) = revs.get_mut(&key) {
                        t.window.push(Sample {
                            at,
                            concurrency: r.concurrency,
                            rps: r.rps,
                        });
                    }
                }
            }
            Err(err) => {
                self.metrics
                    .source_errors
                    .with_label_values(&[self.source.name(), err.metric_label()])
                    .inc();
                tracing::warn!(source = self.source.name(), error = %err, "metrics source failed; holding current scale");
            }
        }
    }

    /// Keeps the pending counts read `at` for the decisions, and exports
    /// them: each Function with a backlog, and at 0 for a grace after it
    /// (see [`BacklogBook::record`]).
    fn record_pending(&self, at: Duration, pending: Pending) {
        let series = lock(&self.shared.backlogs).record(at, pending);
        for (key, n) in series.set {
            self.metrics
                .backlog
                .with_label_values(&[&key.namespace, &key.function])
                .set(n as f64);
        }
        for key in series.gone {
            // Absent already is what removing wants.
            let _ = self
                .metrics
                .backlog
                .remove_label_values(&[&key.namespace, &key.function]);
        }
    }

    async fn refresh_ready(&self, key: &RevisionKey) {
        match self.actuator.replicas(key).await {
            Ok(r) => {
                if let Some(t) = lock(&self.shared.revisions).get_mut(key) {
                    t.ready = r.ready;
                }
                self.metrics
                    .actual
                    .with_label_values(&[&key.namespace, &key.function, &key.revision])
                    .set(f64::from(r.ready));
            }
            Err(err) => tracing::warn!(revision = %key, error = %err, "reading replicas failed"),
        }
    }

    /// Reads where a revision stands before its first decision: a revision
    /// older than a stable window was scaled by someone before (a previous
    /// leader) and is taken over as it is, with what that one persisted.
    /// False while that cannot be read (the decision waits).
    async fn adopt(&self, key: &RevisionKey) -> bool {
        let pending = lock(&self.shared.revisions)
            .get(key)
            .is_some_and(|t| !t.adopted);
        if !pending {
            return true;
        }
        let standing = match self.actuator.standing(key).await {
            Ok(standing) => standing,
            Err(err) => {
                tracing::warn!(revision = %key, error = %err, "reading where the revision stands failed; deciding later");
                return false;
            }
        };
        let now = self.shared.now();
        let wall_now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut revs = lock(&self.shared.revisions);
        let Some(t) = revs.get_mut(key) else {
            return false;
        };
        if let Some(Standing { age, replicas }) = standing {
            if age >= t.spec.stable_window.as_std() {
                t.state.adopt(now, age, replicas.desired);
                t.written = Some(replicas.desired);
            } else {
                // A revision still in its first stable window: new, with
                // its `initial` hold counted from its creation.
                t.state.started = now.saturating_sub(age);
            }
        }
        if let Some(snapshot) = t.restore.take() {
            t.state
                .restore(&snapshot, &t.spec, &self.config.decide, now, wall_now);
        }
        t.adopted = true;
        true
    }

    async fn decide_one(&self, key: &RevisionKey, poke: Option<u32>) {
        if !self.adopt(key).await {
            return;
        }
        let now = self.shared.now();
        let backlog = lock(&self.shared.backlogs).of(key, now, self.config.decide.stale_after);
        let write = {
            let mut revs = lock(&self.shared.revisions);
            let Some(t) = revs.get_mut(key) else {
                return;
            };
            let started = Instant::now();
            let state = t.state.clone();
            let obs = Observation {
                ready: t.ready,
                poke,
                backlog,
            };
            let d = decide(&t.spec, &self.config.decide, &t.window, obs, now, state);
            self.metrics
                .decision_latency
                .observe(started.elapsed().as_secs_f64());
            self.metrics
                .decisions
                .with_label_values(&[d.reason.as_str()])
                .inc();
            let labels = [
                key.namespace.as_str(),
                key.function.as_str(),
                key.revision.as_str(),
            ];
            self.metrics
                .desired
                .with_label_values(&labels)
                .set(f64::from(d.desired));
            self.metrics
                .panic
                .with_label_values(&labels)
                .set(if d.state.panicking() { 1.0 } else { 0.0 });
            t.state = d.state;
            t.gauges = true;
            (t.written != Some(d.desired)).then_some((d.desired, d.reason))
        };
        let Some((desired, reason)) = write else {
            return;
        };
        tracing::info!(revision = %key, desired, reason = reason.as_str(), "scaling");
        match self.actuator.scale(key, desired).await {
            Ok(()) => {
                if let Some(t) = lock(&self.shared.revisions).get_mut(key) {
                    t.written = Some(desired);
                }
            }
            Err(err) => tracing::warn!(revision = %key, error = %err, "scale write failed"),
        }
    }
}
