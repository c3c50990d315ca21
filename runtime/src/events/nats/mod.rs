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

mod record;
pub mod setup;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::Mutex;

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
/// Time allowed beyond a fetch's own wait before it is given up.
const FETCH_GRACE: Duration = Duration::from_secs(5);
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

/// A message taken from the stream, its settle record not yet read.
struct Leased {
    invocation: Invocation,
    message: Box<jetstream::Message>,
}

/// The JetStream queue's handle on a leased invocation: the message, to be
/// acknowledged (or negatively acknowledged) once its settle is recorded.
#[derive(Clone)]
pub struct NatsTicket {
    message: Box<jetstream::Message>,
    /// The invocation key, `<ns>/<fn>/<id>`.
    key: String,
    /// Which attempt this delivery is (failures recorded + 1).
    attempt: u32,
}

impl std::fmt::Debug for NatsTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTicket")
            .field("key", &self.key)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
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

    /// Hands leased `deliveries` back undelivered (a worker that cannot
    /// start them): they are offered again after a second (at once by
    /// their lease if the server is away), as the same attempt — a
    /// hand-back never counts as a delivery attempt ([`record`]).
    pub async fn hand_back(&self, deliveries: Vec<Delivery<NatsTicket>>) {
        hand_back(deliveries.into_iter().map(|d| d.ticket.message)).await;
    }

    /// The Function's consumer, created or updated to `limits`.
    async fn consumer(
        &self,
        target: &FunctionKey,
        limits: FetchLimits,
    ) -> Result<PullConsumer, QueueError> {
        let mut consumers = self.consumers.lock().await;
        if let Some((consumer, had)) = consumers.get(target)
            && had.max_in_flight == limits.max_in_flight
            && had.lease == limits.lease
        {
            return Ok(consumer.clone());
        }
        let name = format!("{}_{}", target.namespace, target.function);
        let consumer: PullConsumer = self
            .stream
            .create_consumer(pull::Config {
                durable_name: Some(name),
                filter_subject: subject("flint.async", target),
                ack_policy: AckPolicy::Explicit,
                ack_wait: limits.lease,
                // Unlimited: the attempts are counted by Flint ([`record`]),
                // which JetStream's delivery count would overstate.
                max_deliver: -1,
                max_ack_pending: i64::from(limits.max_in_flight),
                ..Default::default()
            })
            .await
            .map_err(|source| QueueError::NatsConsumer {
                function: target.clone(),
                source,
            })?;
        consumers.insert(target.clone(), (consumer.clone(), limits));
        Ok(consumer)
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

    /// Reads the settle records of `batch`: redeliveries of invocations
    /// already settled are acknowledged again and dropped, the rest become
    /// deliveries numbered by their recorded failures. When the records
    /// cannot be read (the server is away), the unchecked messages are
    /// handed back at once with a short delay instead of waiting out their
    /// lease — which costs them no attempt.
    async fn checked(&self, batch: Vec<Leased>) -> Result<Vec<Delivery<NatsTicket>>, QueueError> {
        let mut out: Vec<Delivery<NatsTicket>> = Vec::with_capacity(batch.len());
        let mut batch = batch.into_iter();
        while let Some(leased) = batch.next() {
            let key = leased.invocation.key();
            let record = match self
                .settled
                .get_last_raw_message_by_subject(&record::subject(&key))
                .await
            {
                Ok(message) => SettleRecord::decode(&message.payload),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => SettleRecord::None,
                Err(e) => {
                    let unchecked = std::iter::once(leased).chain(batch).map(|l| l.message);
                    let checked = out.into_iter().map(|d| d.ticket.message);
                    hand_back(unchecked.chain(checked)).await;
                    return Err(settle_err("read settle", &key)(e));
                }
            };
            if record == SettleRecord::Settled {
                tracing::info!(invocation = %leased.invocation.id, function = %leased.invocation.target, "redelivery of a settled invocation acknowledged without delivering");
                leased
                    .message
                    .double_ack()
                    .await
                    .map_err(settle_err("ack", &key))?;
                continue;
            }
            let attempt = record.next_attempt();
            out.push(Delivery {
                invocation: leased.invocation,
                attempt,
                ticket: NatsTicket {
                    message: leased.message,
                    key,
                    attempt,
                },
            });
        }
        Ok(out)
    }

    async fn take(
        consumer: &PullConsumer,
        target: &FunctionKey,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<Leased>, QueueError> {
        let batch = match wait {
            None => consumer.fetch().max_messages(max).messages().await,
            Some(wait) => {
                consumer
                    .batch()
                    .max_messages(max)
                    .expires(wait)
                    .messages()
                    .await
            }
        };
        let fetch_err = |err: async_nats::Error| QueueError::NatsFetch {
            function: target.clone(),
            source: err,
        };
        let mut batch = batch.map_err(|e| fetch_err(e.into()))?;
        let mut out = Vec::new();
        // A pull request sent while the connection was down is never
        // answered: bound the wait, keeping what arrived.
        let deadline = tokio::time::Instant::now() + wait.unwrap_or_default() + FETCH_GRACE;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, batch.next()).await {
            let message = message.map_err(fetch_err)?;
            match Invocation::decode(&message.payload) {
                Ok(invocation) => out.push(Leased {
                    invocation,
                    message: Box::new(message),
                }),
                Err(err) => {
                    tracing::error!(error = %err, "undecodable message left on the stream")
                }
            }
        }
        Ok(out)
    }
}

impl NatsQueue {
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

/// How soon deliveries handed back undelivered are offered again.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

/// Negatively acknowledges `messages` without waiting for the server's
/// answer: if it is reachable they come back after [`HAND_BACK_DELAY`];
/// if not, their lease runs out and they come back anyway. Either way as
/// the same attempt (the attempt number is the settle record's, which a
/// hand-back leaves alone).
/// A client whose outgoing buffer is full while disconnected would make
/// that wait long, so the whole hand-back is bounded too.
async fn hand_back(messages: impl Iterator<Item = Box<jetstream::Message>>) {
    let naks = async {
        for message in messages {
            if let Err(err) = message.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await {
                tracing::debug!(subject = %message.subject, error = %err, "handing back a delivery failed; its lease will expire");
            }
        }
    };
    if tokio::time::timeout(HAND_BACK_DELAY, naks).await.is_err() {
        tracing::debug!("handing back deliveries timed out; their leases will expire");
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
        Box::pin(async move {
            let consumer = self.consumer(target, limits).await?;
            let mut found = Self::take(&consumer, target, limits.max, None).await?;
            if found.is_empty() {
                found = Self::take(&consumer, target, 1, Some(limits.wait)).await?;
            }
            self.checked(found).await
        })
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
