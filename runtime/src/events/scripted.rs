//! A queue for tests: the test scripts enqueue, fetch and complete; the
//! rest of [`Queue`] (retry, dead letters, depth) does nothing. Tests of the
//! intake, the worker and the gateway's memory budget need a queue whose
//! behaviour they choose, not a store.

use std::time::Duration;

use futures::future::BoxFuture;

use super::invocation::{FunctionKey, Invocation};
use super::queue::{DeadLetter, Delivery, Depth, Enqueued, FetchLimits, Queue, QueueError};

/// The ticket of a scripted delivery: a label the script chooses (a
/// scripted queue has nothing to settle, but a test may want to see which
/// delivery was settled).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScriptedTicket(pub String);

/// The parts of a queue a test scripts. Each default is what an empty,
/// accepting queue does.
pub trait Script: Send + Sync + 'static {
    /// Stores `invocation` (default: accepts and forgets it).
    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        drop(invocation);
        Box::pin(async { Ok(Enqueued::New) })
    }

    /// Hands out due invocations (default: none, after waiting `limits.wait`
    /// as a real queue's long poll does).
    fn fetch<'a>(
        &'a self,
        target: &'a FunctionKey,
        limits: FetchLimits,
    ) -> BoxFuture<'a, Result<Vec<Delivery<ScriptedTicket>>, QueueError>> {
        let _ = target;
        Box::pin(async move {
            tokio::time::sleep(limits.wait).await;
            Ok(Vec::new())
        })
    }

    /// Settles a delivered invocation (default: nothing to settle).
    fn complete(&self, ticket: ScriptedTicket) -> BoxFuture<'_, Result<(), QueueError>> {
        drop(ticket);
        Box::pin(async { Ok(()) })
    }
}

/// A [`Queue`] made of a [`Script`]: retries, dead letters and depth are
/// accepted and forgotten.
pub struct Scripted<S>(pub S);

impl<S: Script> Queue for Scripted<S> {
    type Ticket = ScriptedTicket;

    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        self.0.enqueue(invocation)
    }
    fn fetch<'a>(
        &'a self,
        target: &'a FunctionKey,
        limits: FetchLimits,
    ) -> BoxFuture<'a, Result<Vec<Delivery<ScriptedTicket>>, QueueError>> {
        self.0.fetch(target, limits)
    }
    fn complete(&self, ticket: ScriptedTicket) -> BoxFuture<'_, Result<(), QueueError>> {
        self.0.complete(ticket)
    }
    fn retry(&self, _: ScriptedTicket, _: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async { Ok(()) })
    }
    fn dead_letter<'a>(
        &'a self,
        _: Delivery<ScriptedTicket>,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async { Ok(()) })
    }
    fn depth(&self) -> BoxFuture<'_, Result<Vec<(FunctionKey, Depth)>, QueueError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn dead_letters<'a>(
        &'a self,
        _: &'a FunctionKey,
        _: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, QueueError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
