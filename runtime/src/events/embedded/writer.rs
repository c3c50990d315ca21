//! The embedded store's single writer: a thread that owns every write
//! transaction and commits the operations queued since its last commit
//! together (group commit), so thousands of invocations per second each
//! get a durable commit without one disk flush apiece.

use std::sync::Arc;
use std::sync::mpsc;

use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::events::queue::{DEDUPE_WINDOW, Enqueued};

/// `<ns>/<fn>/<id>` → `attempts made (u32 BE)` + encoded invocation.
pub(super) const INVOCATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("invocations");
/// `<ns>/<fn>\0<due ms, 20 digits>\0<id>` → (): what is due when, per Function.
pub(super) const DUE: TableDefinition<&str, ()> = TableDefinition::new("due");
/// `<ns>/<fn>\0<ms, 20 digits>\0<id>` → `reason length (u32 BE)` + reason + encoded invocation.
pub(super) const DEAD: TableDefinition<&str, &[u8]> = TableDefinition::new("dead");
/// `<ns>/<fn>/<id>` → when it was settled (ms): remembers settled
/// invocations so a resubmission within the dedupe window is a duplicate.
pub(super) const SETTLED: TableDefinition<&str, u64> = TableDefinition::new("settled");
/// schedule key → last claimed tick.
pub(super) const TICKS: TableDefinition<&str, i64> = TableDefinition::new("ticks");

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 1024;

/// One write.
pub(super) enum Op {
    Enqueue {
        key: String,
        due_key: String,
        record: Vec<u8>,
        now_ms: u64,
    },
    Complete {
        key: String,
        due_key: String,
        now_ms: u64,
    },
    Retry {
        key: String,
        due_key: String,
        new_due_key: String,
    },
    DeadLetter {
        key: String,
        due_key: String,
        dead_key: String,
        value: Vec<u8>,
        now_ms: u64,
    },
    Claim {
        schedule: String,
        tick: i64,
    },
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Done {
    Enqueued(Enqueued),
    Settled,
    Claimed(bool),
}

/// The answer to one write: a failed commit fails every write of its
/// batch, so its error is shared.
type Reply = oneshot::Sender<Result<Done, Arc<redb::Error>>>;

/// Sends operations to the writer thread.
#[derive(Clone)]
pub(super) struct Writer {
    tx: mpsc::Sender<(Op, Reply)>,
}

impl Writer {
    /// Starts the writer thread on `db`.
    pub(super) fn start(db: Arc<Database>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<(Op, Reply)>();
        std::thread::Builder::new()
            .name("flint-events-writer".into())
            .spawn(move || run(&db, &rx))?;
        Ok(Self { tx })
    }

    /// Applies `op` durably; `None` when the writer has stopped.
    pub(super) async fn apply(&self, op: Op) -> Option<Result<Done, Arc<redb::Error>>> {
        let (reply, rx) = oneshot::channel();
        self.tx.send((op, reply)).ok()?;
        rx.await.ok()
    }
}

fn run(db: &Database, rx: &mpsc::Receiver<(Op, Reply)>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<Op>, Vec<Reply>) = batch.into_iter().unzip();
        match commit(db, ops) {
            Ok(results) => {
                for (reply, done) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(done));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "embedded store commit failed");
                let err = Arc::new(err);
                for reply in replies {
                    let _ = reply.send(Err(Arc::clone(&err)));
                }
            }
        }
    }
}

fn commit(db: &Database, ops: Vec<Op>) -> Result<Vec<Done>, redb::Error> {
    let txn = db.begin_write()?;
    let mut results = Vec::with_capacity(ops.len());
    {
        let mut invocations = txn.open_table(INVOCATIONS)?;
        let mut due = txn.open_table(DUE)?;
        let mut dead = txn.open_table(DEAD)?;
        let mut settled = txn.open_table(SETTLED)?;
        let mut ticks = txn.open_table(TICKS)?;
        for op in ops {
            let done = match op {
                Op::Enqueue {
                    key,
                    due_key,
                    record,
                    now_ms,
                } => {
                    let window = DEDUPE_WINDOW.as_millis() as u64;
                    let known = invocations.get(key.as_str())?.is_some()
                        || settled
                            .get(key.as_str())?
                            .is_some_and(|at| at.value().saturating_add(window) > now_ms);
                    if known {
                        Done::Enqueued(Enqueued::Duplicate)
                    } else {
                        invocations.insert(key.as_str(), record.as_slice())?;
                        due.insert(due_key.as_str(), ())?;
                        Done::Enqueued(Enqueued::New)
                    }
                }
                Op::Complete {
                    key,
                    due_key,
                    now_ms,
                } => {
                    due.remove(due_key.as_str())?;
                    invocations.remove(key.as_str())?;
                    settled.insert(key.as_str(), now_ms)?;
                    Done::Settled
                }
                Op::Retry {
                    key,
                    due_key,
                    new_due_key,
                } => {
                    let record = invocations.get(key.as_str())?.map(|g| g.value().to_vec());
                    if let Some(mut record) = record
                        && record.len() >= 4
                    {
                        let attempts =
                            u32::from_be_bytes([record[0], record[1], record[2], record[3]]);
                        record[..4].copy_from_slice(&attempts.saturating_add(1).to_be_bytes());
                        invocations.insert(key.as_str(), record.as_slice())?;
                        due.remove(due_key.as_str())?;
                        due.insert(new_due_key.as_str(), ())?;
                    }
                    Done::Settled
                }
                Op::DeadLetter {
                    key,
                    due_key,
                    dead_key,
                    value,
                    now_ms,
                } => {
                    dead.insert(dead_key.as_str(), value.as_slice())?;
                    due.remove(due_key.as_str())?;
                    invocations.remove(key.as_str())?;
                    settled.insert(key.as_str(), now_ms)?;
                    Done::Settled
                }
                Op::Claim { schedule, tick } => {
                    let last = ticks.get(schedule.as_str())?.map(|g| g.value());
                    if last.is_some_and(|last| last >= tick) {
                        Done::Claimed(false)
                    } else {
                        ticks.insert(schedule.as_str(), tick)?;
                        Done::Claimed(true)
                    }
                }
            };
            results.push(done);
        }
    }
    txn.commit()?;
    Ok(results)
}
