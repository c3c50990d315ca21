//! The cluster queue: NATS JetStream. One work-queue stream holds every
//! accepted invocation (subject `flint.async.<ns>.<fn>`, file storage,
//! duplicate detection by invocation id); each Function has a durable pull
//! consumer whose `max_ack_pending` is the Function's `async.maxInFlight`,
//! enforced by the server across every gateway replica. A message leaves the
//! stream only when acknowledged; a worker that dies holding one has it
//! redelivered after the lease (`ack_wait`). Dead letters go to a second
//! stream, `flint.dead.<ns>.<fn>`, with the reason in a header.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::Mutex;

use super::invocation::{FunctionId, Invocation};
use super::queue::{
    DeadLetter, Delivery, Depth, Enqueued, FetchLimits, Queue, QueueError, Ticket, TicketKind,
};

/// Stream of pending invocations.
pub const STREAM: &str = "FLINT_ASYNC";
/// Stream of dead letters.
pub const DEAD_STREAM: &str = "FLINT_DEAD";
/// Header of a dead letter carrying why it was given up.
pub const REASON_HEADER: &str = "Flint-Dead-Reason";
/// Window within which a resubmitted invocation id is a duplicate.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// Stream of settled invocation ids (`flint.settled.<hex id>`, one message
/// per subject). A settle is recorded here (a stream write, durable once
/// acknowledged) before the message is acknowledged, so a redelivery caused
/// by an acknowledgement lost in a server crash is recognised and not
/// delivered again.
pub const SETTLED_STREAM: &str = "FLINT_SETTLED";
/// How long settled ids are remembered: well past any lease and outage.
const SETTLED_MEMORY: Duration = Duration::from_secs(3600);
/// Time allowed beyond a fetch's own wait before it is given up.
const FETCH_GRACE: Duration = Duration::from_secs(5);
/// How long dead letters (and, as a backstop, pending invocations) are kept.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

fn nats_err(operation: &'static str) -> impl FnOnce(String) -> QueueError {
    move |reason| QueueError::Nats { operation, reason }
}

fn subject(prefix: &str, target: &FunctionId) -> String {
    format!("{prefix}.{}.{}", target.namespace, target.function)
}

/// The JetStream queue; cheap to share behind an `Arc`.
pub struct NatsQueue {
    js: jetstream::Context,
    stream: stream::Stream,
    dead: stream::Stream,
    settled: stream::Stream,
    consumers: Mutex<HashMap<FunctionId, (PullConsumer, FetchLimits)>>,
}

impl std::fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueue").finish_non_exhaustive()
    }
}

impl NatsQueue {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`) and creates the
    /// streams if they do not exist. The client reconnects by itself after.
    pub async fn connect(url: &str) -> Result<Self, QueueError> {
        let client = async_nats::ConnectOptions::new()
            .name("flint")
            .connect(url)
            .await
            .map_err(|e| nats_err("connect")(e.to_string()))?;
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec!["flint.async.>".into()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                max_age: RETENTION,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err("create stream")(e.to_string()))?;
        let dead = js
            .get_or_create_stream(stream::Config {
                name: DEAD_STREAM.into(),
                subjects: vec!["flint.dead.>".into()],
                retention: RetentionPolicy::Limits,
                storage: StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                max_age: RETENTION,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err("create dead-letter stream")(e.to_string()))?;
        let settled = js
            .get_or_create_stream(stream::Config {
                name: SETTLED_STREAM.into(),
                subjects: vec!["flint.settled.>".into()],
                retention: RetentionPolicy::Limits,
                storage: StorageType::File,
                max_messages_per_subject: 1,
                max_age: SETTLED_MEMORY,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err("create settled stream")(e.to_string()))?;
        Ok(Self {
            js,
            stream,
            dead,
            settled,
            consumers: Mutex::new(HashMap::new()),
        })
    }

    /// The Function's consumer, created or updated to `limits`.
    async fn consumer(
        &self,
        target: &FunctionId,
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
                max_deliver: -1,
                max_ack_pending: i64::from(limits.max_in_flight),
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err("create consumer")(e.to_string()))?;
        consumers.insert(target.clone(), (consumer.clone(), limits));
        Ok(consumer)
    }

    fn to_delivery(message: jetstream::Message) -> Result<Delivery, QueueError> {
        let attempt = message
            .info()
            .map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX))
            .map_err(|e| QueueError::Record(e.to_string()))?;
        let invocation =
            Invocation::decode(&message.payload).map_err(|e| QueueError::Record(e.to_string()))?;
        let id = invocation.id.clone();
        Ok(Delivery {
            invocation,
            attempt: attempt.max(1),
            ticket: Ticket(TicketKind::Nats {
                message: Box::new(message),
                id,
            }),
        })
    }

    /// Records `id` as settled.
    async fn mark_settled(&self, id: &str) -> Result<(), QueueError> {
        self.js
            .publish(settled_key(id), bytes::Bytes::new())
            .await
            .map_err(|e| nats_err("record settle")(e.to_string()))?
            .await
            .map(|_| ())
            .map_err(|e| nats_err("record settle")(e.to_string()))
    }

    /// Drops deliveries of invocations already settled (acknowledging them
    /// again), keeping the rest. When the settled markers cannot be read
    /// (the server is away), the unchecked deliveries are handed back at
    /// once with a short delay instead of waiting out their lease.
    async fn unsettled(&self, batch: Vec<Delivery>) -> Result<Vec<Delivery>, QueueError> {
        let mut out = Vec::with_capacity(batch.len());
        let mut batch = batch.into_iter();
        while let Some(delivery) = batch.next() {
            let seen = match self
                .settled
                .get_last_raw_message_by_subject(&settled_key(&delivery.invocation.id))
                .await
            {
                Ok(_) => true,
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => false,
                Err(e) => {
                    let unchecked = std::iter::once(delivery).chain(batch);
                    hand_back(unchecked.chain(out)).await;
                    return Err(nats_err("read settle")(e.to_string()));
                }
            };
            if seen {
                tracing::info!(invocation = %delivery.invocation.id, "redelivery of a settled invocation acknowledged without delivering");
                let (message, _) = nats_message(delivery.ticket)?;
                message
                    .double_ack()
                    .await
                    .map_err(|e| nats_err("ack")(e.to_string()))?;
            } else {
                out.push(delivery);
            }
        }
        Ok(out)
    }

    async fn take(
        consumer: &PullConsumer,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<Delivery>, QueueError> {
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
        let mut batch = batch.map_err(|e| nats_err("fetch")(e.to_string()))?;
        let mut out = Vec::new();
        // A pull request sent while the connection was down is never
        // answered: bound the wait, keeping what arrived.
        let deadline = tokio::time::Instant::now() + wait.unwrap_or_default() + FETCH_GRACE;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, batch.next()).await {
            let message = message.map_err(|e| nats_err("fetch")(e.to_string()))?;
            match Self::to_delivery(message) {
                Ok(delivery) => out.push(delivery),
                Err(err) => tracing::error!(error = %err, "undecodable message left on the stream"),
            }
        }
        Ok(out)
    }
}

/// How soon deliveries handed back undelivered are offered again.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

/// Negatively acknowledges `deliveries` without waiting for the server's
/// answer: if it is reachable they come back after [`HAND_BACK_DELAY`];
/// if not, their lease runs out and they come back anyway.
/// A client whose outgoing buffer is full while disconnected would make
/// that wait long, so the whole hand-back is bounded too.
async fn hand_back(deliveries: impl Iterator<Item = Delivery>) {
    let naks = async {
        for delivery in deliveries {
            if let TicketKind::Nats { message, id } = delivery.ticket.0
                && let Err(err) = message.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await
            {
                tracing::debug!(invocation = %id, error = %err, "handing back a delivery failed; its lease will expire");
            }
        }
    };
    if tokio::time::timeout(HAND_BACK_DELAY, naks).await.is_err() {
        tracing::debug!("handing back deliveries timed out; their leases will expire");
    }
}

fn nats_message(ticket: Ticket) -> Result<(Box<jetstream::Message>, String), QueueError> {
    match ticket.0 {
        TicketKind::Nats { message, id } => Ok((message, id)),
        TicketKind::Embedded { .. } => Err(QueueError::Record(
            "an embedded ticket was given to the NATS queue".into(),
        )),
    }
}

/// The settled-marker subject of an invocation id (hex: ids may hold
/// characters subjects may not).
fn settled_key(id: &str) -> String {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("flint.settled.{hex}")
}

/// Header values cannot hold line breaks.
fn header_safe(reason: &str) -> String {
    reason.replace(['\r', '\n'], " ")
}

impl Queue for NatsQueue {
    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(async move {
            let payload = invocation
                .encode()
                .map_err(|e| QueueError::Record(e.to_string()))?;
            let publish = PublishMessage::build()
                .payload(payload.into())
                .message_id(&invocation.id);
            let ack = self
                .js
                .send_publish(subject("flint.async", &invocation.target), publish)
                .await
                .map_err(|e| nats_err("publish")(e.to_string()))?
                .await
                .map_err(|e| nats_err("publish")(e.to_string()))?;
            Ok(if ack.duplicate {
                Enqueued::Duplicate
            } else {
                Enqueued::New
            })
        })
    }

    fn fetch<'a>(
        &'a self,
        target: &'a FunctionId,
        limits: FetchLimits,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, QueueError>> {
        Box::pin(async move {
            let consumer = self.consumer(target, limits).await?;
            let mut found = Self::take(&consumer, limits.max, None).await?;
            if found.is_empty() {
                found = Self::take(&consumer, 1, Some(limits.wait)).await?;
            }
            self.unsettled(found).await
        })
    }

    fn complete(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let (message, id) = nats_message(ticket)?;
            self.mark_settled(&id).await?;
            message
                .double_ack()
                .await
                .map_err(|e| nats_err("ack")(e.to_string()))
        })
    }

    fn retry(&self, ticket: Ticket, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            nats_message(ticket)?
                .0
                .double_ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(|e| nats_err("nak")(e.to_string()))
        })
    }

    fn dead_letter<'a>(
        &'a self,
        delivery: Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let (message, id) = nats_message(delivery.ticket)?;
            let mut headers = HeaderMap::new();
            headers.insert(REASON_HEADER, header_safe(reason).as_str());
            let publish = PublishMessage::build()
                .payload(message.payload.clone())
                .headers(headers)
                .message_id(&delivery.invocation.id);
            self.js
                .send_publish(subject("flint.dead", &delivery.invocation.target), publish)
                .await
                .map_err(|e| nats_err("publish dead letter")(e.to_string()))?
                .await
                .map_err(|e| nats_err("publish dead letter")(e.to_string()))?;
            self.mark_settled(&id).await?;
            message
                .double_ack()
                .await
                .map_err(|e| nats_err("ack")(e.to_string()))
        })
    }

    fn depth(&self) -> BoxFuture<'_, Result<Vec<(FunctionId, Depth)>, QueueError>> {
        Box::pin(async move {
            let mut subjects = self
                .stream
                .info_with_subjects("flint.async.>")
                .await
                .map_err(|e| nats_err("stream info")(e.to_string()))?;
            let mut counts = Vec::new();
            while let Some(entry) = subjects.next().await {
                let (subject, count) = entry.map_err(|e| nats_err("stream info")(e.to_string()))?;
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
                    FunctionId::new(namespace, function),
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
        target: &'a FunctionId,
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
                let invocation = Invocation::decode(&message.payload)
                    .map_err(|e| QueueError::Record(e.to_string()))?;
                out.push(DeadLetter { invocation, reason });
            }
            Ok(out)
        })
    }
}
