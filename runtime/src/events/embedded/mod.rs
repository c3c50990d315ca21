//! The embedded durable queue of `flint dev`: a [redb] database file (a
//! well-kept embedded B-tree store with ACID transactions), so accepted
//! invocations, dead letters and schedule ticks survive a restart.
//!
//! Leases live in memory: after a restart every unsettled invocation is due
//! again (at-least-once, never lost).
//!
//! Here: the queue's operations (enqueue, fetch and lease, settle, depth,
//! dead letters) and the schedule-tick claims. `open` opens and prepares
//! the store, `layout` says how keys and records are laid out, `pending`
//! is the in-memory index of unsettled invocations, and `writer` is the
//! single thread that commits every write.

mod layout;
mod open;
mod pending;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flint_api::sync::lock;
use futures::future::BoxFuture;
use redb::{Database, ReadableDatabase};
use tokio::sync::Notify;

use super::invocation::{FunctionKey, Invocation, now_ms};
use super::queue::{DeadLetter, Delivery, Depth, Enqueued, FetchLimits, Queue, QueueError};
use layout::{
    dead_key, decode_dead, decode_record, due_again, due_key, encode_dead, encode_record,
    function_prefix, key_of,
};
use pending::Pending;
use writer::{DEAD, DUE, Done, INVOCATIONS, Op, Writer};

/// Longest a fetch sleeps before looking again for work that fell due.
const POLL: Duration = Duration::from_millis(50);

/// What the clones of one [`EmbeddedQueue`] share.
struct Inner {
    db: Arc<Database>,
    writer: Writer,
    pending: Mutex<Pending>,
    /// When each leased invocation was handed out, by invocation key.
    leased: Mutex<HashMap<String, Instant>>,
    /// What a waiting fetch of each Function listens on: an enqueue or a
    /// retry of that Function wakes its fetch, and no other. Ten thousand
    /// waiting fetches are not all woken by one Function's event.
    wake: Mutex<HashMap<FunctionKey, Arc<Notify>>>,
    /// Bumped by every new enqueue: the worker starts the loop of a
    /// Function that had nothing stored (see [`Queue::work_arrivals`]).
    arrivals: tokio::sync::watch::Sender<u64>,
}

/// The embedded queue; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedQueue {
    inner: Arc<Inner>,
}

/// The embedded queue's handle on a leased invocation: its key in the due
/// table (`<ns>/<fn>\0<due ms>\0<id>`), which a settle removes or moves.
#[derive(Debug, Clone)]
pub struct EmbeddedTicket {
    due_key: String,
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue").finish_non_exhaustive()
    }
}

/// The error of reading `table`.
fn read_err<E: Into<redb::Error>>(table: &'static str) -> impl FnOnce(E) -> QueueError {
    move |err| QueueError::StoreRead {
        table,
        source: err.into(),
    }
}

impl EmbeddedQueue {
    async fn apply(&self, op: Op) -> Result<Done, QueueError> {
        match self.inner.writer.apply(op).await {
            Some(result) => result.map_err(QueueError::StoreCommit),
            None => Err(QueueError::Closed),
        }
    }

    /// Claims a schedule tick (see [`flint_api::backend::TickStore`]).
    pub async fn claim_tick(&self, schedule: &str, tick: i64) -> Result<bool, QueueError> {
        let op = Op::Claim {
            schedule: schedule.to_owned(),
            tick,
        };
        match self.apply(op).await? {
            Done::Claimed(claimed) => Ok(claimed),
            _ => Ok(false),
        }
    }

    /// Reads up to `max` due, unleased invocations of `target` and leases
    /// them; with none due, also tells whether `target` has anything stored
    /// at all (waiting for a retry, or leased).
    fn due_now(
        &self,
        target: &FunctionKey,
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<Delivery<EmbeddedTicket>>, bool), QueueError> {
        // Nothing unsettled for `target` (the in-memory index holds every
        // invocation the store does): nothing can be due, and the store is
        // not read.
        if !lock(&self.inner.pending).by_function.contains_key(target) {
            return Ok((Vec::new(), false));
        }
        let prefix = function_prefix(target);
        let end = format!("{prefix}{:020}\u{1}", now_ms());
        // Leases are released only after their settle committed, so taking
        // the lease table before the snapshot means the snapshot already
        // holds every settle whose lease is gone.
        let mut leased = lock(&self.inner.leased);
        let txn = self.inner.db.begin_read().map_err(read_err("due"))?;
        let due = txn.open_table(DUE).map_err(read_err("due"))?;
        let invocations = txn
            .open_table(INVOCATIONS)
            .map_err(read_err("invocations"))?;
        let now = Instant::now();
        let mut out = Vec::new();
        for entry in due
            .range(prefix.as_str()..end.as_str())
            .map_err(read_err("due"))?
        {
            if out.len() >= max {
                break;
            }
            let (key, _) = entry.map_err(read_err("due"))?;
            let due_key = key.value().to_owned();
            let key = key_of(&due_key);
            if leased
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < lease)
            {
                continue;
            }
            let Some(record) = invocations
                .get(key.as_str())
                .map_err(read_err("invocations"))?
            else {
                continue;
            };
            let (attempts, invocation) = decode_record(&key, record.value())?;
            leased.insert(key, now);
            out.push(Delivery {
                invocation,
                attempt: attempts.saturating_add(1),
                ticket: EmbeddedTicket { due_key },
            });
        }
        // The in-memory index of unsettled invocations answers "anything
        // stored?" without a second read of the store.
        let stored = !out.is_empty() || lock(&self.inner.pending).by_function.contains_key(target);
        Ok((out, stored))
    }

    /// The notifier `target`'s fetch waits on, registered while it waits.
    fn waker(&self, target: &FunctionKey) -> Arc<Notify> {
        Arc::clone(lock(&self.inner.wake).entry(target.clone()).or_default())
    }

    /// `target`'s fetch no longer waits: its notifier goes unless another
    /// fetch of it holds it too.
    fn unwaker(&self, target: &FunctionKey, waker: Arc<Notify>) {
        let mut wake = lock(&self.inner.wake);
        // The map's and this one: nobody else waits on it.
        if Arc::strong_count(&waker) <= 2 {
            wake.remove(target);
        }
    }

    /// Wakes the fetch of `target`, if one waits.
    fn wake(&self, target: &FunctionKey) {
        if let Some(waker) = lock(&self.inner.wake).get(target) {
            waker.notify_waiters();
        }
    }

    fn settled(&self, key: &str) {
        lock(&self.inner.leased).remove(key);
        lock(&self.inner.pending).remove(key);
    }
}

impl Queue for EmbeddedQueue {
    type Ticket = EmbeddedTicket;

    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(async move {
            let record = encode_record(&invocation)?;
            let key = invocation.key();
            let op = Op::Enqueue {
                key: key.clone(),
                due_key: due_key(
                    &invocation.target,
                    invocation.enqueued_at_ms,
                    &invocation.id,
                ),
                record,
                now_ms: now_ms(),
            };
            let done = self.apply(op).await?;
            if done == Done::Enqueued(Enqueued::New) {
                // Indexed before the wake-up: the woken fetch looks there.
                let target = invocation.target.clone();
                lock(&self.inner.pending).add(invocation.target, invocation.enqueued_at_ms, key);
                self.wake(&target);
                self.inner.arrivals.send_modify(|n| *n = n.wrapping_add(1));
                return Ok(Enqueued::New);
            }
            Ok(Enqueued::Duplicate)
        })
    }

    fn fetch<'a>(
        &'a self,
        target: &'a FunctionKey,
        limits: FetchLimits,
    ) -> BoxFuture<'a, Result<Vec<Delivery<EmbeddedTicket>>, QueueError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + limits.wait;
            let waker = self.waker(target);
            let result = loop {
                let woken = waker.notified();
                tokio::pin!(woken);
                // Registered before looking, so an enqueue between the look
                // and the wait still wakes this fetch.
                woken.as_mut().enable();
                let (found, stored) = match self.due_now(target, limits.max, limits.lease) {
                    Ok(due) => due,
                    Err(err) => break Err(err),
                };
                let now = tokio::time::Instant::now();
                if !found.is_empty() || now >= deadline {
                    break Ok(found);
                }
                // Work that falls due by time (a retry's delay, an expired
                // lease) is looked for every POLL; with nothing stored only
                // an enqueue can bring work, and it wakes the fetch. Ten
                // thousand idle Functions then cost a wake-up per `wait`
                // each and no read of the store.
                let nap = if stored {
                    POLL.min(deadline - now)
                } else {
                    deadline - now
                };
                let _ = tokio::time::timeout(nap, woken).await;
            };
            self.unwaker(target, waker);
            result
        })
    }

    fn complete(&self, ticket: EmbeddedTicket) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let EmbeddedTicket { due_key } = ticket;
            let key = key_of(&due_key);
            let op = Op::Complete {
                key: key.clone(),
                due_key,
                now_ms: now_ms(),
            };
            self.apply(op).await?;
            self.settled(&key);
            Ok(())
        })
    }

    fn retry(
        &self,
        ticket: EmbeddedTicket,
        delay: Duration,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let EmbeddedTicket { due_key } = ticket;
            let key = key_of(&due_key);
            let due_ms = now_ms().saturating_add(delay.as_millis() as u64);
            let new_due_key = due_again(&due_key, due_ms);
            let op = Op::Retry {
                key: key.clone(),
                due_key,
                new_due_key,
            };
            self.apply(op).await?;
            lock(&self.inner.leased).remove(&key);
            let target = lock(&self.inner.pending).target_of(&key);
            if let Some(target) = target {
                self.wake(&target);
            }
            Ok(())
        })
    }

    fn dead_letter<'a>(
        &'a self,
        delivery: Delivery<EmbeddedTicket>,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let EmbeddedTicket { due_key } = delivery.ticket;
            let inv = delivery.invocation;
            let value = encode_dead(&inv, reason)?;
            let now = now_ms();
            let op = Op::DeadLetter {
                key: inv.key(),
                due_key,
                dead_key: dead_key(&inv.target, now, &inv.id),
                value,
                now_ms: now,
            };
            self.apply(op).await?;
            self.settled(&inv.key());
            Ok(())
        })
    }

    fn depth(&self) -> BoxFuture<'_, Result<Vec<(FunctionKey, Depth)>, QueueError>> {
        Box::pin(async move {
            let pending = lock(&self.inner.pending);
            Ok(pending
                .by_function
                .iter()
                .map(|(target, set)| {
                    let depth = Depth {
                        pending: set.len() as u64,
                        oldest_enqueued_ms: set.first().map(|(at, _)| *at),
                    };
                    (target.clone(), depth)
                })
                .collect())
        })
    }

    fn dead_letters<'a>(
        &'a self,
        target: &'a FunctionKey,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, QueueError>> {
        Box::pin(async move {
            let prefix = function_prefix(target);
            let end = format!("{prefix}\u{7f}");
            let txn = self.inner.db.begin_read().map_err(read_err("dead"))?;
            let dead = txn.open_table(DEAD).map_err(read_err("dead"))?;
            let mut out = Vec::new();
            for entry in dead
                .range(prefix.as_str()..end.as_str())
                .map_err(read_err("dead"))?
                .take(limit)
            {
                let (dead_key, value) = entry.map_err(read_err("dead"))?;
                out.push(decode_dead(&key_of(dead_key.value()), value.value())?);
            }
            Ok(out)
        })
    }

    fn may_have_work(&self, target: &FunctionKey) -> bool {
        lock(&self.inner.pending).by_function.contains_key(target)
    }

    fn work_arrivals(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.inner.arrivals.subscribe())
    }

    fn with_work(&self) -> Option<Vec<FunctionKey>> {
        Some(
            lock(&self.inner.pending)
                .by_function
                .keys()
                .cloned()
                .collect(),
        )
    }
}

impl flint_api::backend::TickStore for EmbeddedQueue {
    async fn claim(
        &self,
        schedule: &str,
        tick: i64,
    ) -> Result<bool, flint_api::backend::TickClaimError> {
        self.claim_tick(schedule, tick)
            .await
            .map_err(|e| flint_api::backend::TickClaimError {
                schedule: schedule.to_owned(),
                tick,
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests;
