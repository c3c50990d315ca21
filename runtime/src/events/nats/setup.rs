//! How the gateway reaches NATS and what it asks of JetStream: the
//! connection (with the server's auth token), the three streams and the
//! share of the server's store each may fill, and how a refusal because a
//! stream is full is recognised.

use std::time::Duration;

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode};

use super::{DEAD_STREAM, RETENTION, SETTLED_STREAM, STREAM};
use crate::events::queue::{DEDUPE_WINDOW, QueueError};

/// Bytes Flint's streams may hold together when nothing else is said: 1 GiB,
/// well within a small volume and NATS's own default store limit.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The least a budget may be: every stream must hold at least a few of the
/// largest invocations (512 KiB of body plus the request head).
pub const MIN_MAX_BYTES: u64 = 4 << 20;

/// How to reach NATS and how much of its store Flint may fill.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// Server URL, e.g. `nats://nats.flint-system:4222`.
    pub url: String,
    /// The server's auth token (`authorization { token: … }`); `None` for a
    /// server without authentication.
    pub token: Option<String>,
    /// Bytes the three streams may hold together, split by
    /// [`StreamBudget::split`]. Keep it below the server's store (the
    /// volume), so a flood is refused at the intake instead of filling it.
    pub max_bytes: u64,
}

impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSettings")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl NatsSettings {
    /// The server at `url`, without a token, with [`DEFAULT_MAX_BYTES`].
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// The same, presenting `token` to the server.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The same with another byte budget (at least [`MIN_MAX_BYTES`]).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes.max(MIN_MAX_BYTES);
        self
    }
}

/// The bytes each stream may hold (JetStream's `max_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBudget {
    /// Pending invocations ([`STREAM`]): refuses new ones when full.
    pub pending: u64,
    /// Dead letters ([`DEAD_STREAM`]): drops the oldest when full.
    pub dead: u64,
    /// Settle records ([`SETTLED_STREAM`]): drops the oldest when full.
    pub settled: u64,
}

impl StreamBudget {
    /// Splits `total` bytes: 70% for pending invocations (the stream a
    /// flood fills), 20% for dead letters, 10% for settle records (a few
    /// hundred bytes per invocation settled in the last two hours).
    pub fn split(total: u64) -> Self {
        let total = total.max(MIN_MAX_BYTES);
        let dead = total / 5;
        let settled = total / 10;
        Self {
            pending: total - dead - settled,
            dead,
            settled,
        }
    }
}

/// An `i64` byte count for JetStream (which takes -1 as "unlimited").
fn limit(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// The three streams Flint keeps, each bounded by `budget`.
///
/// Only [`STREAM`] refuses new messages when full ("discard new"): that
/// refusal reaches the caller as a 503 at the intake, which is the point
/// — a flood is pushed back instead of filling the volume. The other two
/// are written by the worker when it settles an invocation, where a
/// refusal would help nobody: a dead letter that cannot be stored would
/// keep its invocation pending and delivered again every lease, forever;
/// a settle record that cannot be stored would make a completed
/// invocation fail to settle and run again. So they drop their oldest
/// entries instead ("discard old"): the oldest dead letters (kept at most
/// a week anyway) and the oldest settle records, which matter least (a
/// redelivery they guard against comes within a lease, minutes).
pub fn stream_configs(budget: StreamBudget) -> [stream::Config; 3] {
    [
        stream::Config {
            name: STREAM.into(),
            subjects: vec!["flint.async.>".into()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            duplicate_window: DEDUPE_WINDOW,
            max_age: RETENTION,
            max_bytes: limit(budget.pending),
            discard: DiscardPolicy::New,
            ..Default::default()
        },
        stream::Config {
            name: DEAD_STREAM.into(),
            subjects: vec!["flint.dead.>".into()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            duplicate_window: DEDUPE_WINDOW,
            max_age: RETENTION,
            max_bytes: limit(budget.dead),
            discard: DiscardPolicy::Old,
            ..Default::default()
        },
        stream::Config {
            name: SETTLED_STREAM.into(),
            subjects: vec!["flint.settled.>".into()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            max_messages_per_subject: 1,
            max_age: DEDUPE_WINDOW,
            max_bytes: limit(budget.settled),
            discard: DiscardPolicy::Old,
            ..Default::default()
        },
    ]
}

/// Connects to the server of `settings`, presenting its token.
pub async fn connect(settings: &NatsSettings) -> Result<async_nats::Client, QueueError> {
    let mut options = async_nats::ConnectOptions::new()
        .name("flint")
        .connection_timeout(Duration::from_secs(5));
    if let Some(token) = &settings.token {
        options = options.token(token.clone());
    }
    options
        .connect(settings.url.as_str())
        .await
        .map_err(QueueError::NatsConnect)
}

/// Creates each stream, or updates one that exists (an older gateway may
/// have made it without limits), and returns them in the order of
/// [`stream_configs`].
pub async fn streams(
    js: &jetstream::Context,
    budget: StreamBudget,
) -> Result<[stream::Stream; 3], QueueError> {
    let [pending, dead, settled] = stream_configs(budget);
    Ok([
        ensure(js, pending).await?,
        ensure(js, dead).await?,
        ensure(js, settled).await?,
    ])
}

async fn ensure(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, QueueError> {
    let name = config.name.clone();
    let max_bytes = config.max_bytes;
    js.create_or_update_stream(config)
        .await
        .map_err(|e| QueueError::NatsStream {
            operation: "create or update stream",
            stream: name.clone(),
            source: e.into(),
        })?;
    tracing::debug!(stream = %name, max_bytes, "stream ready");
    js.get_stream(&name)
        .await
        .map_err(|e| QueueError::NatsStream {
            operation: "open stream",
            stream: name,
            source: e.into(),
        })
}

/// Whether JetStream refused a publish because a limit was reached: the
/// stream's own (`maximum bytes exceeded`, a store failure) or the
/// server's or account's store.
pub fn refused_as_full(err: &PublishError) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .is_some_and(|e| {
            let code = e.error_code();
            (code == ErrorCode::STREAM_STORE_FAILED && e.to_string().contains("maximum"))
                || code == ErrorCode::INSUFFICIENT_RESOURCES
                || code == ErrorCode::STORAGE_RESOURCES_EXCEEDED
                || code == ErrorCode::ACCOUNT_RESOURCES_EXCEEDED
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_without_losing_a_byte() {
        let b = StreamBudget::split(10 << 30);
        assert_eq!(b.pending + b.dead + b.settled, 10 << 30);
        assert_eq!(b.dead, 2 << 30);
        assert_eq!(b.settled, (10 << 30) / 10);
        assert!(b.pending > b.dead && b.dead > b.settled);
    }

    #[test]
    fn a_tiny_budget_is_raised_to_the_minimum() {
        let b = StreamBudget::split(1);
        assert_eq!(b.pending + b.dead + b.settled, MIN_MAX_BYTES);
        assert_eq!(
            NatsSettings::new("nats://x").with_max_bytes(5).max_bytes,
            MIN_MAX_BYTES
        );
    }

    #[test]
    fn only_the_pending_stream_refuses_when_full() {
        let [pending, dead, settled] = stream_configs(StreamBudget::split(100 << 20));
        assert_eq!(pending.discard, DiscardPolicy::New);
        assert_eq!(dead.discard, DiscardPolicy::Old);
        assert_eq!(settled.discard, DiscardPolicy::Old);
        for config in [&pending, &dead, &settled] {
            assert!(config.max_bytes > 0, "{} is unbounded", config.name);
        }
        assert_eq!(
            pending.max_bytes + dead.max_bytes + settled.max_bytes,
            100 << 20
        );
    }

    #[test]
    fn the_token_is_never_printed() {
        let s = NatsSettings::new("nats://x").with_token("s3cret");
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
