//! The durable queue behind asynchronous invocations, as one trait with two
//! backends: the embedded store of `flint dev` and NATS JetStream on a
//! cluster. A message is removed only once it is settled (delivered or
//! dead-lettered), so a crash anywhere means redelivery, never loss.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::invocation::{DecodeError, FunctionKey, Invocation};

/// How long a queue recognises a resubmitted invocation, in both backends.
/// An id sent again to the same Function within this window of its first
/// acceptance is a duplicate: answered 202 and stored once. Settled
/// markers (which also keep a redelivery of a settled invocation from
/// running again) are kept this long after the settle, which is past the
/// longest lease (`timeoutSeconds` ≤ 1 h, plus the lease margin) with room
/// for an outage. Ids are keyed by `<ns>/<fn>/<id>`, so the window is per
/// Function.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(2 * 3600);

/// Why the queue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The embedded store's directory could not be created.
    #[error("embedded store: creating its directory {}: {source}", dir.display())]
    StoreDir {
        /// The directory.
        dir: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// The embedded store's file could not be opened or created.
    #[error("embedded store: opening {}: {source}", path.display())]
    StoreOpen {
        /// The database file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: redb::DatabaseError,
    },
    /// The embedded store's writer thread could not be started.
    #[error("embedded store: starting its writer thread: {0}")]
    StoreWriter(#[source] std::io::Error),
    /// The embedded store's tables could not be prepared after opening
    /// (created, expired settled ids forgotten, old keys rewritten).
    #[error("embedded store: preparing its tables: {0}")]
    StorePrepare(#[source] redb::Error),
    /// A table of the embedded store could not be read.
    #[error("embedded store: reading table {table}: {source}")]
    StoreRead {
        /// The table.
        table: &'static str,
        /// redb's error.
        #[source]
        source: redb::Error,
    },
    /// The embedded store's writer could not commit a batch of writes
    /// (shared by every write of the batch, hence the `Arc`).
    #[error("embedded store: committing writes: {0}")]
    StoreCommit(#[source] Arc<redb::Error>),
    /// The store's writer is gone (the store was closed).
    #[error("the embedded store is closed")]
    Closed,
    /// The NATS server could not be reached or refused the connection.
    #[error("nats connect: {0}")]
    NatsConnect(#[source] async_nats::ConnectError),
    /// A JetStream stream could not be created, updated, opened or read.
    #[error("nats {operation} {stream}: {source}")]
    NatsStream {
        /// What was being done.
        operation: &'static str,
        /// The stream.
        stream: String,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// A Function's consumer could not be created or updated.
    #[error("nats create consumer for {function}: {source}")]
    NatsConsumer {
        /// The Function.
        function: FunctionKey,
        /// The client's error.
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    /// Invocations of a Function could not be fetched.
    #[error("nats fetch for {function}: {source}")]
    NatsFetch {
        /// The Function.
        function: FunctionKey,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// An invocation, or its dead letter, could not be published.
    #[error("nats publish {what} {key}: {source}")]
    NatsPublish {
        /// `"invocation"` or `"dead letter"`.
        what: &'static str,
        /// The invocation key, `<ns>/<fn>/<id>`.
        key: String,
        /// The client's error.
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
    /// Settling an invocation failed at one step: its settle record could
    /// not be read or written, or its message not acknowledged.
    #[error("nats {step} of {key}: {source}")]
    NatsSettle {
        /// The step: `"read settle"`, `"record settle"`, `"ack"` or `"nak"`.
        step: &'static str,
        /// The invocation key, `<ns>/<fn>/<id>`.
        key: String,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// An invocation could not be encoded for storing.
    #[error("invocation record: encoding {key}: {source}")]
    Encode {
        /// The invocation key, `<ns>/<fn>/<id>`.
        key: String,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored invocation or dead letter could not be decoded.
    #[error("invocation record: decoding {record} {key}: {source}")]
    Decode {
        /// What was stored: `"invocation"` or `"dead letter"`.
        record: &'static str,
        /// Where: its key, or its stream subject and sequence.
        key: String,
        /// The decoder's error.
        #[source]
        source: DecodeError,
    },
    /// A stored record is shorter than its own header.
    #[error("invocation record: {record} {key} is shorter than its header ({len} bytes)")]
    Truncated {
        /// What was stored: `"invocation"` or `"dead letter"`.
        record: &'static str,
        /// Its key.
        key: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The queue holds as much as it may: nothing more is accepted until
    /// deliveries make room (a flood is refused rather than filling the
    /// server's volume).
    #[error("the queue is full: stream {stream} holds its limit of {max_bytes} bytes")]
    Full {
        /// The stream that refused.
        stream: &'static str,
        /// Its byte limit.
        max_bytes: u64,
    },
}

impl QueueError {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::StoreDir { .. }
            | Self::StoreOpen { .. }
            | Self::StoreWriter(_)
            | Self::StorePrepare(_)
            | Self::StoreRead { .. }
            | Self::StoreCommit(_) => "store",
            Self::Closed => "closed",
            Self::NatsConnect(_)
            | Self::NatsStream { .. }
            | Self::NatsConsumer { .. }
            | Self::NatsFetch { .. }
            | Self::NatsPublish { .. }
            | Self::NatsSettle { .. } => "nats",
            Self::Encode { .. } | Self::Decode { .. } | Self::Truncated { .. } => "record",
            Self::Full { .. } => "full",
        }
    }
}

/// Whether an enqueue stored a new invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored; it will be delivered.
    New,
    /// An invocation with this id is already known; nothing was stored.
    Duplicate,
}

/// Pending work of one Function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    /// Invocations accepted and not yet settled (waiting, in flight or
    /// waiting for a retry).
    pub pending: u64,
    /// When the oldest of them was accepted (ms since the epoch).
    pub oldest_enqueued_ms: Option<u64>,
}

/// A dead-lettered invocation, with why it was given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The invocation as accepted.
    pub invocation: Invocation,
    /// Why it was dead-lettered.
    pub reason: String,
}

/// How to fetch for one Function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Most invocations to return.
    pub max: usize,
    /// Most invocations of this Function leased at once across every
    /// worker (the Function's `async.maxInFlight`).
    pub max_in_flight: u32,
    /// How long to wait for work when none is due.
    pub wait: Duration,
    /// How long a lease holds without being settled before the invocation
    /// is handed out again (a worker that died holding it).
    pub lease: Duration,
}

/// An invocation handed to a worker, to be settled exactly once (a
/// settle that failed may be repeated with a clone). `T` is the queue's
/// [`Queue::Ticket`].
#[derive(Debug, Clone)]
pub struct Delivery<T> {
    /// The invocation.
    pub invocation: Invocation,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// The backend's handle, needed to settle it.
    pub ticket: T,
}

/// A durable queue of invocations, partitioned by Function.
pub trait Queue: Send + Sync + 'static {
    /// The backend's handle on one leased invocation, needed to settle it.
    /// Each backend has its own, so a settle can only be given a ticket of
    /// the queue that handed it out.
    type Ticket: Clone + std::fmt::Debug + Send + Sync + 'static;

    /// Stores `invocation` durably before returning (the 202 promises it).
    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>>;
    /// Leases up to `limits.max` invocations of `target` that are due,
    /// waiting up to `limits.wait` when none is.
    fn fetch<'a>(
        &'a self,
        target: &'a FunctionKey,
        limits: FetchLimits,
    ) -> BoxFuture<'a, Result<Vec<Delivery<Self::Ticket>>, QueueError>>;
    /// Removes a delivered invocation.
    fn complete(&self, ticket: Self::Ticket) -> BoxFuture<'_, Result<(), QueueError>>;
    /// Hands the invocation out again after `delay`, as the next attempt.
    fn retry(&self, ticket: Self::Ticket, delay: Duration)
    -> BoxFuture<'_, Result<(), QueueError>>;
    /// Moves an invocation to the dead letters with `reason`.
    fn dead_letter<'a>(
        &'a self,
        delivery: Delivery<Self::Ticket>,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), QueueError>>;
    /// Pending work per Function (Functions with none may be left out).
    fn depth(&self) -> BoxFuture<'_, Result<Vec<(FunctionKey, Depth)>, QueueError>>;
    /// The dead letters of `target`, oldest first, at most `limit`.
    fn dead_letters<'a>(
        &'a self,
        target: &'a FunctionKey,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, QueueError>>;
    /// Whether `target` may have work stored (due or not, leased or not):
    /// a worker keeps a delivery loop for a Function only while this holds.
    /// A queue that cannot tell cheaply says yes, and its loops run for as
    /// long as their Functions have targets.
    fn may_have_work(&self, _target: &FunctionKey) -> bool {
        true
    }
    /// For a queue whose [`Queue::may_have_work`] can say no: changes
    /// whenever a Function may have got work (an enqueue), so the worker
    /// starts its loop. `None` for a queue that always says yes.
    fn work_arrivals(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// The Functions that may have work stored, for a queue whose
    /// [`Queue::may_have_work`] can say no; `None` for one that cannot tell.
    fn with_work(&self) -> Option<Vec<FunctionKey>> {
        None
    }
}
