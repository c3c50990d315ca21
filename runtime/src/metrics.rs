//! The gateway's Prometheus metrics, with names from `flint_api::metrics`.
//!
//! The autoscaler's signal is `flint_request_concurrency_seconds_total`: the
//! time integral of in-flight requests per revision. [`Integral`] keeps it
//! exact: every change of the in-flight count first credits the counter with
//! `in_flight × elapsed`, and a scrape credits the time since the last change,
//! so the rate over any window is the exact average concurrency in it.
//!
//! This module registers the families and publishes the gateway-wide
//! counts at each scrape; each revision's request accounting on the hot
//! path is in [`revision`], the exact integral behind it in [`integral`],
//! and when an idle revision's series leave `/metrics` in [`expiry`].
//!
//! The per-revision families are not in the registry: a scrape writes
//! them from the revisions it is handed ([`GatewayMetrics::encode_with`]),
//! only those [`RevisionMetrics::scrape`] says are exported, so a gateway
//! with ten thousand idle revisions renders none of their series, and a
//! revision holds plain atomics rather than library handles.

mod expiry;
mod integral;
mod revision;

use std::sync::Mutex;

use flint_api::backend::RevisionKey;
use flint_api::metrics as names;
use flint_api::sync::lock;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

pub use expiry::{Expiry, IDLE_SERIES_GRACE};
pub use integral::Integral;
pub use revision::{Counted, RevisionMetrics};

/// Why the metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric could not be created or registered (a duplicate name).
    #[error("registering metric {name}: {source}")]
    Register {
        /// The metric's name.
        name: &'static str,
        /// The registry's error.
        source: prometheus::Error,
    },
    /// The registry's content could not be written as text.
    #[error("encoding metrics: {0}")]
    Encode(#[source] prometheus::Error),
}

/// Every metric family the gateway exports, registered in one registry.
#[derive(Clone)]
pub struct GatewayMetrics {
    registry: Registry,
    budget_limit: IntGauge,
    budget_held: IntGauge,
    budget_refused: IntCounterVec,
    /// Slots lent to and borrowed from other gateways.
    capacity_slots: IntCounterVec,
    /// Asks for slots sent to other gateways, by result.
    capacity_asks: IntCounterVec,
    /// Requests refused by a Function's auth, by Function and reason.
    auth_failures: IntCounterVec,
    /// How long an idle revision's series stay exported.
    grace: std::time::Duration,
    /// Held while the budget's refusal counts (and sharing's counts) are
    /// copied in, so two scrapes at once do not both add the same ones.
    budget_sync: std::sync::Arc<Mutex<()>>,
}

/// `registry`'s metrics in Prometheus text format.
pub(crate) fn encode(registry: &Registry) -> Result<String, MetricsError> {
    prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .map_err(MetricsError::Encode)
}

/// Creates `metric` (named `name` for errors) and registers it in `registry`.
pub(crate) fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    name: &'static str,
    metric: Result<C, prometheus::Error>,
) -> Result<C, MetricsError> {
    let metric = metric.map_err(|source| MetricsError::Register { name, source })?;
    registry
        .register(Box::new(metric.clone()))
        .map_err(|source| MetricsError::Register { name, source })?;
    Ok(metric)
}

impl GatewayMetrics {
    /// Creates the metric families in a fresh registry.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let r = &registry;
        Ok(Self {
            budget_limit: register(
                r,
                names::MEMORY_BUDGET_BYTES,
                IntGauge::new(
                    names::MEMORY_BUDGET_BYTES,
                    "The gateway's memory budget for waiting requests, asynchronous bodies and callbacks.",
                ),
            )?,
            budget_held: register(
                r,
                names::MEMORY_BUDGET_HELD_BYTES,
                IntGauge::new(
                    names::MEMORY_BUDGET_HELD_BYTES,
                    "Bytes of the memory budget held now.",
                ),
            )?,
            budget_refused: register(
                r,
                names::MEMORY_BUDGET_REFUSED_TOTAL,
                IntCounterVec::new(
                    Opts::new(
                        names::MEMORY_BUDGET_REFUSED_TOTAL,
                        "Charges the memory budget refused (503, or a callback dropped), by use.",
                    ),
                    &[names::LABEL_USE],
                ),
            )?,
            capacity_slots: register(
                r,
                names::CAPACITY_SLOTS_TOTAL,
                IntCounterVec::new(
                    Opts::new(
                        names::CAPACITY_SLOTS_TOTAL,
                        "Replicas' concurrency slots handed to other gateways (lent) and got from them (borrowed).",
                    ),
                    &[names::LABEL_DIRECTION],
                ),
            )?,
            capacity_asks: register(
                r,
                names::CAPACITY_ASKS_TOTAL,
                IntCounterVec::new(
                    Opts::new(
                        names::CAPACITY_ASKS_TOTAL,
                        "Asks for slots sent to other gateways, by result.",
                    ),
                    &[names::LABEL_RESULT],
                ),
            )?,
            auth_failures: register(
                r,
                names::AUTH_FAILURES_TOTAL,
                IntCounterVec::new(
                    Opts::new(
                        names::AUTH_FAILURES_TOTAL,
                        "Requests refused by a Function's auth (never proxied, never waking it), by reason.",
                    ),
                    &[
                        names::LABEL_NAMESPACE,
                        names::LABEL_FUNCTION,
                        names::LABEL_REASON,
                    ],
                ),
            )?,
            budget_sync: std::sync::Arc::new(Mutex::new(())),
            grace: IDLE_SERIES_GRACE,
            registry,
        })
    }

    /// Copies the memory budget's limit, holding and refusal counts into
    /// their metrics (at each scrape: the budget itself keeps plain atomics).
    pub fn publish_budget(&self, budget: &crate::budget::MemoryBudget) {
        let gauge = |bytes: usize| i64::try_from(bytes).unwrap_or(i64::MAX);
        self.budget_limit.set(gauge(budget.limit()));
        self.budget_held.set(gauge(budget.held()));
        let _sync = lock(&self.budget_sync);
        for what in crate::budget::Use::ALL {
            let counter = self
                .budget_refused
                .with_label_values(&[what.metric_label()]);
            let refused = budget.refused(what);
            counter.inc_by(refused.saturating_sub(counter.get()));
        }
    }

    /// Copies what sharing replicas' slots with other gateways did into its
    /// counters (at each scrape: sharing keeps plain atomics).
    pub fn publish_capacity(&self, counts: &crate::gateway::capacity::Counts) {
        let _sync = lock(&self.budget_sync);
        let pairs = [
            (&self.capacity_slots, "lent", &counts.lent),
            (&self.capacity_slots, "borrowed", &counts.borrowed),
            (&self.capacity_asks, "answered", &counts.answered),
            (&self.capacity_asks, "failed", &counts.failed),
        ];
        for (vec, label, count) in pairs {
            let counter = vec.with_label_values(&[label]);
            let now = count.load(std::sync::atomic::Ordering::Relaxed);
            counter.inc_by(now.saturating_sub(counter.get()));
        }
    }

    /// Counts one request refused by `namespace/function`'s auth for
    /// `reason`. Refusals are the rare path: the label lookup is paid here.
    pub fn auth_failure(&self, namespace: &str, function: &str, reason: &str) {
        self.auth_failures
            .with_label_values(&[namespace, function, reason])
            .inc();
    }

    /// One revision's accounting, its labels escaped once, so the request
    /// path never looks labels up and a scrape writes them as they are.
    pub fn revision(&self, key: &RevisionKey) -> RevisionMetrics {
        RevisionMetrics::new(key)
    }

    /// The same families with idle revisions' series kept for `grace`
    /// instead of [`IDLE_SERIES_GRACE`] (tests and benchmarks).
    pub fn with_grace(mut self, grace: std::time::Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long an idle revision's series stay exported.
    pub fn grace(&self) -> std::time::Duration {
        self.grace
    }

    /// The gateway-wide families only, in Prometheus text exposition format.
    pub fn encode(&self) -> Result<String, MetricsError> {
        encode(&self.registry)
    }

    /// The gateway-wide families and the series of `revisions` (those a
    /// scrape exports: see [`RevisionMetrics::scrape`]), in Prometheus
    /// text exposition format.
    pub fn encode_with<'r>(
        &self,
        revisions: impl IntoIterator<Item = &'r RevisionMetrics>,
    ) -> Result<String, MetricsError> {
        let revisions: Vec<&RevisionMetrics> = revisions.into_iter().collect();
        let mut text = encode(&self.registry)?;
        revision::render(&mut text, &revisions);
        Ok(text)
    }
}
