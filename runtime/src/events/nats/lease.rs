//! Leasing invocations from JetStream: each Function's durable pull
//! consumer (its `max_ack_pending` is the Function's `maxInFlight`), fetches
//! bounded against a connection lost mid-request, the settle-record check
//! that numbers attempts and drops redeliveries of settled invocations, and
//! handing leases back undelivered.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;

use super::record::{self, SettleRecord};
use super::{NatsQueue, settle_err, subject};
use crate::events::invocation::{FunctionKey, Invocation};
use crate::events::queue::{Delivery, FetchLimits, QueueError};

/// Time allowed beyond a fetch's own wait before it is given up.
const FETCH_GRACE: Duration = Duration::from_secs(5);

/// A message taken from the stream, its settle record not yet read.
struct Leased {
    invocation: Invocation,
    message: Box<jetstream::Message>,
}

/// The JetStream queue's handle on a leased invocation: the message, to be
/// acknowledged (or negatively acknowledged) once its settle is recorded.
#[derive(Clone)]
pub struct NatsTicket {
    /// The leased message.
    pub(super) message: Box<jetstream::Message>,
    /// The invocation key, `<ns>/<fn>/<id>`.
    pub(super) key: String,
    /// Which attempt this delivery is (failures recorded + 1).
    pub(super) attempt: u32,
}

impl std::fmt::Debug for NatsTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTicket")
            .field("key", &self.key)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl NatsQueue {
    /// Hands leased `deliveries` back undelivered (a worker that cannot
    /// start them): they are offered again after a second (at once by
    /// their lease if the server is away), as the same attempt — a
    /// hand-back never counts as a delivery attempt ([`super::record`]).
    pub async fn hand_back(&self, deliveries: Vec<Delivery<NatsTicket>>) {
        hand_back(deliveries.into_iter().map(|d| d.ticket.message)).await;
    }

    /// Leases up to `limits.max` invocations of `target`: what is there at
    /// once, or else the first to arrive within `limits.wait`.
    pub(super) async fn lease(
        &self,
        target: &FunctionKey,
        limits: FetchLimits,
    ) -> Result<Vec<Delivery<NatsTicket>>, QueueError> {
        let consumer = self.consumer(target, limits).await?;
        let mut found = Self::take(&consumer, target, limits.max, None).await?;
        if found.is_empty() {
            found = Self::take(&consumer, target, 1, Some(limits.wait)).await?;
        }
        self.checked(found).await
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
                // Unlimited: the attempts are counted by Flint ([`super::record`]),
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
