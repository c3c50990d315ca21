//! One revision's request accounting, on the request path: label handles
//! resolved once, in-flight counts, their integral and request durations
//! kept per worker thread (no cache line written by two cores), published
//! at each scrape; queue and cold-start metrics. A revision idle for the
//! grace of [`super::expiry`] is left out of `/metrics` (and costs a flag
//! read per scrape) until its next change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use flint_api::backend::RevisionKey;
use flint_api::sync::lock;
use prometheus::core::Metric as _;
use prometheus::local::LocalHistogram;
use prometheus::proto;
use prometheus::{Counter, Histogram, IntCounter, IntCounterVec, IntGauge};

use super::expiry::Expiry;
use super::{GatewayMetrics, Integral};
use crate::shard::Sharded;

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
    /// The request counters of the status codes this revision answered
    /// with, each resolved the first time its code is seen (then a plain
    /// atomic add). A revision answers with a handful of codes, so a few
    /// slots cover them; a ten-thousand-revision gateway pays ~200 bytes
    /// a revision here instead of a slot for each of 500 codes.
    codes: [OnceLock<(u16, IntCounter)>; CODE_SLOTS],
    /// Codes seen after every slot was taken (rare): looked up under a lock.
    more_codes: Mutex<Vec<(u16, IntCounter)>>,
    shares: Sharded<Mutex<Share>>,
    in_flight: IntGauge,
    concurrency: Counter,
    queue_depth: IntGauge,
    overflow: IntCounter,
    cold_starts: IntCounter,
    cold_start_duration: Histogram,
    /// The request-duration histogram the shares flush into.
    durations: Histogram,
    /// Set by every change (a request, a queue or cold-start event), taken
    /// by the next scrape. Read before written, so the request path writes
    /// the cache line once per scrape interval at most.
    touched: AtomicBool,
    /// When the revision last changed, which decides whether it is exported.
    expiry: Mutex<Expiry>,
}

/// The per-revision families, in the order [`RevisionMetrics::collect`]
/// fills them.
pub(super) const FAMILIES: usize = 8;

impl RevisionMetrics {
    /// The handles of `key`'s series in `families`, resolved once.
    pub(super) fn resolve(families: &GatewayMetrics, key: &RevisionKey) -> Self {
        let labels = [
            key.namespace.as_str(),
            key.function.as_str(),
            key.revision.as_str(),
        ];
        let duration = families.durations.with_label_values(&labels);
        Self {
            requests: families.requests.clone(),
            codes: Default::default(),
            more_codes: Mutex::new(Vec::new()),
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
            in_flight: families.in_flight.with_label_values(&labels),
            concurrency: families.concurrency.with_label_values(&labels),
            queue_depth: families.queue_depth.with_label_values(&labels),
            overflow: families.overflow.with_label_values(&labels),
            cold_starts: families.cold_starts.with_label_values(&labels),
            cold_start_duration: families.cold_start_durations.with_label_values(&labels),
            durations: duration.clone(),
            touched: AtomicBool::new(false),
            expiry: Mutex::new(Expiry::created(Instant::now())),
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
        let resolve = || {
            let mut buf = itoa_buf(code);
            self.requests.with_label_values(&[
                self.labels[0].as_str(),
                self.labels[1].as_str(),
                self.labels[2].as_str(),
                code_str(&mut buf),
            ])
        };
        for slot in &self.codes {
            let (seen, counter) = slot.get_or_init(|| (code, resolve()));
            if *seen == code {
                counter.inc();
                return;
            }
        }
        let mut more = lock(&self.more_codes);
        match more.iter().find(|(seen, _)| *seen == code) {
            Some((_, counter)) => counter.inc(),
            None => {
                let counter = resolve();
                counter.inc();
                more.push((code, counter));
            }
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
        self.touch();
        self.queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// A request was refused because the queue was full.
    pub fn queue_overflowed(&self) {
        self.touch();
        self.overflow.inc();
    }

    /// A cold start began.
    pub fn cold_start_began(&self) {
        self.touch();
        self.cold_starts.inc();
    }

    /// A cold start ended after its first request waited `waited`.
    pub fn cold_start_ended(&self, waited: Duration) {
        self.touch();
        self.cold_start_duration.observe(waited.as_secs_f64());
    }
}

impl RevisionMetrics {
    /// Marks a change for the next scrape.
    fn touch(&self) {
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
    }

    /// Prepares a scrape at `now`: whether this revision's series are
    /// exported (see [`super::expiry`]), and if so publishes its shares
    /// first. A revision hidden and untouched since costs two flag reads.
    pub fn scrape(&self, now: Instant, grace: Duration) -> bool {
        let changed =
            self.touched.load(Ordering::Relaxed) && self.touched.swap(false, Ordering::Relaxed);
        let mut expiry = lock(&self.expiry);
        if !changed && !expiry.shown(now, grace) {
            return false;
        }
        self.flush(now);
        let busy = self.in_flight.get() > 0 || self.queue_depth.get() > 0;
        expiry.observe(now, changed, busy, grace)
    }

    /// Appends this revision's series to `into`, one list per family in
    /// the order of [`GatewayMetrics::revision_families`]: requests,
    /// durations, in flight, concurrency, queue depth, overflow, cold
    /// starts, cold-start durations.
    pub(super) fn collect(&self, into: &mut [Vec<proto::Metric>; FAMILIES]) {
        let [
            requests,
            durations,
            in_flight,
            concurrency,
            queue,
            overflow,
            cold,
            cold_durations,
        ] = into;
        requests.extend(
            self.codes
                .iter()
                .filter_map(OnceLock::get)
                .chain(lock(&self.more_codes).iter())
                .map(|(_, c)| c.metric()),
        );
        durations.push(self.durations.metric());
        in_flight.push(self.in_flight.metric());
        concurrency.push(self.concurrency.metric());
        queue.push(self.queue_depth.metric());
        overflow.push(self.overflow.metric());
        cold.push(self.cold_starts.metric());
        cold_durations.push(self.cold_start_duration.metric());
    }
}

/// Status codes a revision resolves without a lock: 200, 201, 204, 304,
/// 400, 401, 404, 500, say.
const CODE_SLOTS: usize = 8;

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
    fn status_codes_render_as_three_digits() {
        for (code, text) in [(200, "200"), (404, "404"), (503, "503"), (101, "101")] {
            let mut buf = itoa_buf(code);
            assert_eq!(code_str(&mut buf), text);
        }
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
