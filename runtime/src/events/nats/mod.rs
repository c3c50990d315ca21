//! The cluster queue: NATS JetStream. One work-queue stream holds every
//! accepted invocation (subject `flint.async.<ns>.<fn>`, file storage,
//! duplicate detection by invocation key `<ns>/<fn>/<id>` within
//! [`DEDUPE_WINDOW`](super::queue::DEDUPE_WINDOW), at most its share of [`NatsSettings::max_bytes`],
//! refusing new invocations when full); each Function has a durable pull
//! consumer whose `max_ack_pending` is the Function's `async.maxInFlight`,
//! enforced by the server across every gateway replica. A message leaves the
//! stream only when acknowledged; a worker that dies holding one has it
//! redelivered after the lease (`ack_wait`). Dead letters go to a second
//! stream, `flint.dead.<ns>.<fn>`, with the reason in a header; settle
//! records (settled, or how many attempts failed: [`record`]) to a third.
//!
//! Here: the queue, its connection, and the enqueue, settle and inspection
//! (depth, dead letters) operations. `lease` hands invocations out (the
//! consumers, bounded fetches, the settle-record check, hand-backs),
//! [`record`] is the settle record, [`setup`] the connection and streams.

mod lease;
mod record;
pub mod setup;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::Mutex;

pub use self::lease::NatsTicket;
use self::record::SettleRecord;
pub use self::setup::{DEFAULT_MAX_BYTES, MIN_MAX_BYTES, NatsSettings, StreamBudget};
use super::invocation::{FunctionKey, Invocation};
use super::queue::{DeadLetter, Delivery, Depth, Enqueued, FetchLimits, Queue, QueueError};

/// Stream of pending invocations.
pub const STREAM: &str = "FLINT_ASYNC";
/// Stream of dead letters.
pub const DEAD_STREAM: &str = "FLINT_DEAD";
/// Header of a dead letter carrying why it was given up.
pub const REASON_HEADER: &str = "Flint-Dead-Reason";
/// Stream of settle records (`flint.settled.<hex key>`, one message per
/// subject, kept [`DEDUPE_WINDOW`](super::queue::DEDUPE_WINDOW)): an invocation's settle, or how many of
/// its attempts failed ([`record`]). A settle is recorded here (a stream
/// write, durable once acknowledged) before the message is acknowledged,
/// so a redelivery caused by an acknowledgement lost in a server crash is
/// recognised and not delivered again.
pub const SETTLED_STREAM: &str = "FLINT_SETTLED";
/// How long dead letters (and, as a backstop, pending invocations) are kept.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The error of settle step `step` (`"read settle"`, `"record settle"`,
/// `"ack"`, `"nak"`) of invocation `key`.
fn settle_err<E: Into<async_nats::Error>>(
    step: &'static str,
    key: &str,
) -> impl FnOnce(E) -> QueueError {
    move |err| QueueError::NatsSettle {
        step,
        key: key.to_owned(),
        source: err.into(),
    }
}

fn subject(prefix: &str, target: &FunctionKey) -> String {
    format!("{prefix}.{}.{}", target.namespace, target.function)
}

/// The JetStream queue; cheap to share behind an `Arc`.
pub struct NatsQueue {
    js: jetstream::Context,
    stream: stream::Stream,
    dead: stream::Stream,
    settled: stream::Stream,
    budget: StreamBudget,
    consumers: Mutex<HashMap<FunctionKey, (PullConsumer, FetchLimits)>>,
}

impl std::fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueue")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl NatsQueue {
    /// Connects to the server of `settings` (with its token, if any) and
    /// creates the streams, or updates them to the settings' byte budget.
    /// The client reconnects by itself after.
    pub async fn connect(settings: &NatsSettings) -> Result<Self, QueueError> {
        let client = setup::connect(settings).await?;
        let js = jetstream::new(client);
        let budget = StreamBudget::split(settings.max_bytes);
        let [stream, dead, settled] = setup::streams(&js, budget).await?;
        tracing::info!(url = %settings.url, authenticated = settings.token.is_some(), pending_bytes = budget.pending, dead_bytes = budget.dead, settled_bytes = budget.settled, "connected to NATS JetStream");
        Ok(Self {
            js,
            stream,
            dead,
            settled,
            budget,
            consumers: Mutex::new(HashMap::new()),
        })
    }

    /// The byte limits of the streams.
    pub fn budget(&self) -> StreamBudget {
        self.budget
    }

    /// Writes the settle record of invocation `key`.
    async fn record(&self, key: &str, payload: bytes::Bytes) -> Result<(), QueueError> {
        self.js
            .publish(record::subject(key), payload)
            .await
            .map_err(settle_err("record settle", key))?
            .await
            .map(|_| ())
            .map_err(settle_err("record settle", key))
    }

    /// The error of a refused publish of invocation `key`:
    /// [`QueueError::Full`] when the pending stream (or the server's store)
    /// is full.
    fn publish_err(
        &self,
        key: &str,
        err: async_nats::jetstream::context::PublishError,
    ) -> QueueError {
        if setup::refused_as_full(&err) {
            QueueError::Full {
                stream: STREAM,
                max_bytes: self.budget.pending,
            }
        } else {
            QueueError::NatsPublish {
                what: "invocation",
                key: key.to_owned(),
                source: err,
            }
        }
    }
}

/// Header values cannot hold line breaks.
fn header_safe(reason: &str) -> String {
    reason.replace(['\r', '\n'], " ")
}

impl Queue for NatsQueue {
    type Ticket = NatsTicket;

    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(async move {
            let key = invocation.key();
            let payload = invocation.encode().map_err(|source| QueueError::Encode {
                key: key.clone(),
                source,
            })?;
            let publish = PublishMessage::build()
                .payload(payload.into())
                .message_id(key.as_str());
            let ack = self
                .js
                .send_publish(subject("flint.async", &invocation.target), publish)
                .await
                .map_err(|e| self.publish_err(&key, e))?
                .await
                .map_err(|e| self.publish_err(&key, e))?;
            Ok(if ack.duplicate {
                Enqueued::Duplicate
            } else {
                Enqueued::New
            })
        })
    }

    fn fetch<'a>(
        &'a self,
        target: &'a FunctionKey,
        limits: FetchLimits,
    ) -> BoxFuture<'a, Result<Vec<Delivery<NatsTicket>>, QueueError>> {
        Box::pin(self.lease(target, limits))
    }

    fn complete(&self, ticket: NatsTicket) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let NatsTicket { message, key, .. } = ticket;
            self.record(&key, bytes::Bytes::new()).await?;
            message.double_ack().await.map_err(settle_err("ack", &key))
        })
    }

    fn retry(&self, ticket: NatsTicket, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            // The failure is recorded first: the next delivery is attempt
            // `attempt + 1` whoever takes it, and a NAK that is lost (the
            // lease runs out instead) still finds it counted.
            let NatsTicket {
                message,
                key,
                attempt,
            } = ticket;
            self.record(&key, SettleRecord::failed_payload(attempt))
                .await?;
            message
                .double_ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(settle_err("nak", &key))
        })
    }

    fn dead_letter<'a>(
        &'a self,
        delivery: Delivery<NatsTicket>,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let NatsTicket { message, key, .. } = delivery.ticket;
            let mut headers = HeaderMap::new();
            headers.insert(REASON_HEADER, header_safe(reason).as_str());
            let publish = PublishMessage::build()
                .payload(message.payload.clone())
                .headers(headers)
                .message_id(key.as_str());
            let publish_err = |source| QueueError::NatsPublish {
                what: "dead letter",
                key: key.clone(),
                source,
            };
            self.js
                .send_publish(subject("flint.dead", &delivery.invocation.target), publish)
                .await
                .map_err(publish_err)?
                .await
                .map_err(publish_err)?;
            self.record(&key, bytes::Bytes::new()).await?;
            message.double_ack().await.map_err(settle_err("ack", &key))
        })
    }

    fn depth(&self) -> BoxFuture<'_, Result<Vec<(FunctionKey, Depth)>, QueueError>> {
        Box::pin(async move {
            let info_err = |err: async_nats::Error| QueueError::NatsStream {
                operation: "stream info",
                stream: STREAM.to_owned(),
                source: err,
            };
            let mut subjects = self
                .stream
                .info_with_subjects("flint.async.>")
                .await
                .map_err(|e| info_err(e.into()))?;
            let mut counts = Vec::new();
            while let Some(entry) = subjects.next().await {
                let (subject, count) = entry.map_err(|e| info_err(e.into()))?;
                counts.push((subject, count));
            }
            let mut out = Vec::new();
            for (subject, count) in counts {
                let mut parts = subject.splitn(4, '.').skip(2);
                let (Some(namespace), Some(function)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let oldest = match self
                    .stream
                    .get_first_raw_message_by_subject(&subject, 0)
                    .await
                {
                    Ok(first) => Invocation::decode(&first.payload)
                        .ok()
                        .map(|i| i.enqueued_at_ms),
                    Err(_) => None,
                };
                out.push((
                    FunctionKey::new(namespace, function),
                    Depth {
                        pending: count as u64,
                        oldest_enqueued_ms: oldest,
                    },
                ));
            }
            Ok(out)
        })
    }

    fn dead_letters<'a>(
        &'a self,
        target: &'a FunctionKey,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, QueueError>> {
        Box::pin(async move {
            let subject = subject("flint.dead", target);
            let mut out = Vec::new();
            let mut sequence = 0;
            while out.len() < limit {
                let Ok(message) = self
                    .dead
                    .get_first_raw_message_by_subject(&subject, sequence)
                    .await
                else {
                    break;
                };
                sequence = message.sequence + 1;
                let reason = message
                    .headers
                    .get(REASON_HEADER)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                let invocation =
                    Invocation::decode(&message.payload).map_err(|source| QueueError::Decode {
                        record: "dead letter",
                        key: format!("{} #{}", message.subject, message.sequence),
                        source,
                    })?;
                out.push(DeadLetter { invocation, reason });
            }
            Ok(out)
        })
    }
}
