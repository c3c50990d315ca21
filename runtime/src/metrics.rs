//! The gateway's Prometheus metrics, with names from `flint_api::metrics`.
//!
//! The autoscaler's signal is `flint_request_concurrency_seconds_total`: the
//! time integral of in-flight requests per revision. [`Integral`] keeps it
//! exact: every change of the in-flight count first credits the counter with
//! `in_flight × elapsed`, and a scrape credits the time since the last change,
//! so the rate over any window is the exact average concurrency in it.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use flint_api::backend::RevisionKey;
use flint_api::metrics as names;
use flint_api::sync::lock;
use prometheus::local::LocalHistogram;
use prometheus::{
    Counter, CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::shard::Sharded;

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

const REVISION_LABELS: [&str; 3] = [
    names::LABEL_NAMESPACE,
    names::LABEL_FUNCTION,
    names::LABEL_REVISION,
];
const CODE_LABELS: [&str; 4] = [
    names::LABEL_NAMESPACE,
    names::LABEL_FUNCTION,
    names::LABEL_REVISION,
    names::LABEL_CODE,
];
/// Buckets for request and cold-start durations, in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric family the gateway exports, registered in one registry.
#[derive(Clone)]
pub struct GatewayMetrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    in_flight: IntGaugeVec,
    concurrency: CounterVec,
    queue_depth: IntGaugeVec,
    overflow: IntCounterVec,
    cold_starts: IntCounterVec,
    cold_start_durations: HistogramVec,
    budget_limit: IntGauge,
    budget_held: IntGauge,
    budget_refused: IntCounterVec,
    /// Slots lent to and borrowed from other gateways.
    capacity_slots: IntCounterVec,
    /// Asks for slots sent to other gateways, by result.
    capacity_asks: IntCounterVec,
    /// Held while the budget's refusal counts (and sharing's counts) are
    /// copied in, so two scrapes at once do not both add the same ones.
    budget_sync: std::sync::Arc<Mutex<()>>,
}

/// Creates `metric` (named `name` for errors) and registers it in `registry`.
/// `registry`'s metrics in Prometheus text format.
pub(crate) fn encode(registry: &Registry) -> Result<String, MetricsError> {
    prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .map_err(MetricsError::Encode)
}

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
        let histogram = |name: &'static str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()),
                &REVISION_LABELS,
            )
        };
        Ok(Self {
            requests: register(
                r,
                names::REQUESTS_TOTAL,
                IntCounterVec::new(
                    Opts::new(names::REQUESTS_TOTAL, "Requests answered, by status code."),
                    &CODE_LABELS,
                ),
            )?,
            durations: register(
                r,
                names::REQUEST_DURATION_SECONDS,
                histogram(
                    names::REQUEST_DURATION_SECONDS,
                    "Request duration as seen by the gateway, including any wait for a replica.",
                ),
            )?,
            in_flight: register(
                r,
                names::REQUESTS_IN_FLIGHT,
                IntGaugeVec::new(
                    Opts::new(
                        names::REQUESTS_IN_FLIGHT,
                        "Requests in flight, waiting ones included.",
                    ),
                    &REVISION_LABELS,
                ),
            )?,
            concurrency: register(
                r,
                names::REQUEST_CONCURRENCY_SECONDS_TOTAL,
                CounterVec::new(
                    Opts::new(
                        names::REQUEST_CONCURRENCY_SECONDS_TOTAL,
                        "Time integral of in-flight requests; its rate is the average concurrency.",
                    ),
                    &REVISION_LABELS,
                ),
            )?,
            queue_depth: register(
                r,
                names::QUEUE_DEPTH,
                IntGaugeVec::new(
                    Opts::new(names::QUEUE_DEPTH, "Requests waiting for a replica."),
                    &REVISION_LABELS,
                ),
            )?,
            overflow: register(
                r,
                names::QUEUE_OVERFLOW_TOTAL,
                IntCounterVec::new(
                    Opts::new(
                        names::QUEUE_OVERFLOW_TOTAL,
                        "Requests refused because the revision's queue was full.",
                    ),
                    &REVISION_LABELS,
                ),
            )?,
            cold_starts: register(
                r,
                names::COLD_STARTS_TOTAL,
                IntCounterVec::new(
                    Opts::new(
                        names::COLD_STARTS_TOTAL,
                        "Requests that found their revision without a ready replica.",
                    ),
                    &REVISION_LABELS,
                ),
            )?,
            cold_start_durations: register(
                r,
                names::COLD_START_DURATION_SECONDS,
                histogram(
                    names::COLD_START_DURATION_SECONDS,
                    "How long the first request of a cold start waited for a replica.",
                ),
            )?,
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
            budget_sync: std::sync::Arc::new(Mutex::new(())),
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

    /// Resolves the label handles of one revision, once, so the request path
    /// never looks labels up.
    pub fn revision(&self, key: &RevisionKey) -> RevisionMetrics {
        let labels = [
            key.namespace.as_str(),
            key.function.as_str(),
            key.revision.as_str(),
        ];
        let duration = self.durations.with_label_values(&labels);
        RevisionMetrics {
            requests: self.requests.clone(),
            codes: (FIRST_CODE..=LAST_CODE).map(|_| OnceLock::new()).collect(),
            labels: [
                key.namespace.clone(),
                key.function.clone(),
                key.revision.clone(),
            ],
            shares: Sharded::new(|| {
                Mutex::new(Share {
                    integral: Integral::new(Instant::now()),
                    accrued: 0.0,
                    durations: duration.local(),
                })
            }),
            in_flight: self.in_flight.with_label_values(&labels),
            concurrency: self.concurrency.with_label_values(&labels),
            queue_depth: self.queue_depth.with_label_values(&labels),
            overflow: self.overflow.with_label_values(&labels),
            cold_starts: self.cold_starts.with_label_values(&labels),
            cold_start_duration: self.cold_start_durations.with_label_values(&labels),
        }
    }

    /// The registry, in Prometheus text exposition format.
    pub fn encode(&self) -> Result<String, MetricsError> {
        encode(&self.registry)
    }
}

/// The time integral of an in-flight count, advanced at each change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Integral {
    in_flight: u64,
    last: Instant,
}

impl Integral {
    /// Nothing in flight as of `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            in_flight: 0,
            last: now,
        }
    }

    /// Moves the clock to `now` and returns the concurrency-seconds accrued
    /// since the last call. A clock that went backwards accrues nothing.
    pub fn advance(&mut self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        self.in_flight as f64 * elapsed.as_secs_f64()
    }

    /// Advances to `now`, then adds `delta` (±1) to the in-flight count.
    pub fn change(&mut self, now: Instant, delta: i64) -> f64 {
        let accrued = self.advance(now);
        self.in_flight = self.in_flight.saturating_add_signed(delta);
        accrued
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }
}

/// One worker thread's share of a revision's request accounting: its
/// in-flight count and their time integral, and its request durations.
/// Kept per thread and published at each scrape ([`RevisionMetrics::flush`]),
/// so the request path writes no cache line another core writes too. The
/// integral of the total in-flight count is the sum of the shares'.
struct Share {
    integral: Integral,
    /// Concurrency-seconds accrued since the last flush.
    accrued: f64,
    durations: LocalHistogram,
}

/// Which share a request was counted in: it finishes in the same one, so
/// each share's in-flight count goes up and down by the same requests.
#[derive(Debug, Clone, Copy)]
pub struct Counted(usize);

/// The metric handles of one revision, resolved once.
pub struct RevisionMetrics {
    requests: IntCounterVec,
    labels: [String; 3],
    /// The request counter of each status code 100..=599, resolved the
    /// first time the code is seen (then a plain atomic add).
    codes: Box<[OnceLock<IntCounter>]>,
    shares: Sharded<Mutex<Share>>,
    in_flight: IntGauge,
    concurrency: Counter,
    queue_depth: IntGauge,
    overflow: IntCounter,
    cold_starts: IntCounter,
    cold_start_duration: Histogram,
}

impl RevisionMetrics {
    /// A request for this revision entered the gateway at `now`.
    pub fn request_started(&self, now: Instant) -> Counted {
        let index = self.shares.index();
        let mut share = lock(self.shares.at(index));
        share.accrued += share.integral.change(now, 1);
        Counted(index)
    }

    /// A request that started at `started` was answered with `code`, and its
    /// response finished (or was abandoned) at `now`.
    pub fn request_finished(&self, counted: Counted, started: Instant, now: Instant, code: u16) {
        {
            let mut share = lock(self.shares.at(counted.0));
            share.accrued += share.integral.change(now, -1);
            share
                .durations
                .observe(now.saturating_duration_since(started).as_secs_f64());
        }
        let code = code.clamp(FIRST_CODE, LAST_CODE);
        let resolve = || {
            let mut buf = itoa_buf(code);
            self.requests.with_label_values(&[
                self.labels[0].as_str(),
                self.labels[1].as_str(),
                self.labels[2].as_str(),
                code_str(&mut buf),
            ])
        };
        match self.codes.get(usize::from(code - FIRST_CODE)) {
            Some(slot) => slot.get_or_init(resolve).inc(),
            None => resolve().inc(),
        }
    }

    /// Publishes the shares as of `now` (called before a scrape): the
    /// concurrency integral credited up to `now`, the in-flight count, the
    /// request durations.
    pub fn flush(&self, now: Instant) {
        let mut accrued = 0.0;
        let mut in_flight = 0u64;
        for share in self.shares.iter() {
            let mut share = lock(share);
            accrued += std::mem::take(&mut share.accrued) + share.integral.advance(now);
            in_flight += share.integral.in_flight();
            share.durations.flush();
        }
        self.concurrency.inc_by(accrued);
        self.in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }

    /// Requests now waiting in the revision's queue.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// A request was refused because the queue was full.
    pub fn queue_overflowed(&self) {
        self.overflow.inc();
    }

    /// A cold start began.
    pub fn cold_start_began(&self) {
        self.cold_starts.inc();
    }

    /// A cold start ended after its first request waited `waited`.
    pub fn cold_start_ended(&self, waited: Duration) {
        self.cold_start_duration.observe(waited.as_secs_f64());
    }
}

/// Lowest and highest status codes counted under their own label.
const FIRST_CODE: u16 = 100;
const LAST_CODE: u16 = 599;

/// Three ASCII digits of an HTTP status code (100..=999), without allocating.
fn itoa_buf(code: u16) -> [u8; 3] {
    let code = code.clamp(100, 999);
    [
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]
}

fn code_str(buf: &mut [u8; 3]) -> &str {
    std::str::from_utf8(buf).unwrap_or("000")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn integral_is_exact_area_under_in_flight() {
        let t0 = Instant::now();
        let mut integral = Integral::new(t0);
        // (time ms, delta, expected accrual in seconds before applying delta)
        let steps: [(u64, i64, f64); 6] = [
            (0, 1, 0.0),
            (1000, 1, 1.0),  // one request for 1 s
            (1500, 1, 1.0),  // two requests for 0.5 s
            (2500, -1, 3.0), // three requests for 1 s
            (4500, -1, 4.0), // two requests for 2 s
            (5000, -1, 0.5), // one request for 0.5 s
        ];
        let mut total = 0.0;
        for (ms, delta, expected) in steps {
            let accrued = integral.change(at(t0, ms), delta);
            assert!((accrued - expected).abs() < 1e-9, "at {ms}: {accrued}");
            total += accrued;
        }
        assert_eq!(integral.in_flight(), 0);
        assert!((total - 9.5).abs() < 1e-9);
        assert_eq!(integral.advance(at(t0, 9000)), 0.0);
    }

    #[test]
    fn flushing_mid_request_splits_without_losing_time() {
        let t0 = Instant::now();
        let mut integral = Integral::new(t0);
        integral.change(t0, 2);
        let first = integral.advance(at(t0, 250));
        let second = integral.change(at(t0, 1000), -2);
        assert!((first - 0.5).abs() < 1e-9);
        assert!((second - 1.5).abs() < 1e-9);
    }

    #[test]
    fn clock_going_backwards_accrues_nothing() {
        let t0 = Instant::now();
        let mut integral = Integral::new(at(t0, 1000));
        integral.change(at(t0, 1000), 1);
        assert_eq!(integral.advance(t0), 0.0);
        assert!((integral.advance(at(t0, 2000)) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn status_codes_render_as_three_digits() {
        for (code, text) in [(200, "200"), (404, "404"), (503, "503"), (101, "101")] {
            let mut buf = itoa_buf(code);
            assert_eq!(code_str(&mut buf), text);
        }
    }

    fn sample(text: &str, family: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(family) && l.contains("revision=\"hello-00001\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    #[test]
    fn shares_of_several_threads_add_up_and_requests_finish_where_they_started() {
        let metrics = GatewayMetrics::new().unwrap();
        let rev =
            std::sync::Arc::new(metrics.revision(&RevisionKey::new("ns", "hello", "hello-00001")));
        let t0 = Instant::now();
        // Workers 0 and 1 start a request each at t0; worker 1's ends at
        // 1 s on its own thread, worker 0's at 3 s on another thread.
        let on_worker = |id: usize| {
            let rev = std::sync::Arc::clone(&rev);
            std::thread::spawn(move || {
                crate::shard::set_worker(id);
                let counted = rev.request_started(t0);
                if id == 1 {
                    rev.request_finished(counted, t0, at(t0, 1000), 200);
                }
                counted
            })
            .join()
            .unwrap()
        };
        let first = on_worker(0);
        on_worker(1);
        rev.flush(at(t0, 2000));
        let text = metrics.encode().unwrap();
        assert_eq!(sample(&text, "flint_requests_in_flight"), 1.0);
        assert_eq!(
            sample(&text, "flint_request_concurrency_seconds_total"),
            3.0
        );
        assert_eq!(sample(&text, "flint_request_duration_seconds_count"), 1.0);

        rev.request_finished(first, t0, at(t0, 3000), 200);
        rev.flush(at(t0, 4000));
        let text = metrics.encode().unwrap();
        assert_eq!(sample(&text, "flint_requests_in_flight"), 0.0);
        assert_eq!(
            sample(&text, "flint_request_concurrency_seconds_total"),
            4.0
        );
        assert_eq!(sample(&text, "flint_request_duration_seconds_count"), 2.0);
        assert_eq!(sample(&text, "flint_request_duration_seconds_sum"), 4.0);
    }

    #[test]
    fn families_use_the_shared_names() {
        let metrics = GatewayMetrics::new().unwrap();
        let rev = metrics.revision(&RevisionKey::new("ns", "hello", "hello-00001"));
        let t0 = Instant::now();
        let counted = rev.request_started(t0);
        rev.request_finished(counted, t0, at(t0, 2000), 200);
        rev.flush(at(t0, 2000));
        let text = metrics.encode().unwrap();
        assert!(text.contains(
            "flint_requests_total{code=\"200\",function=\"hello\",namespace=\"ns\",revision=\"hello-00001\"} 1"
        ));
        assert!(text.contains(
            "flint_request_concurrency_seconds_total{function=\"hello\",namespace=\"ns\",revision=\"hello-00001\"} 2"
        ));
    }
}
