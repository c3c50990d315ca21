//! The intake: a request with `Prefer: respond-async`, or one sent to
//! `/async-function/<ns>/<fn>/…`, is stored durably and answered `202
//! Accepted` with its invocation id, instead of being proxied. The gateway
//! asks [`AsyncIntake::wants`] on each request (two cheap header/path
//! checks) and hands over the ones it wants.
//!
//! Here: the intake itself and its settings. `route` decides which
//! requests it takes and for which Function, `accept` stores them, and
//! `answer` words its answers and refusals.

mod accept;
mod answer;
mod route;

use std::sync::Arc;

use futures::future::BoxFuture;

pub use self::answer::FULL_RETRY_AFTER_SECONDS;
pub use self::route::{ASYNC_PATH_PREFIX, Addressed, Routing};
use super::address::AddressPolicy;
use super::invocation::Invocation;
use super::metrics::EventMetrics;
use super::queue::{Enqueued, Queue, QueueError};
use super::targets::Targets;
use crate::budget::MemoryBudget;

/// Default largest request body accepted for asynchronous delivery (NATS's
/// default message limit is 1 MiB, which must also hold the request head).
pub const DEFAULT_MAX_BODY: usize = 512 * 1024;

/// The one thing the intake asks of its queue: to store an invocation.
/// The gateway holds one intake type whichever queue is behind it, and a
/// [`Queue`] cannot be a trait object without naming its ticket type, so
/// the intake keeps its queue as this trait, which every [`Queue`] is.
trait Enqueue: Send + Sync {
    /// Stores `invocation`, as [`Queue::enqueue`] does.
    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>>;
}

impl<Q: Queue> Enqueue for Q {
    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Queue::enqueue(self, invocation)
    }
}

/// Accepts asynchronous invocations onto a queue.
#[derive(Clone)]
pub struct AsyncIntake {
    queue: Arc<dyn Enqueue>,
    targets: Targets,
    metrics: EventMetrics,
    max_body: usize,
    callbacks: Arc<AddressPolicy>,
    budget: MemoryBudget,
}

impl std::fmt::Debug for AsyncIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncIntake")
            .field("max_body", &self.max_body)
            .field("callbacks", &self.callbacks)
            .field("budget", &self.budget.limit())
            .finish_non_exhaustive()
    }
}

impl AsyncIntake {
    /// An intake storing onto `queue` the invocations of `targets`, with
    /// callback URLs refused by the default [`AddressPolicy`].
    pub fn new<Q: Queue>(queue: Arc<Q>, targets: Targets, metrics: EventMetrics) -> Self {
        Self {
            queue,
            targets,
            metrics,
            max_body: DEFAULT_MAX_BODY,
            callbacks: Arc::new(AddressPolicy::default()),
            budget: MemoryBudget::unlimited(),
        }
    }

    /// The same intake charging the bodies it reads and stores to `budget`
    /// (the gateway's, given by [`crate::gateway::Gateway::set_async_intake`]);
    /// a body that does not fit is answered 503 with `Retry-After`.
    pub fn with_memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The same intake checking callback URLs against `policy` (the one
    /// the callbacks connect under).
    pub fn with_callback_policy(mut self, policy: AddressPolicy) -> Self {
        self.callbacks = Arc::new(policy);
        self
    }

    /// The same intake with another body limit.
    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// The async metrics in Prometheus text format (appended to the
    /// gateway's `/metrics`).
    pub fn metrics_text(&self) -> Result<String, crate::metrics::MetricsError> {
        self.metrics
            .encode()
            .map_err(|source| crate::metrics::MetricsError::Register {
                name: "flint_async_*",
                source,
            })
    }
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
