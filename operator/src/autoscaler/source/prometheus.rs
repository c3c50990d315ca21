//! The `prometheus` source: PromQL instant queries against a Prometheus
//! server's HTTP API, for clusters that already scrape the gateways.
//!
//! Concurrency = `sum by (namespace, function, revision)
//! (rate(flint_request_concurrency_seconds_total[range]))`, RPS the same over
//! `flint_requests_total`. `min(up{selector})` must be 1, or the answer may
//! be missing a gateway and the source fails rather than under-count.
//!
//! The backlog is `max by (namespace, function) (flint_async_pending)`: every
//! gateway replica reports the same queue-wide depth, so the maximum over
//! replicas is the backlog (a sum would count it once per gateway).

use std::collections::HashMap;
use std::time::Duration;

use flint_api::backend::RevisionKey;
use flint_api::metrics as names;
use serde::Deserialize;

use super::http::HttpGet;
use super::{FunctionKey, MetricsSource, Pending, Reading, Readings, SourceError, pending_count};

/// Settings of the PromQL source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromQlConfig {
    /// Base URL of the Prometheus server, e.g. `http://prometheus:9090`.
    pub url: String,
    /// Range of the `rate()` windows (at least two scrape intervals).
    pub range: Duration,
    /// Label matchers selecting the gateway targets, e.g. `job="flint-gateway"`.
    pub gateway_selector: String,
    /// Timeout of each query.
    pub timeout: Duration,
}

/// Queries a Prometheus server.
#[derive(Debug)]
pub struct PromQlSource {
    cfg: PromQlConfig,
    http: HttpGet,
    pending: Option<Pending>,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: HashMap<String, String>,
    value: (f64, String),
}

/// Percent-encodes a query parameter value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl PromQlSource {
    /// A source for the server and settings in `cfg`.
    pub fn new(cfg: PromQlConfig) -> Self {
        let http = HttpGet::new(cfg.timeout);
        Self {
            cfg,
            http,
            pending: None,
        }
    }

    /// The backlog query: the largest pending count any gateway reports,
    /// per Function (they all read the same shared queue).
    fn pending_query(&self) -> String {
        format!(
            "max by ({ns}, {f}) ({metric}{{{sel}}})",
            ns = names::LABEL_NAMESPACE,
            f = names::LABEL_FUNCTION,
            metric = names::ASYNC_PENDING,
            sel = self.cfg.gateway_selector,
        )
    }

    fn rate_query(&self, metric: &str) -> String {
        format!(
            "sum by ({ns}, {f}, {r}) (rate({metric}{{{sel}}}[{range}s]))",
            ns = names::LABEL_NAMESPACE,
            f = names::LABEL_FUNCTION,
            r = names::LABEL_REVISION,
            sel = self.cfg.gateway_selector,
            range = self.cfg.range.as_secs().max(1),
        )
    }

    async fn query(&self, promql: &str) -> Result<Vec<Series>, SourceError> {
        let url = format!(
            "{}/api/v1/query?query={}",
            self.cfg.url.trim_end_matches('/'),
            encode(promql)
        );
        let body = self.http.get(&url).await?;
        let parse = |reason: String| SourceError::Parse {
            url: url.clone(),
            reason,
        };
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| parse(e.to_string()))?;
        if answer.status != "success" {
            return Err(parse(answer.error.unwrap_or(answer.status)));
        }
        Ok(answer.data.map(|d| d.result).unwrap_or_default())
    }

    fn value(series: &Series) -> f64 {
        series
            .value
            .1
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .unwrap_or(0.0)
    }
}

impl MetricsSource for PromQlSource {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    async fn collect(&mut self, revisions: &[RevisionKey]) -> Result<Readings, SourceError> {
        let up_query = format!(
            "count(up{{{sel}}}) or vector(0)",
            sel = self.cfg.gateway_selector
        );
        let up_sum = format!(
            "sum(up{{{sel}}}) or vector(0)",
            sel = self.cfg.gateway_selector
        );
        let total = self
            .query(&up_query)
            .await?
            .first()
            .map_or(0.0, Self::value);
        let up = self.query(&up_sum).await?.first().map_or(0.0, Self::value);
        if total < 1.0 || up < total {
            return Err(SourceError::GatewaysDown {
                up: up as u64,
                total: total as u64,
            });
        }
        let mut readings: Readings = HashMap::new();
        for (metric, is_conc) in [
            (names::REQUEST_CONCURRENCY_SECONDS_TOTAL, true),
            (names::REQUESTS_TOTAL, false),
        ] {
            for s in self.query(&self.rate_query(metric)).await? {
                let label = |k: &str| s.metric.get(k).cloned().unwrap_or_default();
                let key = RevisionKey::new(
                    label(names::LABEL_NAMESPACE),
                    label(names::LABEL_FUNCTION),
                    label(names::LABEL_REVISION),
                );
                let r: &mut Reading = readings.entry(key).or_default();
                if is_conc {
                    r.concurrency += Self::value(&s);
                } else {
                    r.rps += Self::value(&s);
                }
            }
        }
        let mut pending = Pending::new();
        for s in self.query(&self.pending_query()).await? {
            let label = |k: &str| s.metric.get(k).cloned().unwrap_or_default();
            let key = FunctionKey::new(label(names::LABEL_NAMESPACE), label(names::LABEL_FUNCTION));
            pending.insert(key, pending_count(Self::value(&s)));
        }
        for key in revisions {
            readings.entry(key.clone()).or_default();
        }
        self.pending = Some(pending);
        Ok(readings)
    }

    fn take_pending(&mut self) -> Option<Pending> {
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_promql_for_a_query_string() {
        assert_eq!(
            encode(r#"sum(up{job="g"}) [5s]"#),
            "sum%28up%7Bjob%3D%22g%22%7D%29%20%5B5s%5D"
        );
    }

    #[test]
    fn rate_query_sums_by_revision() {
        let s = PromQlSource::new(PromQlConfig {
            url: "http://p:9090".into(),
            range: Duration::from_secs(10),
            gateway_selector: r#"job="flint-gateway""#.into(),
            timeout: Duration::from_secs(1),
        });
        assert_eq!(
            s.rate_query(names::REQUESTS_TOTAL),
            r#"sum by (namespace, function, revision) (rate(flint_requests_total{job="flint-gateway"}[10s]))"#
        );
        assert_eq!(
            s.pending_query(),
            r#"max by (namespace, function) (flint_async_pending{job="flint-gateway"})"#
        );
    }
}
