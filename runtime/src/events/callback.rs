//! Result callbacks: once an invocation is settled, its result (status,
//! headers, body up to a limit) is POSTed to the `X-Callback-Url` it came
//! with. Callbacks run on their own tasks after the invocation is settled,
//! so a slow or failing callback URL never holds up deliveries; each is
//! retried a few times, then dropped with a metric and a log line.
//! Callbacks are best effort: they are not stored durably. They connect
//! only to addresses the [`AddressPolicy`] allows ([`PolicyConnector`]); a
//! refused address is not retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

use super::address::AddressPolicy;
use super::connect::{CallbackTargetError, PolicyConnector};
use super::deliver::{Outcome, error_chain};
use super::invocation::{INVOCATION_ID_HEADER, Invocation};
use super::metrics::EventMetrics;
use super::policy::{Attempt, Backoff, backoff};
use crate::budget::{MemoryBudget, Use};

/// Header of a callback: `delivered` or `dead-lettered`.
pub const OUTCOME_HEADER: &str = "x-flint-outcome";
/// Header of a callback: the function's status code (absent without a response).
pub const STATUS_HEADER: &str = "x-flint-status";
/// Header of a callback for a dead letter: why it was given up.
pub const REASON_HEADER: &str = "x-flint-reason";

/// What a callback waiting to be sent holds beside its body: its task, its
/// headers and the request built from them, charged to the memory budget.
const CALLBACK_OVERHEAD: usize = 4 * 1024;

/// The HTTP client of the callbacks, connecting under the address policy.
pub type CallbackClient = Client<PolicyConnector, Full<Bytes>>;

/// A pooled HTTP/1 client that connects only where `policy` allows.
pub fn client(policy: Arc<AddressPolicy>) -> CallbackClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(PolicyConnector::new(policy))
}

/// Callback settings.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Which addresses callbacks may reach (checked at the intake and on
    /// every connection).
    pub addresses: AddressPolicy,
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
            addresses: AddressPolicy::default(),
        }
    }
}

/// Sends callbacks in the background.
#[derive(Clone)]
pub struct Callbacks {
    client: CallbackClient,
    config: CallbackConfig,
    metrics: EventMetrics,
    slots: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    budget: MemoryBudget,
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
    /// A sender with its own client, connecting where `config.addresses`
    /// allows.
    pub fn new(config: CallbackConfig, metrics: EventMetrics) -> Self {
        Self {
            client: client(Arc::new(config.addresses.clone())),
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            queued: Arc::new(AtomicUsize::new(0)),
            budget: MemoryBudget::unlimited(),
            config,
            metrics,
        }
    }

    /// The same sender charging each callback's body, until it is sent, to
    /// `budget`; a callback that does not fit is dropped.
    pub fn with_memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Queues the callback of `inv`, if it asked for one. Never waits. A
    /// callback is dropped when too many wait already, or when the memory
    /// budget has no room for its body.
    pub fn send(&self, inv: &Invocation, settled: Settled<'_>, outcome: &Outcome) {
        let Some(url) = inv.callback_url.clone() else {
            return;
        };
        let charge = match self
            .budget
            .charge(Use::CallbackBody, outcome.body.len() + CALLBACK_OVERHEAD)
        {
            Ok(charge) => charge,
            Err(over) => {
                self.metrics.callback(&inv.target, "dropped");
                tracing::warn!(invocation = %inv.id, %url, wanted = over.wanted, held = over.held, limit = over.limit, "callback dropped: the memory budget is spent");
                return;
            }
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
            drop(charge);
        });
    }

    async fn run(
        &self,
        url: &str,
        request: &CallbackRequest,
        target: &super::invocation::FunctionKey,
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
                Ok(Err(err)) if refused(&err) => {
                    // The address is not allowed: trying again cannot help.
                    self.metrics.callback(target, "refused");
                    tracing::warn!(invocation = %id, %url, error = %error_chain(&err), "callback refused by the address policy");
                    return;
                }
                Ok(Err(err)) => last = error_chain(&err),
                Err(_) => last = "timed out".to_owned(),
            }
        }
        self.metrics.callback(target, "dropped");
        tracing::warn!(invocation = %id, %url, error = %last, attempts = self.config.attempts, "callback dropped");
    }
}

/// Whether `err` comes from the address policy refusing every address.
fn refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(CallbackTargetError::Refused { .. }) = e.downcast_ref::<CallbackTargetError>() {
            return true;
        }
        source = e.source();
    }
    false
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
            // A copy of its own size: the charged bytes are all it holds
            // (the delivery's buffer, possibly larger, is freed with it).
            body: Bytes::copy_from_slice(&outcome.body),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::address::loopback;
    use crate::events::invocation::{FunctionKey, now_ms};

    fn invocation(callback: String) -> Invocation {
        Invocation {
            id: "cb-1".into(),
            target: FunctionKey::new("default", "work"),
            method: "POST".into(),
            uri: "/".into(),
            host: None,
            headers: Vec::new(),
            callback_url: Some(callback),
            enqueued_at_ms: now_ms(),
            body: Bytes::new(),
        }
    }

    fn outcome() -> Outcome {
        Outcome {
            attempt: Attempt::Status(200),
            headers: http::HeaderMap::new(),
            body: Bytes::from_static(b"ok"),
            error: None,
        }
    }

    fn count(metrics: &EventMetrics, result: &str) -> usize {
        let line = format!(
            "flint_async_callbacks_total{{function=\"work\",namespace=\"default\",result=\"{result}\"}} "
        );
        metrics
            .encode()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&line)?.parse().ok())
            .unwrap_or(0)
    }

    /// A callback the memory budget has no room for is dropped before it
    /// connects; one that fits holds its body's bytes until it is sent.
    #[tokio::test]
    async fn a_callback_over_the_memory_budget_is_dropped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepts);
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        let metrics = EventMetrics::new().unwrap();
        let config = CallbackConfig {
            addresses: AddressPolicy::new(loopback(), Vec::new()),
            attempts: 1,
            ..CallbackConfig::default()
        };
        let budget = MemoryBudget::new(CALLBACK_OVERHEAD + 1);
        let callbacks = Callbacks::new(config, metrics.clone()).with_memory_budget(budget.clone());
        let url = format!("http://{addr}/cb");
        // "ok" is two bytes: one more than the budget has room for.
        callbacks.send(&invocation(url.clone()), Settled::Delivered, &outcome());
        assert_eq!(count(&metrics, "dropped"), 1);
        assert_eq!(budget.refused(Use::CallbackBody), 1);
        assert_eq!(budget.held(), 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(accepts.load(Ordering::SeqCst), 0, "never connected");
        let roomy = MemoryBudget::new(1 << 20);
        let metrics = EventMetrics::new().unwrap();
        let config = CallbackConfig {
            addresses: AddressPolicy::new(loopback(), Vec::new()),
            attempts: 1,
            ..CallbackConfig::default()
        };
        let callbacks = Callbacks::new(config, metrics.clone()).with_memory_budget(roomy.clone());
        callbacks.send(&invocation(url), Settled::Delivered, &outcome());
        assert_eq!(roomy.held(), 2 + CALLBACK_OVERHEAD, "held until sent");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while roomy.held() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(roomy.held(), 0, "given back once sent (here: dropped)");
        assert!(accepts.load(Ordering::SeqCst) >= 1);
    }

    /// A policy change between the intake and the callback (or a name
    /// that resolves elsewhere the second time) meets the connector's own
    /// check: nothing connects, and the callback is not retried.
    #[tokio::test]
    async fn a_refused_address_is_never_connected_to() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepts);
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        let quick = CallbackConfig {
            backoff: Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
            },
            ..CallbackConfig::default()
        };
        for (url, allowed) in [
            (format!("http://{addr}/cb"), false),
            (format!("http://localhost:{}/cb", addr.port()), false),
            (format!("http://{addr}/cb"), true),
        ] {
            let metrics = EventMetrics::new().unwrap();
            let config = CallbackConfig {
                addresses: if allowed {
                    AddressPolicy::new(loopback(), Vec::new())
                } else {
                    AddressPolicy::default()
                },
                ..quick.clone()
            };
            let before = accepts.load(Ordering::SeqCst);
            let callbacks = Callbacks::new(config, metrics.clone());
            callbacks.send(&invocation(url.clone()), Settled::Delivered, &outcome());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let result = if allowed { "retried" } else { "refused" };
            while count(&metrics, result) == 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if allowed {
                // Connected (the endpoint hangs up at once, so it is retried).
                assert!(count(&metrics, result) >= 1, "{url}: {result}");
                assert!(accepts.load(Ordering::SeqCst) > before, "{url} connected");
            } else {
                assert_eq!(count(&metrics, result), 1, "{url}: {result}");
                assert_eq!(
                    accepts.load(Ordering::SeqCst),
                    before,
                    "{url} never connected"
                );
                assert_eq!(count(&metrics, "retried"), 0, "{url} not retried");
            }
        }
    }
}
