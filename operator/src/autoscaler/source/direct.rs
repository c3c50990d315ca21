//! The `direct` source: scrapes every gateway's `/metrics` (Prometheus text
//! format, read by a line reader of its own) and turns counter deltas between
//! two scrapes into rates, summed over gateways. The asynchronous backlog
//! gauge `flint_async_pending` is read in the same scrape and combined by
//! maximum: every gateway replica reports the same queue-wide depth.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use flint_api::backend::RevisionKey;
use flint_api::metrics as names;

use super::http::HttpGet;
use super::{
    FunctionKey, MetricsSource, Pending, Readings, SourceError, pending_count, raise_pending,
};

/// Counter totals of one revision in one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// `flint_request_concurrency_seconds_total`.
    pub concurrency_seconds: f64,
    /// `flint_requests_total`, summed over status codes.
    pub requests: f64,
}

/// What one gateway's `/metrics` says about scaling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scraped {
    /// Counter totals per revision.
    pub totals: HashMap<RevisionKey, Totals>,
    /// `flint_async_pending` per Function (largest value if a Function is
    /// listed twice).
    pub pending: Pending,
}

/// Parses a gateway's `/metrics` text into per-revision counter totals.
pub fn parse_totals(text: &str) -> Result<HashMap<RevisionKey, Totals>, String> {
    parse_scrape(text).map(|s| s.totals)
}

/// Parses a gateway's `/metrics` text into per-revision counter totals and
/// per-Function pending invocations (with the same line reader as
/// [`Ledger::read`]).
pub fn parse_scrape(text: &str) -> Result<Scraped, String> {
    let mut out = Scraped::default();
    for line in text.lines() {
        let Some((metric, labels, value)) = sample(line) else {
            continue;
        };
        let get = |k: &str| label(labels, k).unwrap_or_default().to_owned();
        if metric == names::ASYNC_PENDING {
            let key = FunctionKey::new(get(names::LABEL_NAMESPACE), get(names::LABEL_FUNCTION));
            raise_pending(&mut out.pending, key, pending_count(value));
            continue;
        }
        let key = RevisionKey::new(
            get(names::LABEL_NAMESPACE),
            get(names::LABEL_FUNCTION),
            get(names::LABEL_REVISION),
        );
        let t = out.totals.entry(key).or_default();
        if metric == names::REQUEST_CONCURRENCY_SECONDS_TOTAL {
            t.concurrency_seconds += value;
        } else {
            t.requests += value;
        }
    }
    Ok(out)
}

/// The metrics this source reads.
const READ: [&str; 3] = [
    names::REQUEST_CONCURRENCY_SECONDS_TOTAL,
    names::REQUESTS_TOTAL,
    names::ASYNC_PENDING,
];

/// Merges one gateway's pending counts into `into` by maximum. Every gateway
/// replica reads the same shared queue and reports the same queue-wide
/// depth, so the maximum (not the sum) is the backlog; it also tolerates a
/// replica whose reading is a moment older than the others'.
pub fn merge_pending(into: &mut Pending, from: Pending) {
    for (key, n) in from {
        raise_pending(into, key, n);
    }
}

/// Rate of a counter from `prev` to `now` over `dt` seconds; a counter that
/// went down was reset (gateway restart), so its whole value is the increase.
fn rate(prev: f64, now: f64, dt: f64) -> f64 {
    let inc = if now >= prev { now - prev } else { now };
    if dt > 0.0 { inc / dt } else { 0.0 }
}

/// What one gateway's `/metrics` last said, kept between scrapes: the
/// gateway leaves an idle revision's series out after a grace (the
/// runtime's `metrics::expiry`), so a revision absent from a scrape is one
/// whose counters have not moved, and its totals here stay its last ones.
/// When its series come back, the increase is read from those totals.
#[derive(Debug, Default)]
pub struct Ledger {
    /// When the last scrape arrived (`None` before the first).
    at: Option<Instant>,
    /// The number of the current scrape, to tell this scrape's sums from
    /// older ones without clearing every entry.
    scrape: u64,
    /// Where each revision's entry is, keyed by
    /// `namespace\0function\0revision` (looked up by a reused buffer: no
    /// allocation for a revision already known).
    index: HashMap<Box<str>, usize>,
    /// The revisions' entries.
    entries: Vec<Entry>,
    /// The entries this scrape has (reused): only they are read, so a
    /// scrape costs what it holds, not what the ledger knows.
    seen: Vec<usize>,
    /// The key buffer.
    buf: String,
}

#[derive(Debug)]
struct Entry {
    key: RevisionKey,
    /// The totals the rates are read against (the last scrape that had
    /// the revision); `None` for a revision first seen in this scrape.
    last: Option<Totals>,
    /// This scrape's sums.
    now: Totals,
    /// The scrape `now` belongs to.
    seen_in: u64,
}

/// The most revisions one gateway's ledger keeps: a bound on memory
/// whatever a gateway sends. Past it, new revisions are not read until
/// the ledger is cleared by the gateway leaving the list.
const MAX_REVISIONS: usize = 1 << 18;

impl Ledger {
    /// Reads one scrape of the gateway, taken `at`: adds to `readings`
    /// the rate of every revision the scrape has, against its last totals,
    /// and to `pending` the backlog gauges. Returns whether rates could be
    /// read (false at the gateway's first scrape: no previous to read
    /// against). A revision seen for the first time gives no rate in this
    /// scrape: its totals before are unknown (it may have been idle, and
    /// out of `/metrics`, since before this source started), and reading
    /// them as zero would take its whole history for one second's load.
    pub fn read(
        &mut self,
        text: &str,
        at: Instant,
        readings: &mut Readings,
        pending: &mut Pending,
    ) -> bool {
        self.scrape += 1;
        let scrape = self.scrape;
        for line in text.lines() {
            let Some((metric, labels, value)) = sample(line) else {
                continue;
            };
            if metric == names::ASYNC_PENDING {
                let key = FunctionKey::new(
                    label(labels, names::LABEL_NAMESPACE).unwrap_or_default(),
                    label(labels, names::LABEL_FUNCTION).unwrap_or_default(),
                );
                raise_pending(pending, key, pending_count(value));
                continue;
            }
            let is_conc = metric == names::REQUEST_CONCURRENCY_SECONDS_TOTAL;
            if !is_conc && metric != names::REQUESTS_TOTAL {
                continue;
            }
            let Some(i) = self.entry(labels) else {
                continue;
            };
            let Some(entry) = self.entries.get_mut(i) else {
                continue;
            };
            if entry.seen_in != scrape {
                entry.seen_in = scrape;
                entry.now = Totals::default();
                self.seen.push(i);
            }
            if is_conc {
                entry.now.concurrency_seconds += value;
            } else {
                entry.now.requests += value;
            }
        }
        let dt = self
            .at
            .map(|before| at.saturating_duration_since(before).as_secs_f64());
        self.at = Some(at);
        for i in self.seen.drain(..) {
            let Some(entry) = self.entries.get_mut(i) else {
                continue;
            };
            if let (Some(dt), Some(last)) = (dt, entry.last) {
                let now = entry.now;
                let r = readings.entry(entry.key.clone()).or_default();
                r.concurrency += rate(last.concurrency_seconds, now.concurrency_seconds, dt);
                r.rps += rate(last.requests, now.requests, dt);
            }
            entry.last = Some(entry.now);
        }
        dt.is_some()
    }

    /// The index of the entry of the revision `labels` name, created if new.
    fn entry(&mut self, labels: &str) -> Option<usize> {
        let namespace = label(labels, names::LABEL_NAMESPACE)?;
        let function = label(labels, names::LABEL_FUNCTION)?;
        let revision = label(labels, names::LABEL_REVISION)?;
        self.buf.clear();
        for (i, part) in [namespace, function, revision].into_iter().enumerate() {
            if i > 0 {
                self.buf.push('\0');
            }
            self.buf.push_str(part);
        }
        if let Some(&i) = self.index.get(self.buf.as_str()) {
            return Some(i);
        }
        if self.entries.len() >= MAX_REVISIONS {
            return None;
        }
        let i = self.entries.len();
        self.entries.push(Entry {
            key: RevisionKey::new(namespace, function, revision),
            last: None,
            now: Totals::default(),
            seen_in: 0,
        });
        self.index.insert(self.buf.clone().into_boxed_str(), i);
        Some(i)
    }

    /// Revisions whose totals are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no revision's totals are kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One sample line of a metric this source reads: its name, the text
/// between its braces and its value. Other lines (comments, other
/// metrics, histogram buckets) are `None` after a prefix comparison.
/// Label values in a gateway's `/metrics` are Kubernetes names, which
/// never hold a quote, a backslash or a brace.
fn sample(line: &str) -> Option<(&'static str, &str, f64)> {
    if !line.starts_with("flint_") {
        return None;
    }
    let metric = READ.into_iter().find(|m| {
        line.strip_prefix(*m)
            .is_some_and(|rest| rest.starts_with(['{', ' ']))
    })?;
    let rest = &line[metric.len()..];
    let (labels, value) = match rest.strip_prefix('{') {
        Some(inner) => {
            let close = inner.rfind('}')?;
            (&inner[..close], &inner[close + 1..])
        }
        None => ("", rest),
    };
    // The value, then an optional timestamp.
    let value = value.split_ascii_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((metric, labels, value))
}

/// The value of label `name` in the text between a sample's braces.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = labels;
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim_start_matches([',', ' ']);
        let after = rest[eq + 1..].strip_prefix('"')?;
        let close = after.find('"')?;
        if key == name {
            return Some(&after[..close]);
        }
        rest = &after[close + 1..];
    }
    None
}

/// Scrapes a fixed list of gateway `/metrics` URLs.
pub struct DirectSource {
    urls: Vec<String>,
    http: HttpGet,
    ledgers: HashMap<String, Ledger>,
    pending: Option<Pending>,
}

impl std::fmt::Debug for DirectSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSource")
            .field("urls", &self.urls)
            .finish()
    }
}

impl DirectSource {
    /// A source scraping `urls` (e.g. `http://10.0.0.7:9091/metrics`), each
    /// request bounded by `timeout`.
    pub fn new(urls: Vec<String>, timeout: Duration) -> Self {
        Self {
            urls,
            http: HttpGet::new(timeout),
            ledgers: HashMap::new(),
            pending: None,
        }
    }

    /// Replaces the list of gateways (their pods come and go).
    pub fn set_urls(&mut self, urls: Vec<String>) {
        self.ledgers.retain(|u, _| urls.contains(u));
        self.urls = urls;
    }
}

impl MetricsSource for DirectSource {
    fn name(&self) -> &'static str {
        "direct"
    }

    async fn collect(&mut self, revisions: &[RevisionKey]) -> Result<Readings, SourceError> {
        let scrapes = futures_join(&self.http, &self.urls).await;
        let mut readings: Readings = HashMap::new();
        let mut pending = Pending::new();
        let mut all_have_previous = true;
        for (url, result) in self.urls.iter().zip(scrapes) {
            let (at, body) = result?;
            let text = std::str::from_utf8(&body).map_err(|e| SourceError::Parse {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            let ledger = self.ledgers.entry(url.clone()).or_default();
            all_have_previous &= ledger.read(text, at, &mut readings, &mut pending);
        }
        // A gauge needs no previous scrape: the backlog is known at once.
        self.pending = Some(pending);
        if !all_have_previous {
            // A new gateway: no rate until its second scrape.
            return Ok(HashMap::new());
        }
        // Every gateway answered: a revision asked for that none of them
        // shows (idle, its series out of /metrics) has no load.
        for key in revisions {
            readings.entry(key.clone()).or_default();
        }
        Ok(readings)
    }

    fn take_pending(&mut self) -> Option<Pending> {
        self.pending.take()
    }
}

/// Scrapes all URLs concurrently, stamping each answer with its arrival time.
async fn futures_join(
    http: &HttpGet,
    urls: &[String],
) -> Vec<Result<(Instant, bytes::Bytes), SourceError>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, url) in urls.iter().enumerate() {
        let http = http.clone();
        let url = url.clone();
        set.spawn(async move {
            let body = http.get(&url).await;
            (i, body.map(|b| (Instant::now(), b)))
        });
    }
    let mut out: Vec<Option<Result<(Instant, bytes::Bytes), SourceError>>> =
        (0..urls.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined
            && let Some(slot) = out.get_mut(i)
        {
            *slot = Some(r);
        }
    }
    out.into_iter()
        .zip(urls)
        .map(|(r, url)| {
            r.unwrap_or_else(|| {
                Err(SourceError::Http {
                    url: url.clone(),
                    reason: "scrape task failed".to_owned(),
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::source::Reading;

    const TEXT: &str = r#"# HELP flint_requests_total Requests answered, by status code.
# TYPE flint_requests_total counter
flint_requests_total{code="200",function="hello",namespace="default",revision="hello-00001"} 10
flint_requests_total{code="503",function="hello",namespace="default",revision="hello-00001"} 2
flint_requests_total{code="200",function="other",namespace="ns",revision="other-00003"} 7
# HELP flint_request_concurrency_seconds_total Time integral of in-flight requests.
# TYPE flint_request_concurrency_seconds_total counter
flint_request_concurrency_seconds_total{function="hello",namespace="default",revision="hello-00001"} 4.5
# HELP flint_requests_in_flight In flight.
# TYPE flint_requests_in_flight gauge
flint_requests_in_flight{function="hello",namespace="default",revision="hello-00001"} 3
"#;

    #[test]
    fn parses_counters_per_revision_summing_status_codes() {
        let t = parse_totals(TEXT).unwrap();
        assert_eq!(
            t[&RevisionKey::new("default", "hello", "hello-00001")],
            Totals {
                concurrency_seconds: 4.5,
                requests: 12.0
            }
        );
        assert_eq!(
            t[&RevisionKey::new("ns", "other", "other-00003")],
            Totals {
                concurrency_seconds: 0.0,
                requests: 7.0
            }
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn reads_pending_per_function_and_merges_gateways_by_maximum() {
        let text = r#"# TYPE flint_async_pending gauge
flint_async_pending{function="hello",namespace="default"} 40
flint_async_pending{function="other",namespace="ns"} 3
# TYPE flint_async_oldest_pending_age_seconds gauge
flint_async_oldest_pending_age_seconds{function="hello",namespace="default"} 12
"#;
        let scraped = parse_scrape(text).unwrap();
        assert!(scraped.totals.is_empty());
        let hello = FunctionKey::new("default", "hello");
        let other = FunctionKey::new("ns", "other");
        assert_eq!(
            scraped.pending,
            Pending::from([(hello.clone(), 40), (other.clone(), 3)])
        );
        // A second gateway replica reports the same queue a moment later.
        let mut all = scraped.pending;
        merge_pending(
            &mut all,
            Pending::from([(hello.clone(), 38), (other.clone(), 5)]),
        );
        assert_eq!(all, Pending::from([(hello, 40), (other, 5)]));
        assert_eq!(pending_count(-1.0), 0);
        assert_eq!(pending_count(f64::NAN), 0);
        assert_eq!(pending_count(7.9), 7);
    }

    #[test]
    fn only_the_metrics_read_reach_the_parser() {
        for (line, read) in [
            ("# TYPE flint_requests_total counter", false),
            ("flint_requests_total{code=\"200\"} 1", true),
            ("flint_requests_total 1", true),
            (
                "flint_request_concurrency_seconds_total{revision=\"a\"} 2",
                true,
            ),
            ("flint_async_pending{function=\"f\"} 3", true),
            ("flint_requests_total{code=\"200\"} notanumber", false),
            ("flint_requests_total{code=\"200\"", false),
            ("# HELP flint_requests_total Requests answered.", false),
            ("flint_requests_totals{code=\"200\"} 1", false),
            ("flint_requests_total_bucket{le=\"0.1\"} 1", false),
            ("flint_request_duration_seconds_bucket{le=\"0.1\"} 1", false),
            ("# TYPE flint_async_pending_x gauge", false),
            ("", false),
        ] {
            assert_eq!(sample(line).is_some(), read, "{line}");
        }
        // Lines dropped before the parse change nothing in what is read.
        let noisy = format!(
            "{TEXT}# TYPE flint_request_duration_seconds histogram\n\
             flint_request_duration_seconds_bucket{{function=\"hello\",namespace=\"default\",revision=\"hello-00001\",le=\"0.1\"}} 9\n\
             flint_requests_totals{{function=\"hello\",namespace=\"default\",revision=\"hello-00001\"}} 99\n"
        );
        assert_eq!(parse_totals(&noisy).unwrap(), parse_totals(TEXT).unwrap());
    }

    #[test]
    fn counter_reset_counts_the_new_value() {
        assert_eq!(rate(10.0, 14.0, 2.0), 2.0);
        assert_eq!(rate(10.0, 3.0, 1.0), 3.0);
        assert_eq!(rate(1.0, 2.0, 0.0), 0.0);
    }

    fn hello() -> RevisionKey {
        RevisionKey::new("default", "hello", "hello-00001")
    }

    fn line(requests: u64, conc: f64) -> String {
        format!(
            "flint_requests_total{{code=\"200\",function=\"hello\",namespace=\"default\",revision=\"hello-00001\"}} {requests}\n\
             flint_request_concurrency_seconds_total{{function=\"hello\",namespace=\"default\",revision=\"hello-00001\"}} {conc}\n"
        )
    }

    fn read(ledger: &mut Ledger, text: &str, at: Instant) -> (bool, Readings) {
        let mut readings = Readings::new();
        let ok = ledger.read(text, at, &mut readings, &mut Pending::new());
        (ok, readings)
    }

    #[test]
    fn a_revision_out_of_the_scrape_keeps_its_totals_and_its_return_reads_the_increase() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut ledger = Ledger::default();
        // First scrape: no rates yet.
        assert_eq!(
            read(&mut ledger, &line(100, 50.0), t0),
            (false, Readings::new())
        );
        let (ok, r) = read(&mut ledger, &line(104, 52.0), s(2));
        assert!(ok);
        assert_eq!(
            r[&hello()],
            Reading {
                concurrency: 1.0,
                rps: 2.0
            }
        );
        // Idle: the gateway leaves the series out; no reading, totals kept.
        for n in 3..10 {
            let (ok, r) = read(&mut ledger, "", s(n));
            assert!(ok);
            assert!(r.is_empty());
        }
        // Back with one more request: the increase since the kept totals.
        let (_, r) = read(&mut ledger, &line(105, 53.0), s(10));
        assert_eq!(
            r[&hello()],
            Reading {
                concurrency: 1.0,
                rps: 1.0
            }
        );
        // A gateway restart (counters lower): the whole new value counts.
        let (_, r) = read(&mut ledger, &line(2, 1.0), s(11));
        assert_eq!(
            r[&hello()],
            Reading {
                concurrency: 1.0,
                rps: 2.0
            }
        );
        assert_eq!(ledger.len(), 1);
    }

    #[test]
    fn a_revision_seen_first_after_the_first_scrape_gives_no_rate_until_its_second() {
        let t0 = Instant::now();
        let mut ledger = Ledger::default();
        read(&mut ledger, "", t0);
        // Its whole history must not be read as one second's load.
        let (ok, r) = read(&mut ledger, &line(5000, 900.0), t0 + Duration::from_secs(1));
        assert!(ok);
        assert!(r.is_empty());
        let (_, r) = read(&mut ledger, &line(5001, 900.5), t0 + Duration::from_secs(2));
        assert_eq!(
            r[&hello()],
            Reading {
                concurrency: 0.5,
                rps: 1.0
            }
        );
    }

    #[test]
    fn labels_are_read_in_any_order_and_bad_lines_are_skipped() {
        assert_eq!(label(r#"a="1",b="2",c="3""#, "b"), Some("2"));
        assert_eq!(label(r#"c="3", a="1""#, "a"), Some("1"));
        assert_eq!(label(r#"a="1""#, "z"), None);
        assert_eq!(label(r#"a"#, "a"), None);
        assert_eq!(label(r#"a=1"#, "a"), None);
        assert_eq!(label("", "a"), None);
        let mut ledger = Ledger::default();
        let junk =
            "flint_requests_total{code=\"200\"} 1\nflint_requests_total{namespace=\"a\" 1\n\u{0}\n";
        let (_, r) = read(&mut ledger, junk, Instant::now());
        assert!(r.is_empty());
        assert_eq!(ledger.len(), 0);
    }
}
