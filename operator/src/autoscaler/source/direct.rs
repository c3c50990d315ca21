//! The `direct` source: scrapes every gateway's `/metrics` (Prometheus text
//! format, parsed with `prometheus-parse`) and turns counter deltas between
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
/// per-Function pending invocations.
pub fn parse_scrape(text: &str) -> Result<Scraped, String> {
    let lines = text
        .lines()
        .filter(|l| read_here(l))
        .map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| e.to_string())?;
    let mut out = Scraped::default();
    for sample in scrape.samples {
        let is_conc = sample.metric == names::REQUEST_CONCURRENCY_SECONDS_TOTAL;
        let is_req = sample.metric == names::REQUESTS_TOTAL;
        let is_pending = sample.metric == names::ASYNC_PENDING;
        if !is_conc && !is_req && !is_pending {
            continue;
        }
        let value = match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Gauge(v) => v,
            _ => continue,
        };
        let label = |k: &str| sample.labels.get(k).unwrap_or_default().to_owned();
        if is_pending {
            let key = FunctionKey::new(label(names::LABEL_NAMESPACE), label(names::LABEL_FUNCTION));
            raise_pending(&mut out.pending, key, pending_count(value));
            continue;
        }
        let key = RevisionKey::new(
            label(names::LABEL_NAMESPACE),
            label(names::LABEL_FUNCTION),
            label(names::LABEL_REVISION),
        );
        let t = out.totals.entry(key).or_default();
        if is_conc {
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

/// Whether a line of exposition text is a sample or the `# TYPE` line of a
/// metric in [`READ`]. Everything else — most of a gateway's `/metrics`,
/// histogram buckets above all — is dropped before the (regex-based) parse:
/// with a thousand revisions that parse was most of an idle `flint dev`'s
/// CPU.
fn read_here(line: &str) -> bool {
    let name = line.strip_prefix("# TYPE ").unwrap_or(line);
    READ.iter().any(|metric| {
        name.strip_prefix(metric)
            .is_some_and(|rest| rest.starts_with(['{', ' ']))
    })
}

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

struct Previous {
    at: Instant,
    totals: HashMap<RevisionKey, Totals>,
}

/// Scrapes a fixed list of gateway `/metrics` URLs.
pub struct DirectSource {
    urls: Vec<String>,
    http: HttpGet,
    previous: HashMap<String, Previous>,
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
            previous: HashMap::new(),
            pending: None,
        }
    }

    /// Replaces the list of gateways (their pods come and go).
    pub fn set_urls(&mut self, urls: Vec<String>) {
        self.previous.retain(|u, _| urls.contains(u));
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
            let text = String::from_utf8_lossy(&body);
            let scraped = parse_scrape(&text).map_err(|reason| SourceError::Parse {
                url: url.clone(),
                reason,
            })?;
            let totals = scraped.totals;
            merge_pending(&mut pending, scraped.pending);
            match self.previous.get(url) {
                Some(prev) => {
                    let dt = at.duration_since(prev.at).as_secs_f64();
                    for (key, now) in &totals {
                        let before = prev.totals.get(key).copied().unwrap_or_default();
                        let r = readings.entry(key.clone()).or_default();
                        r.concurrency +=
                            rate(before.concurrency_seconds, now.concurrency_seconds, dt);
                        r.rps += rate(before.requests, now.requests, dt);
                    }
                }
                None => all_have_previous = false,
            }
            self.previous.insert(url.clone(), Previous { at, totals });
        }
        // A gauge needs no previous scrape: the backlog is known at once.
        self.pending = Some(pending);
        if !all_have_previous {
            // A new gateway: no rate until its second scrape.
            return Ok(HashMap::new());
        }
        // Every gateway answered: a revision none of them has seen has no load.
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
            ("# TYPE flint_requests_total counter", true),
            ("flint_requests_total{code=\"200\"} 1", true),
            ("flint_requests_total 1", true),
            (
                "flint_request_concurrency_seconds_total{revision=\"a\"} 2",
                true,
            ),
            ("flint_async_pending{function=\"f\"} 3", true),
            ("# HELP flint_requests_total Requests answered.", false),
            ("flint_requests_totals{code=\"200\"} 1", false),
            ("flint_requests_total_bucket{le=\"0.1\"} 1", false),
            ("flint_request_duration_seconds_bucket{le=\"0.1\"} 1", false),
            ("# TYPE flint_async_pending_x gauge", false),
            ("", false),
        ] {
            assert_eq!(read_here(line), read, "{line}");
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
}
