//! Event-driven invocation: asynchronous requests accepted durably and
//! delivered later through the gateway's own data path, with retries,
//! dead letters and result callbacks.
//!
//! - [`intake::AsyncIntake`]: answers `Prefer: respond-async` and
//!   `/async-function/<ns>/<fn>/…` requests with 202 and an invocation id.
//! - [`queue::Queue`]: the durable queue, [`embedded::EmbeddedQueue`] in
//!   `flint dev` and [`nats::NatsQueue`] (JetStream) on a cluster.
//! - [`worker::DeliveryWorker`]: delivers over loopback HTTP to the gateway
//!   (so a Function at zero is woken and `concurrency` holds), retries with
//!   backoff and jitter, dead-letters, calls back.
//! - [`metrics::EventMetrics`]: accepted, delivered, retried, dead-lettered,
//!   pending depth (the autoscaler's queue signal) and oldest pending age.

pub mod address;
mod body;
pub mod callback;
pub mod cluster;
pub mod connect;
pub mod deliver;
pub mod embedded;
pub mod intake;
pub mod invocation;
pub mod metrics;
pub mod nats;
pub mod policy;
pub mod queue;
#[cfg(any(test, feature = "test-support"))]
pub mod scripted;
pub mod targets;
pub mod worker;

use std::path::Path;
use std::sync::Arc;

pub use address::{AddressPolicy, Cidr};
pub use embedded::EmbeddedQueue;
pub use intake::AsyncIntake;
pub use invocation::{FunctionKey, Invocation};
pub use metrics::EventMetrics;
pub use nats::{NatsQueue, NatsSettings};
pub use queue::{Queue, QueueError};
pub use targets::{Target, Targets};
pub use worker::{DeliveryWorker, WorkerConfig};

/// Why the events machinery could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The queue could not be opened or reached.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The metrics could not be registered.
    #[error("registering the async metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Everything `flint dev` wires for asynchronous invocations.
#[derive(Debug)]
pub struct LocalEvents {
    /// Give to [`crate::gateway::Gateway::set_async_intake`].
    pub intake: AsyncIntake,
    /// Run with a stop signal: `tokio::spawn(worker.run(stop_rx))`.
    pub worker: DeliveryWorker<EmbeddedQueue>,
    /// Keep current with the manifests: `targets.set_functions(&functions)`.
    pub targets: Targets,
    /// The embedded store, which also records schedule ticks
    /// ([`flint_api::backend::TickStore`]) for the cron scheduler.
    pub store: EmbeddedQueue,
}

/// The embedded setup of `flint dev`: the store in `dir` (created if
/// missing; kept across restarts), delivering to the gateway at
/// `gateway_url`, with callbacks under `callbacks` (see
/// [`AddressPolicy::for_local_gateway`]).
pub fn local(
    dir: &Path,
    gateway_url: &str,
    callbacks: AddressPolicy,
) -> Result<LocalEvents, EventsError> {
    let mut config = WorkerConfig::default();
    config.callbacks.addresses = callbacks;
    config.fetch_wait = EMBEDDED_FETCH_WAIT;
    local_with(dir, gateway_url, config)
}

/// How long an idle Function's delivery loop waits on the embedded queue
/// before it looks again. An enqueue wakes the waiting fetch of its
/// Function at once, and a retry falling due is looked for within the
/// wait, so this only bounds the wake-ups of Functions nobody invokes:
/// ten thousand of them wake 333 times a second at 30 s, not 10,000.
const EMBEDDED_FETCH_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// [`local`] with explicit worker settings.
pub fn local_with(
    dir: &Path,
    gateway_url: &str,
    config: WorkerConfig,
) -> Result<LocalEvents, EventsError> {
    let store = EmbeddedQueue::open(dir)?;
    let queue = Arc::new(store.clone());
    let targets = Targets::default();
    let metrics = EventMetrics::new()?;
    Ok(LocalEvents {
        intake: AsyncIntake::new(Arc::clone(&queue), targets.clone(), metrics.clone())
            .with_callback_policy(config.callbacks.addresses.clone()),
        worker: DeliveryWorker::new(queue, targets.clone(), gateway_url, metrics, config),
        targets,
        store,
    })
}

/// The cluster's intake, worker and targets, on NATS JetStream.
#[derive(Debug)]
pub struct ClusterEvents {
    /// The intake.
    pub intake: AsyncIntake,
    /// The worker.
    pub worker: DeliveryWorker<NatsQueue>,
    /// The targets (fed by [`cluster::watch_functions`]).
    pub targets: Targets,
}

/// Connects to NATS as `settings` say and builds the cluster setup.
pub async fn nats(
    settings: &NatsSettings,
    gateway_url: &str,
    config: WorkerConfig,
) -> Result<ClusterEvents, EventsError> {
    let queue = Arc::new(NatsQueue::connect(settings).await?);
    let targets = Targets::default();
    let metrics = EventMetrics::new()?;
    Ok(ClusterEvents {
        intake: AsyncIntake::new(Arc::clone(&queue), targets.clone(), metrics.clone())
            .with_callback_policy(config.callbacks.addresses.clone()),
        worker: DeliveryWorker::new(queue, targets.clone(), gateway_url, metrics, config),
        targets,
    })
}
