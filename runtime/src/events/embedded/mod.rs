//! The embedded durable queue of `flint dev`: a [redb] database file (a
//! well-kept embedded B-tree store with ACID transactions), so accepted
//! invocations, dead letters and schedule ticks survive a restart.
//!
//! Leases live in memory: after a restart every unsettled invocation is due
//! again (at-least-once, never lost).

mod writer;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flint_api::sync::lock;
use futures::future::BoxFuture;
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::Notify;

use super::invocation::{FunctionKey, Invocation, now_ms};
use super::queue::{
    DEDUPE_WINDOW, DeadLetter, Delivery, Depth, Enqueued, FetchLimits, Queue, QueueError,
};
use writer::{DEAD, DUE, Done, INVOCATIONS, Op, SETTLED, TICKS, Writer};
/// Longest a fetch sleeps before looking again for work that fell due.
const POLL: Duration = Duration::from_millis(50);

/// Unsettled invocations per Function, oldest first, for the depth
/// metrics; by invocation key (`<ns>/<fn>/<id>`).
#[derive(Default)]
struct Pending {
    by_function: HashMap<FunctionKey, BTreeSet<(u64, String)>>,
    index: HashMap<String, (FunctionKey, u64)>,
}

impl Pending {
    fn add(&mut self, target: FunctionKey, enqueued_ms: u64, key: String) {
        self.index
            .insert(key.clone(), (target.clone(), enqueued_ms));
        self.by_function
            .entry(target)
            .or_default()
            .insert((enqueued_ms, key));
    }

    fn remove(&mut self, key: &str) {
        if let Some((target, at)) = self.index.remove(key)
            && let Some(set) = self.by_function.get_mut(&target)
        {
            set.remove(&(at, key.to_owned()));
            if set.is_empty() {
                self.by_function.remove(&target);
            }
        }
    }
}

struct Inner {
    db: Arc<Database>,
    writer: Writer,
    pending: Mutex<Pending>,
    /// When each leased invocation was handed out, by invocation key.
    leased: Mutex<HashMap<String, Instant>>,
    wake: Notify,
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

/// The error of preparing the store after opening it.
fn prepare_err(err: impl Into<redb::Error>) -> QueueError {
    QueueError::StorePrepare(err.into())
}

/// The error of reading `table`.
fn read_err<E: Into<redb::Error>>(table: &'static str) -> impl FnOnce(E) -> QueueError {
    move |err| QueueError::StoreRead {
        table,
        source: err.into(),
    }
}

fn function_prefix(target: &FunctionKey) -> String {
    format!("{}/{}\0", target.namespace, target.function)
}

fn due_key(target: &FunctionKey, due_ms: u64, id: &str) -> String {
    format!("{}{due_ms:020}\0{id}", function_prefix(target))
}

fn id_of(due_key: &str) -> &str {
    due_key.rsplit('\0').next().unwrap_or_default()
}

/// The invocation key (`<ns>/<fn>/<id>`) of a due key.
fn key_of(due_key: &str) -> String {
    let function = due_key.split('\0').next().unwrap_or_default();
    format!("{function}/{}", id_of(due_key))
}

impl EmbeddedQueue {
    /// Opens (or creates) the store in `dir` (file `events.redb`).
    pub fn open(dir: &Path) -> Result<Self, QueueError> {
        std::fs::create_dir_all(dir).map_err(|source| QueueError::StoreDir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = dir.join("events.redb");
        let db =
            Database::create(&path).map_err(|source| QueueError::StoreOpen { path, source })?;
        let db = Arc::new(db);
        let pending = Self::prepare(&db)?;
        let writer = Writer::start(Arc::clone(&db)).map_err(QueueError::StoreWriter)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                writer,
                pending: Mutex::new(pending),
                leased: Mutex::new(HashMap::new()),
                wake: Notify::new(),
            }),
        })
    }

    /// Creates the tables, forgets settled ids past the dedupe window,
    /// re-keys invocations stored by a version that keyed them by id alone,
    /// and reads what is pending.
    fn prepare(db: &Database) -> Result<Pending, QueueError> {
        let cutoff = now_ms().saturating_sub(DEDUPE_WINDOW.as_millis() as u64);
        let txn = db.begin_write().map_err(prepare_err)?;
        let mut pending = Pending::default();
        {
            let mut invocations = txn.open_table(INVOCATIONS).map_err(prepare_err)?;
            txn.open_table(DUE).map_err(prepare_err)?;
            txn.open_table(DEAD).map_err(prepare_err)?;
            txn.open_table(TICKS).map_err(prepare_err)?;
            let mut settled = txn.open_table(SETTLED).map_err(prepare_err)?;
            // Settled ids without a Function in their key cannot match any
            // more: they go too.
            settled
                .retain(|key, at| at >= cutoff && key.contains('/'))
                .map_err(prepare_err)?;
            let mut old_keys = Vec::new();
            for entry in invocations.iter().map_err(prepare_err)? {
                let (key, record) = entry.map_err(prepare_err)?;
                let key = key.value().to_owned();
                let inv = decode_record(&key, record.value())?.1;
                if key.contains('/') {
                    pending.add(inv.target, inv.enqueued_at_ms, key);
                } else {
                    old_keys.push((key, inv.key(), record.value().to_vec()));
                    pending.add(inv.target.clone(), inv.enqueued_at_ms, inv.key());
                }
            }
            for (old, new, record) in old_keys {
                invocations.remove(old.as_str()).map_err(prepare_err)?;
                invocations
                    .insert(new.as_str(), record.as_slice())
                    .map_err(prepare_err)?;
            }
        }
        txn.commit().map_err(prepare_err)?;
        Ok(pending)
    }

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

    fn settled(&self, key: &str) {
        lock(&self.inner.leased).remove(key);
        lock(&self.inner.pending).remove(key);
    }
}

/// Reads the record stored under invocation key `key`: the attempts made
/// and the invocation.
fn decode_record(key: &str, record: &[u8]) -> Result<(u32, Invocation), QueueError> {
    let attempts = record
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| QueueError::Truncated {
            record: "invocation",
            key: key.to_owned(),
            len: record.len(),
        })?;
    let invocation = Invocation::decode(&record[4..]).map_err(|source| QueueError::Decode {
        record: "invocation",
        key: key.to_owned(),
        source,
    })?;
    Ok((attempts, invocation))
}

impl Queue for EmbeddedQueue {
    type Ticket = EmbeddedTicket;

    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(async move {
            let encoded = invocation.encode().map_err(|source| QueueError::Encode {
                key: invocation.key(),
                source,
            })?;
            let mut record = Vec::with_capacity(4 + encoded.len());
            record.extend_from_slice(&0u32.to_be_bytes());
            record.extend_from_slice(&encoded);
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
                lock(&self.inner.pending).add(invocation.target, invocation.enqueued_at_ms, key);
                self.inner.wake.notify_waiters();
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
            loop {
                let woken = self.inner.wake.notified();
                let (found, stored) = self.due_now(target, limits.max, limits.lease)?;
                let now = tokio::time::Instant::now();
                if !found.is_empty() || now >= deadline {
                    return Ok(found);
                }
                // Work that falls due by time (a retry's delay, an expired
                // lease) is looked for every POLL; with nothing stored only
                // an enqueue can bring work, and it wakes the fetch. A
                // thousand idle Functions then cost a read a second each,
                // not twenty.
                let nap = if stored {
                    POLL.min(deadline - now)
                } else {
                    deadline - now
                };
                let _ = tokio::time::timeout(nap, woken).await;
            }
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
            let prefix_end = due_key.find('\0').map_or(0, |i| i + 1);
            let due_ms = now_ms().saturating_add(delay.as_millis() as u64);
            let new_due_key = format!(
                "{}{due_ms:020}\0{}",
                &due_key[..prefix_end],
                id_of(&due_key)
            );
            let op = Op::Retry {
                key: key.clone(),
                due_key,
                new_due_key,
            };
            self.apply(op).await?;
            lock(&self.inner.leased).remove(&key);
            self.inner.wake.notify_waiters();
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
            let encoded = inv.encode().map_err(|source| QueueError::Encode {
                key: inv.key(),
                source,
            })?;
            let mut value = Vec::with_capacity(4 + reason.len() + encoded.len());
            value.extend_from_slice(&(reason.len() as u32).to_be_bytes());
            value.extend_from_slice(reason.as_bytes());
            value.extend_from_slice(&encoded);
            let now = now_ms();
            let op = Op::DeadLetter {
                key: inv.key(),
                due_key,
                dead_key: due_key_for_dead(&inv.target, now, &inv.id),
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
}

fn due_key_for_dead(target: &FunctionKey, at_ms: u64, id: &str) -> String {
    due_key(target, at_ms, id)
}

/// Reads the dead letter of invocation key `key`: the reason and the
/// invocation.
fn decode_dead(key: &str, value: &[u8]) -> Result<DeadLetter, QueueError> {
    let bad = || QueueError::Truncated {
        record: "dead letter",
        key: key.to_owned(),
        len: value.len(),
    };
    let len = value
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(bad)?;
    let reason = value.get(4..4 + len).ok_or_else(bad)?;
    let invocation =
        Invocation::decode(&value[4 + len..]).map_err(|source| QueueError::Decode {
            record: "dead letter",
            key: key.to_owned(),
            source,
        })?;
    Ok(DeadLetter {
        invocation,
        reason: String::from_utf8_lossy(reason).into_owned(),
    })
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
