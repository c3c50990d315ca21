//! Where the scaling signal comes from: per revision, the average concurrency
//! (rate of `flint_request_concurrency_seconds_total`) and requests per second
//! (rate of `flint_requests_total`), summed over all gateways.
//!
//! Two sources: [`direct::DirectSource`] scrapes every gateway's `/metrics`;
//! [`prometheus::PromQlSource`] asks a Prometheus server. Both answer for the
//! whole fleet or fail as a whole: a partial answer would under-count load,
//! and the autoscaler holds every revision's scale while its source fails.
//!
//! Both also read the asynchronous backlog per Function,
//! `flint_async_pending`, which the runner takes with
//! [`MetricsSource::take_pending`] after each successful collect. Unlike the
//! request counters it is not summed over gateways: every gateway replica
//! reports the same queue-wide depth, read from the shared queue, so the
//! sources take the maximum over replicas (a sum would count the same
//! invocations once per gateway).

pub mod direct;
pub mod http;
pub mod prometheus;

use std::collections::HashMap;
use std::future::Future;

use flint_api::backend::RevisionKey;

/// One revision's load over the last interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    /// Average requests in flight.
    pub concurrency: f64,
    /// Requests per second.
    pub rps: f64,
}

/// Readings of the revisions asked for. A revision missing from the map has
/// no reading this time (not the same as zero load).
pub type Readings = HashMap<RevisionKey, Reading>;

pub use flint_api::backend::FunctionKey;

/// Pending asynchronous invocations per Function, the maximum over gateway
/// replicas. A Function missing from the map has nothing pending.
pub type Pending = HashMap<FunctionKey, u64>;

/// A gauge value of pending invocations as a count: negative, NaN or
/// fractional parts dropped.
pub(super) fn pending_count(value: f64) -> u64 {
    if value.is_nan() || value <= 0.0 {
        0
    } else if value >= u64::MAX as f64 {
        u64::MAX
    } else {
        value as u64
    }
}

/// Records `n` pending invocations for `key`, keeping the larger reading
/// when the Function was already read (every gateway reports the same
/// queue-wide depth, so the maximum, not the sum, is the backlog).
pub(super) fn raise_pending(pending: &mut Pending, key: FunctionKey, n: u64) {
    let slot = pending.entry(key).or_default();
    *slot = (*slot).max(n);
}

/// Why a source could not produce readings.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An HTTP request failed or timed out.
    #[error("{url}: {reason}")]
    Http {
        /// Where.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A server answered with a non-success status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// Where.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body could not be parsed.
    #[error("{url}: cannot parse the answer: {reason}")]
    Parse {
        /// Where.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Prometheus reports gateways down (or none scraped).
    #[error("gateways not all up according to Prometheus ({up} of {total})")]
    GatewaysDown {
        /// Gateways up.
        up: u64,
        /// Gateways known.
        total: u64,
    },
}

impl SourceError {
    /// Short label for the error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SourceError::Http { .. } => "http",
            SourceError::Status { .. } => "status",
            SourceError::Parse { .. } => "parse",
            SourceError::GatewaysDown { .. } => "gateways_down",
        }
    }
}

/// A source of per-revision readings, polled about once a second.
pub trait MetricsSource: Send + 'static {
    /// Short name for metrics and logs (`direct`, `prometheus`).
    fn name(&self) -> &'static str;
    /// Readings for `revisions` (others may be left out).
    fn collect(
        &mut self,
        revisions: &[RevisionKey],
    ) -> impl Future<Output = Result<Readings, SourceError>> + Send;
    /// The pending asynchronous invocations read by the last successful
    /// [`collect`](MetricsSource::collect), handed out once; `None` when
    /// nothing new was read (or the source does not read the backlog).
    fn take_pending(&mut self) -> Option<Pending> {
        None
    }
}
