//! The async metrics (names in `flint_api::metrics`), in their own registry
//! that the gateway appends to its `/metrics`.

use flint_api::metrics as names;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::invocation::FunctionKey;
use super::queue::Depth;

const FN_LABELS: [&str; 2] = [names::LABEL_NAMESPACE, names::LABEL_FUNCTION];

/// Counters and gauges of accepted, delivered, retried and dead-lettered
/// invocations, pending depth and callbacks.
#[derive(Clone)]
pub struct EventMetrics {
    registry: Registry,
    accepted: IntCounterVec,
    delivered: IntCounterVec,
    retries: IntCounterVec,
    dead: IntCounterVec,
    pending: IntGaugeVec,
    oldest: IntGaugeVec,
    callbacks: IntCounterVec,
    refused: IntCounterVec,
}

impl std::fmt::Debug for EventMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventMetrics").finish_non_exhaustive()
    }
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGaugeVec, prometheus::Error> {
    let g = IntGaugeVec::new(Opts::new(name, help), &FN_LABELS)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

impl EventMetrics {
    /// Registers every async metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let with_reason = [
            names::LABEL_NAMESPACE,
            names::LABEL_FUNCTION,
            names::LABEL_REASON,
        ];
        let with_result = [
            names::LABEL_NAMESPACE,
            names::LABEL_FUNCTION,
            names::LABEL_RESULT,
        ];
        Ok(Self {
            accepted: counter(
                &registry,
                names::ASYNC_ACCEPTED_TOTAL,
                "Asynchronous invocations accepted.",
                &FN_LABELS,
            )?,
            delivered: counter(
                &registry,
                names::ASYNC_DELIVERED_TOTAL,
                "Asynchronous invocations delivered.",
                &FN_LABELS,
            )?,
            retries: counter(
                &registry,
                names::ASYNC_RETRIES_TOTAL,
                "Delivery attempts that failed transiently and were scheduled again.",
                &FN_LABELS,
            )?,
            dead: counter(
                &registry,
                names::ASYNC_DEAD_LETTERS_TOTAL,
                "Invocations dead-lettered, by reason.",
                &with_reason,
            )?,
            pending: gauge(
                &registry,
                names::ASYNC_PENDING,
                "Invocations accepted and not yet settled.",
            )?,
            oldest: gauge(
                &registry,
                names::ASYNC_OLDEST_PENDING_AGE_SECONDS,
                "Age of the oldest pending invocation in seconds.",
            )?,
            callbacks: counter(
                &registry,
                names::ASYNC_CALLBACKS_TOTAL,
                "Result callbacks, by result.",
                &with_result,
            )?,
            refused: counter(
                &registry,
                names::ASYNC_REFUSED_TOTAL,
                "Asynchronous requests the queue did not take (answered 503), by reason.",
                &with_reason,
            )?,
            registry,
        })
    }

    fn labels(f: &FunctionKey) -> [&str; 2] {
        [f.namespace.as_str(), f.function.as_str()]
    }

    /// One invocation accepted.
    pub fn accepted(&self, f: &FunctionKey) {
        self.accepted.with_label_values(&Self::labels(f)).inc();
    }

    /// One invocation delivered.
    pub fn delivered(&self, f: &FunctionKey) {
        self.delivered.with_label_values(&Self::labels(f)).inc();
    }

    /// One attempt failed transiently and will be retried.
    pub fn retried(&self, f: &FunctionKey) {
        self.retries.with_label_values(&Self::labels(f)).inc();
    }

    /// One invocation dead-lettered for `reason`.
    pub fn dead_lettered(&self, f: &FunctionKey, reason: &str) {
        self.dead
            .with_label_values(&[f.namespace.as_str(), f.function.as_str(), reason])
            .inc();
    }

    /// One callback ended with `result` (`delivered`, `retried`, `dropped`,
    /// `refused` by the address policy).
    pub fn callback(&self, f: &FunctionKey, result: &str) {
        self.callbacks
            .with_label_values(&[f.namespace.as_str(), f.function.as_str(), result])
            .inc();
    }

    /// One request refused because the queue did not take it (`reason`:
    /// `full`, `nats`, `store`, …, the error's metric label).
    pub fn refused(&self, f: &FunctionKey, reason: &str) {
        self.refused
            .with_label_values(&[f.namespace.as_str(), f.function.as_str(), reason])
            .inc();
    }

    /// Replaces the pending gauges with `depths` at `now_ms`; Functions not
    /// listed have nothing pending.
    pub fn set_depths(&self, depths: &[(FunctionKey, Depth)], now_ms: u64) {
        self.pending.reset();
        self.oldest.reset();
        for (f, depth) in depths {
            let labels = Self::labels(f);
            self.pending
                .with_label_values(&labels)
                .set(i64::try_from(depth.pending).unwrap_or(i64::MAX));
            let age = depth
                .oldest_enqueued_ms
                .map_or(0, |at| now_ms.saturating_sub(at) / 1000);
            self.oldest
                .with_label_values(&labels)
                .set(i64::try_from(age).unwrap_or(i64::MAX));
        }
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut out = String::new();
        prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}
