//! One revision's request accounting, on the request path: plain atomics
//! and per-thread shares, rendered straight into the text format at a
//! scrape with the revision's labels escaped once. In-flight counts, their
//! integral and request durations are kept per worker thread (no cache
//! line written by two cores) and published at each scrape. A revision
//! idle for the grace of [`super::expiry`] is left out of `/metrics` (and
//! costs a flag read per scrape) until its next change.
//!
//! No `prometheus` handle per revision: with ten thousand revisions the
//! library's label maps, label pairs and per-scrape protobuf copies were
//! most of a revision's memory and of a scrape's work; the text written is
//! the same as the library's encoder writes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use flint_api::backend::RevisionKey;
use flint_api::metrics as names;
use flint_api::sync::lock;

use super::Integral;
use super::expiry::Expiry;
use crate::shard::Sharded;

/// Buckets for request and cold-start durations, in seconds.
pub(super) const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Observations of a duration histogram: per bucket (not cumulative), sum
/// and count. The text format's cumulative buckets are made when written.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Buckets {
    counts: [u64; DURATION_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Buckets {
    /// Counts one observation of `seconds` (in the first bucket whose
    /// upper bound is at least it, as Prometheus' `le` says).
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = DURATION_BUCKETS.iter().position(|&le| seconds <= le) {
            self.counts[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    /// Adds `other`'s observations.
    fn add(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// One worker thread's share of a revision's request accounting: its
/// in-flight count and their time integral, and its request durations.
/// Kept per thread and published at each scrape ([`RevisionMetrics::scrape`]),
/// so the request path writes no cache line another core writes too. The
/// integral of the total in-flight count is the sum of the shares'.
struct Share {
    integral: Integral,
    /// Concurrency-seconds accrued since the last publish.
    accrued: f64,
    /// Durations observed since the last publish.
    durations: Buckets,
}

/// What the scrapes publish, under one lock: the shares' totals, and when
/// the revision last changed (whether it is exported).
#[derive(Default)]
struct Published {
    expiry: Expiry,
    in_flight: u64,
    concurrency_seconds: f64,
    durations: Buckets,
}

/// Which share a request was counted in: it finishes in the same one, so
/// each share's in-flight count goes up and down by the same requests.
#[derive(Debug, Clone, Copy)]
pub struct Counted(usize);

/// One revision's request accounting.
pub struct RevisionMetrics {
    /// `function="…",namespace="…",revision="…"`: the revision's labels,
    /// escaped and in the order the text format writes them, made once.
    labels: Box<str>,
    /// The request counts of the status codes this revision answered with,
    /// each slot taken the first time its code is seen (then a plain
    /// atomic add). A revision answers with a handful of codes.
    codes: [OnceLock<(u16, AtomicU64)>; CODE_SLOTS],
    /// Codes seen after every slot was taken (rare): counted under a lock.
    more_codes: Mutex<Vec<(u16, u64)>>,
    shares: Sharded<Mutex<Share>>,
    queue_depth: AtomicI64,
    overflow: AtomicU64,
    cold_starts: AtomicU64,
    cold_start_durations: Mutex<Buckets>,
    /// Set by every change (a request, a queue or cold-start event), taken
    /// by the next scrape. Read before written, so the request path writes
    /// the cache line once per scrape interval at most.
    touched: AtomicBool,
    published: Mutex<Published>,
}

impl RevisionMetrics {
    /// `key`'s accounting, its labels escaped once.
    pub(super) fn new(key: &RevisionKey) -> Self {
        let mut labels = String::new();
        for (i, (name, value)) in [
            (names::LABEL_FUNCTION, key.function.as_str()),
            (names::LABEL_NAMESPACE, key.namespace.as_str()),
            (names::LABEL_REVISION, key.revision.as_str()),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                labels.push(',');
            }
            labels.push_str(name);
            labels.push_str("=\"");
            escape_into(&mut labels, value);
            labels.push('"');
        }
        Self {
            labels: labels.into_boxed_str(),
            codes: Default::default(),
            more_codes: Mutex::new(Vec::new()),
            shares: Sharded::new(|| {
                Mutex::new(Share {
                    integral: Integral::new(Instant::now()),
                    accrued: 0.0,
                    durations: Buckets::default(),
                })
            }),
            queue_depth: AtomicI64::new(0),
            overflow: AtomicU64::new(0),
            cold_starts: AtomicU64::new(0),
            cold_start_durations: Mutex::new(Buckets::default()),
            touched: AtomicBool::new(false),
            published: Mutex::new(Published {
                expiry: Expiry::created(Instant::now()),
                ..Published::default()
            }),
        }
    }

    /// A request for this revision entered the gateway at `now`.
    pub fn request_started(&self, now: Instant) -> Counted {
        self.touch();
        let index = self.shares.index();
        let mut share = lock(self.shares.at(index));
        share.accrued += share.integral.change(now, 1);
        Counted(index)
    }

    /// A request that started at `started` was answered with `code`, and its
    /// response finished (or was abandoned) at `now`.
    pub fn request_finished(&self, counted: Counted, started: Instant, now: Instant, code: u16) {
        self.touch();
        {
            let mut share = lock(self.shares.at(counted.0));
            share.accrued += share.integral.change(now, -1);
            share
                .durations
                .observe(now.saturating_duration_since(started).as_secs_f64());
        }
        self.count_code(code.clamp(FIRST_CODE, LAST_CODE));
    }

    /// Counts a request answered with `code` in its slot, taking the first
    /// free slot the first time the code is seen. Slots fill in order and
    /// every caller scans in order, so two threads seeing a new code at
    /// once end up with the same slot.
    fn count_code(&self, code: u16) {
        for slot in &self.codes {
            let (seen, count) = slot.get_or_init(|| (code, AtomicU64::new(0)));
            if *seen == code {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut more = lock(&self.more_codes);
        match more.iter_mut().find(|(seen, _)| *seen == code) {
            Some((_, count)) => *count += 1,
            None => more.push((code, 1)),
        }
    }

    /// Requests now waiting in the revision's queue.
    pub fn set_queue_depth(&self, depth: usize) {
        self.touch();
        self.queue_depth
            .store(i64::try_from(depth).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// A request was refused because the queue was full.
    pub fn queue_overflowed(&self) {
        self.touch();
        self.overflow.fetch_add(1, Ordering::Relaxed);
    }

    /// A cold start began.
    pub fn cold_start_began(&self) {
        self.touch();
        self.cold_starts.fetch_add(1, Ordering::Relaxed);
    }

    /// A cold start ended after its first request waited `waited`.
    pub fn cold_start_ended(&self, waited: Duration) {
        self.touch();
        lock(&self.cold_start_durations).observe(waited.as_secs_f64());
    }

    /// Marks a change for the next scrape.
    fn touch(&self) {
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
    }

    /// Prepares a scrape at `now`: whether this revision's series are
    /// exported (see [`super::expiry`]), and if so publishes its shares
    /// first: the concurrency integral credited up to `now`, the in-flight
    /// count, the request durations. A revision hidden and untouched since
    /// costs two flag reads.
    pub fn scrape(&self, now: Instant, grace: Duration) -> bool {
        let changed =
            self.touched.load(Ordering::Relaxed) && self.touched.swap(false, Ordering::Relaxed);
        let mut published = lock(&self.published);
        if !changed && !published.expiry.shown(now, grace) {
            return false;
        }
        let mut accrued = 0.0;
        let mut in_flight = 0u64;
        for share in self.shares.iter() {
            let mut share = lock(share);
            accrued += std::mem::take(&mut share.accrued) + share.integral.advance(now);
            in_flight += share.integral.in_flight();
            published
                .durations
                .add(&std::mem::take(&mut share.durations));
        }
        published.concurrency_seconds += accrued;
        published.in_flight = in_flight;
        let busy = in_flight > 0 || self.queue_depth.load(Ordering::Relaxed) > 0;
        published.expiry.observe(now, changed, busy, grace)
    }
}

/// The per-revision families, in the order `/metrics` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Requests,
    Durations,
    InFlight,
    Concurrency,
    QueueDepth,
    Overflow,
    ColdStarts,
    ColdStartDurations,
}

impl Family {
    const ALL: [Self; 8] = [
        Self::Requests,
        Self::Durations,
        Self::InFlight,
        Self::Concurrency,
        Self::QueueDepth,
        Self::Overflow,
        Self::ColdStarts,
        Self::ColdStartDurations,
    ];

    /// Name, help and type, as the `# HELP` and `# TYPE` lines give them.
    fn describe(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Requests => (
                names::REQUESTS_TOTAL,
                "Requests answered, by status code.",
                "counter",
            ),
            Self::Durations => (
                names::REQUEST_DURATION_SECONDS,
                "Request duration as seen by the gateway, including any wait for a replica.",
                "histogram",
            ),
            Self::InFlight => (
                names::REQUESTS_IN_FLIGHT,
                "Requests in flight, waiting ones included.",
                "gauge",
            ),
            Self::Concurrency => (
                names::REQUEST_CONCURRENCY_SECONDS_TOTAL,
                "Time integral of in-flight requests; its rate is the average concurrency.",
                "counter",
            ),
            Self::QueueDepth => (
                names::QUEUE_DEPTH,
                "Requests waiting for a replica.",
                "gauge",
            ),
            Self::Overflow => (
                names::QUEUE_OVERFLOW_TOTAL,
                "Requests refused because the revision's queue was full.",
                "counter",
            ),
            Self::ColdStarts => (
                names::COLD_STARTS_TOTAL,
                "Requests that found their revision without a ready replica.",
                "counter",
            ),
            Self::ColdStartDurations => (
                names::COLD_START_DURATION_SECONDS,
                "How long the first request of a cold start waited for a replica.",
                "histogram",
            ),
        }
    }
}

/// One revision's values as a scrape writes them, read once.
struct Snapshot {
    /// (code, requests), by code.
    codes: Vec<(u16, u64)>,
    durations: Buckets,
    in_flight: u64,
    concurrency_seconds: f64,
    queue_depth: i64,
    overflow: u64,
    cold_starts: u64,
    cold_start_durations: Buckets,
}

impl RevisionMetrics {
    /// The values the last [`RevisionMetrics::scrape`] published, and the
    /// counters as they are now.
    fn snapshot(&self) -> Snapshot {
        let mut codes: Vec<(u16, u64)> = self
            .codes
            .iter()
            .filter_map(OnceLock::get)
            .map(|(code, n)| (*code, n.load(Ordering::Relaxed)))
            .chain(lock(&self.more_codes).iter().copied())
            .collect();
        codes.sort_unstable();
        let published = lock(&self.published);
        Snapshot {
            codes,
            durations: published.durations,
            in_flight: published.in_flight,
            concurrency_seconds: published.concurrency_seconds,
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            overflow: self.overflow.load(Ordering::Relaxed),
            cold_starts: self.cold_starts.load(Ordering::Relaxed),
            cold_start_durations: *lock(&self.cold_start_durations),
        }
    }
}

/// Appends the series of `revisions` (those a scrape exports, see
/// [`RevisionMetrics::scrape`]) to `out` in the text exposition format,
/// family by family; a family without a series is left out.
pub(super) fn render(out: &mut String, revisions: &[&RevisionMetrics]) {
    let snapshots: Vec<Snapshot> = revisions.iter().map(|r| r.snapshot()).collect();
    for family in Family::ALL {
        let (name, help, kind) = family.describe();
        let empty = match family {
            Family::Requests => snapshots.iter().all(|s| s.codes.is_empty()),
            _ => snapshots.is_empty(),
        };
        if empty {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (rev, s) in revisions.iter().zip(&snapshots) {
            let labels = &*rev.labels;
            match family {
                Family::Requests => {
                    for (code, n) in &s.codes {
                        let _ = writeln!(out, "{name}{{code=\"{code}\",{labels}}} {n}");
                    }
                }
                Family::Durations => histogram(out, name, labels, &s.durations),
                Family::InFlight => sample(out, name, labels, s.in_flight),
                Family::Concurrency => sample(out, name, labels, s.concurrency_seconds),
                Family::QueueDepth => sample(out, name, labels, s.queue_depth),
                Family::Overflow => sample(out, name, labels, s.overflow),
                Family::ColdStarts => sample(out, name, labels, s.cold_starts),
                Family::ColdStartDurations => {
                    histogram(out, name, labels, &s.cold_start_durations);
                }
            }
        }
    }
}

/// One sample line: `name{labels} value`. Values print as the library's
/// encoder prints them (`f64`'s `Display`: `1`, `0.5`; integers alike).
fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

/// A histogram's lines: cumulative buckets, `+Inf`, sum and count.
fn histogram(out: &mut String, name: &str, labels: &str, b: &Buckets) {
    let mut cumulative = 0u64;
    for (le, n) in DURATION_BUCKETS.iter().zip(b.counts) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", b.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", b.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", b.count);
}

/// Appends `value` escaped as a label value: backslash, double quote and
/// newline (Kubernetes names have none; the format requires it).
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Status codes a revision counts without a lock: 200, 201, 204, 304,
/// 400, 401, 404, 500, say.
const CODE_SLOTS: usize = 8;

/// Lowest and highest status codes counted under their own label.
const FIRST_CODE: u16 = 100;
const LAST_CODE: u16 = 599;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::GatewayMetrics;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    /// `/metrics` as a scrape at `now` renders it.
    fn render(metrics: &GatewayMetrics, rev: &RevisionMetrics, now: Instant) -> String {
        let shown = rev.scrape(now, metrics.grace());
        metrics.encode_with(shown.then_some(rev)).unwrap()
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
        let text = render(&metrics, &rev, at(t0, 2000));
        assert_eq!(sample(&text, "flint_requests_in_flight"), 1.0);
        assert_eq!(
            sample(&text, "flint_request_concurrency_seconds_total"),
            3.0
        );
        assert_eq!(sample(&text, "flint_request_duration_seconds_count"), 1.0);

        rev.request_finished(first, t0, at(t0, 3000), 200);
        let text = render(&metrics, &rev, at(t0, 4000));
        assert_eq!(sample(&text, "flint_requests_in_flight"), 0.0);
        assert_eq!(
            sample(&text, "flint_request_concurrency_seconds_total"),
            4.0
        );
        assert_eq!(sample(&text, "flint_request_duration_seconds_count"), 2.0);
        assert_eq!(sample(&text, "flint_request_duration_seconds_sum"), 4.0);
    }

    #[test]
    fn every_status_code_is_counted_past_the_slots_and_threads_share_a_slot() {
        let metrics = GatewayMetrics::new().unwrap();
        let rev =
            std::sync::Arc::new(metrics.revision(&RevisionKey::new("ns", "hello", "hello-00001")));
        let t0 = Instant::now();
        // Four threads answer 200 at once, twice each: one counter.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let rev = std::sync::Arc::clone(&rev);
                std::thread::spawn(move || {
                    for _ in 0..2 {
                        let counted = rev.request_started(t0);
                        rev.request_finished(counted, t0, t0, 200);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Then more distinct codes than slots, one of them twice; codes
        // outside 100..=599 count as the nearest end.
        let codes = [
            201, 204, 301, 304, 400, 401, 403, 404, 429, 500, 502, 503, 503, 99, 700,
        ];
        for code in codes {
            let counted = rev.request_started(t0);
            rev.request_finished(counted, t0, t0, code);
        }
        let text = render(&metrics, &rev, t0);
        let count = |code: &str| {
            text.lines()
                .filter(|l| {
                    l.starts_with("flint_requests_total{")
                        && l.contains(&format!("code=\"{code}\""))
                })
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(count("200"), vec![8.0], "{text}");
        assert_eq!(count("503"), vec![2.0]);
        assert_eq!(count("100"), vec![1.0]);
        assert_eq!(count("599"), vec![1.0]);
        for code in [
            "201", "204", "301", "304", "400", "401", "403", "404", "429", "500", "502",
        ] {
            assert_eq!(count(code), vec![1.0], "code {code}");
        }
        let series = text
            .lines()
            .filter(|l| l.starts_with("flint_requests_total{"))
            .count();
        assert_eq!(series, 15);
    }

    /// The text written is the `prometheus` library encoder's, line for
    /// line, for the same observations: dashboards, alerts and the
    /// autoscaler's readers see no difference.
    #[test]
    fn the_text_is_what_the_library_encoder_writes() {
        use prometheus::{
            CounterVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
        };
        let metrics = GatewayMetrics::new().unwrap();
        let rev = metrics.revision(&RevisionKey::new("ns", "hello", "hello-00001"));
        let t0 = Instant::now();
        let answered = [(0.0005, 200), (0.3, 200), (40.0, 503), (1.0, 200)];
        for (seconds, code) in answered {
            let counted = rev.request_started(t0);
            rev.request_finished(counted, t0, t0 + Duration::from_secs_f64(seconds), code);
        }
        rev.cold_start_began();
        rev.cold_start_ended(Duration::from_millis(700));
        rev.queue_overflowed();
        rev.set_queue_depth(0);
        let ours = render(&metrics, &rev, t0 + Duration::from_secs(50));
        let concurrency = sample(&ours, names::REQUEST_CONCURRENCY_SECONDS_TOTAL);

        // The same through the library, as the gateway exported it before.
        let labels = ["ns", "hello", "hello-00001"];
        let rev_labels = [
            names::LABEL_NAMESPACE,
            names::LABEL_FUNCTION,
            names::LABEL_REVISION,
        ];
        let registry = prometheus::Registry::new();
        let help = |f: Family| f.describe().1;
        let histogram = |f: Family| {
            HistogramVec::new(
                HistogramOpts::new(f.describe().0, help(f)).buckets(DURATION_BUCKETS.to_vec()),
                &rev_labels,
            )
            .unwrap()
        };
        let int_counter = |f: Family| {
            IntCounterVec::new(Opts::new(f.describe().0, help(f)), &rev_labels).unwrap()
        };
        let gauge =
            |f: Family| IntGaugeVec::new(Opts::new(f.describe().0, help(f)), &rev_labels).unwrap();
        let requests = IntCounterVec::new(
            Opts::new(names::REQUESTS_TOTAL, help(Family::Requests)),
            &[
                names::LABEL_NAMESPACE,
                names::LABEL_FUNCTION,
                names::LABEL_REVISION,
                names::LABEL_CODE,
            ],
        )
        .unwrap();
        let durations = histogram(Family::Durations);
        let cold_durations = histogram(Family::ColdStartDurations);
        let in_flight = gauge(Family::InFlight);
        let queue = gauge(Family::QueueDepth);
        let overflow = int_counter(Family::Overflow);
        let cold = int_counter(Family::ColdStarts);
        let conc = CounterVec::new(
            Opts::new(
                names::REQUEST_CONCURRENCY_SECONDS_TOTAL,
                help(Family::Concurrency),
            ),
            &rev_labels,
        )
        .unwrap();
        for (seconds, code) in answered {
            let code = code.to_string();
            requests
                .with_label_values(&[labels[0], labels[1], labels[2], code.as_str()])
                .inc();
            durations.with_label_values(&labels).observe(seconds);
        }
        cold.with_label_values(&labels).inc();
        cold_durations.with_label_values(&labels).observe(0.7);
        overflow.with_label_values(&labels).inc();
        queue.with_label_values(&labels).set(0);
        in_flight.with_label_values(&labels).set(0);
        conc.with_label_values(&labels).inc_by(concurrency);
        registry.register(Box::new(requests)).unwrap();
        registry.register(Box::new(durations)).unwrap();
        registry.register(Box::new(cold_durations)).unwrap();
        registry.register(Box::new(in_flight)).unwrap();
        registry.register(Box::new(queue)).unwrap();
        registry.register(Box::new(overflow)).unwrap();
        registry.register(Box::new(cold)).unwrap();
        registry.register(Box::new(conc)).unwrap();
        let library = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();

        let per_revision = |text: &str| {
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| Family::ALL.iter().any(|f| l.contains(f.describe().0)))
                .map(str::to_owned)
                .collect();
            lines.sort();
            lines
        };
        let (ours, library) = (per_revision(&ours), per_revision(&library));
        assert_eq!(ours.len(), 8 * 2 + 2 + 2 * (14 + 3) + 5, "{ours:#?}");
        assert_eq!(ours, library);
    }

    #[test]
    fn families_use_the_shared_names() {
        let metrics = GatewayMetrics::new().unwrap();
        let rev = metrics.revision(&RevisionKey::new("ns", "hello", "hello-00001"));
        let t0 = Instant::now();
        let counted = rev.request_started(t0);
        rev.request_finished(counted, t0, at(t0, 2000), 200);
        let text = render(&metrics, &rev, at(t0, 2000));
        assert!(text.contains(
            "flint_requests_total{code=\"200\",function=\"hello\",namespace=\"ns\",revision=\"hello-00001\"} 1"
        ));
        assert!(text.contains(
            "flint_request_concurrency_seconds_total{function=\"hello\",namespace=\"ns\",revision=\"hello-00001\"} 2"
        ));
    }

    #[test]
    fn an_idle_revision_leaves_after_the_grace_with_its_final_values_and_comes_back_continuing() {
        let grace = Duration::from_secs(10);
        let metrics = GatewayMetrics::new().unwrap().with_grace(grace);
        let rev = metrics.revision(&RevisionKey::new("ns", "hello", "hello-00001"));
        let t0 = Instant::now();
        // New: exported at zero for the grace (scrapers hold a zero before
        // the first request), then not.
        let text = render(&metrics, &rev, t0);
        assert_eq!(sample(&text, "flint_cold_starts_total"), 0.0);
        assert!(!render(&metrics, &rev, t0 + grace).contains("hello-00001"));
        let counted = rev.request_started(t0);
        rev.request_finished(counted, t0, at(t0, 1000), 200);
        let text = render(&metrics, &rev, at(t0, 1000));
        assert_eq!(sample(&text, "flint_requests_total"), 1.0);
        assert_eq!(sample(&text, "flint_requests_in_flight"), 0.0);
        assert_eq!(sample(&text, "flint_queue_depth"), 0.0);
        // Unchanged, still within the grace: the final values stay.
        let text = render(&metrics, &rev, at(t0, 10_999));
        assert_eq!(sample(&text, "flint_requests_total"), 1.0);
        // Past it: every per-revision family leaves.
        let text = render(&metrics, &rev, at(t0, 11_000));
        assert!(!text.contains("hello-00001"), "{text}");
        // A long request keeps it exported, whatever the grace.
        let counted = rev.request_started(at(t0, 60_000));
        for s in [61, 80, 100] {
            let text = render(&metrics, &rev, at(t0, s * 1000));
            assert_eq!(sample(&text, "flint_requests_in_flight"), 1.0, "at {s}s");
            // The counter continues from where it was, never reset.
            assert_eq!(sample(&text, "flint_requests_total"), 1.0);
        }
        rev.request_finished(counted, at(t0, 60_000), at(t0, 100_500), 200);
        let text = render(&metrics, &rev, at(t0, 101_000));
        assert_eq!(sample(&text, "flint_requests_total"), 2.0);
        assert_eq!(sample(&text, "flint_requests_in_flight"), 0.0);
        assert_eq!(
            sample(&text, "flint_request_concurrency_seconds_total"),
            41.5
        );
        // Queue events count as changes too.
        assert!(!render(&metrics, &rev, at(t0, 200_000)).contains("hello-00001"));
        rev.cold_start_began();
        let text = render(&metrics, &rev, at(t0, 200_001));
        assert_eq!(sample(&text, "flint_cold_starts_total"), 1.0);
    }
}
