//! Result callbacks: once an invocation is settled, its result (status,
//! headers, body up to a limit) is POSTed to the `X-Callback-Url` it came
//! with. Callbacks run on their own tasks after the invocation is settled,
//! so a slow or failing callback URL never holds up deliveries; each is
//! retried a few times, then dropped with a metric and a log line.
//! Callbacks are best effort: they are not stored durably.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::Full;
use tokio::sync::Semaphore;

use super::deliver::{HttpClient, Outcome, error_chain};
use super::invocation::{INVOCATION_ID_HEADER, Invocation};
use super::metrics::EventMetrics;
use super::policy::{Attempt, Backoff, backoff};

/// Header of a callback: `delivered` or `dead-lettered`.
pub const OUTCOME_HEADER: &str = "x-flint-outcome";
/// Header of a callback: the function's status code (absent without a response).
pub const STATUS_HEADER: &str = "x-flint-status";
/// Header of a callback for a dead letter: why it was given up.
pub const REASON_HEADER: &str = "x-flint-reason";

/// Callback settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackConfig {
    /// Attempts per callback before it is dropped.
    pub attempts: u32,
    /// Backoff between attempts.
    pub backoff: Backoff,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// Callbacks sent at once.
    pub concurrency: usize,
    /// Callbacks waiting to be sent; more are dropped at once.
    pub backlog: usize,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Backoff {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(10),
            },
            timeout: Duration::from_secs(10),
            concurrency: 64,
            backlog: 10_000,
        }
    }
}

/// Sends callbacks in the background.
#[derive(Clone)]
pub struct Callbacks {
    client: HttpClient,
    config: CallbackConfig,
    metrics: EventMetrics,
    slots: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
}

/// How an invocation ended, for its callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled<'a> {
    /// The function handled it.
    Delivered,
    /// It was given up for this reason.
    DeadLettered(&'a str),
}

impl Callbacks {
    /// A sender using `client`.
    pub fn new(client: HttpClient, config: CallbackConfig, metrics: EventMetrics) -> Self {
        Self {
            client,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            queued: Arc::new(AtomicUsize::new(0)),
            config,
            metrics,
        }
    }

    /// Queues the callback of `inv`, if it asked for one. Never waits.
    pub fn send(&self, inv: &Invocation, settled: Settled<'_>, outcome: &Outcome) {
        let Some(url) = inv.callback_url.clone() else {
            return;
        };
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.config.backlog {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.metrics.callback(&inv.target, "dropped");
            tracing::warn!(invocation = %inv.id, %url, "callback dropped: too many callbacks waiting");
            return;
        }
        let request = CallbackRequest::new(inv, settled, outcome);
        let this = self.clone();
        let target = inv.target.clone();
        let id = inv.id.clone();
        tokio::spawn(async move {
            let _slot = this.slots.acquire().await;
            this.run(&url, &request, &target, &id).await;
            this.queued.fetch_sub(1, Ordering::AcqRel);
        });
    }

    async fn run(
        &self,
        url: &str,
        request: &CallbackRequest,
        target: &super::invocation::FunctionId,
        id: &str,
    ) {
        let mut last = String::new();
        for attempt in 1..=self.config.attempts.max(1) {
            if attempt > 1 {
                self.metrics.callback(target, "retried");
                tokio::time::sleep(backoff(self.config.backoff, attempt - 1, rand::random())).await;
            }
            let req = match request.build(url) {
                Ok(req) => req,
                Err(err) => {
                    last = err.to_string();
                    break;
                }
            };
            match tokio::time::timeout(self.config.timeout, self.client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    self.metrics.callback(target, "delivered");
                    return;
                }
                Ok(Ok(resp)) => last = format!("status {}", resp.status().as_u16()),
                Ok(Err(err)) => last = error_chain(&err),
                Err(_) => last = "timed out".to_owned(),
            }
        }
        self.metrics.callback(target, "dropped");
        tracing::warn!(invocation = %id, %url, error = %last, attempts = self.config.attempts, "callback dropped");
    }
}

/// A callback, ready to be sent any number of times.
struct CallbackRequest {
    id: String,
    outcome: &'static str,
    status: Option<u16>,
    reason: Option<String>,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl CallbackRequest {
    fn new(inv: &Invocation, settled: Settled<'_>, outcome: &Outcome) -> Self {
        let (label, reason) = match settled {
            Settled::Delivered => ("delivered", None),
            Settled::DeadLettered(reason) => {
                ("dead-lettered", Some(reason.replace(['\r', '\n'], " ")))
            }
        };
        Self {
            id: inv.id.clone(),
            outcome: label,
            status: match outcome.attempt {
                Attempt::Status(code) => Some(code),
                _ => None,
            },
            reason,
            content_type: outcome.headers.get(header::CONTENT_TYPE).cloned(),
            body: outcome.body.clone(),
        }
    }

    fn build(&self, url: &str) -> Result<Request<Full<Bytes>>, http::Error> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(OUTCOME_HEADER, self.outcome)
            .header(INVOCATION_ID_HEADER, &self.id);
        if let Some(status) = self.status {
            req = req.header(STATUS_HEADER, status);
        }
        if let Some(reason) = &self.reason {
            req = req.header(REASON_HEADER, reason);
        }
        if let Some(ct) = &self.content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req.body(Full::new(self.body.clone()))
    }
}
