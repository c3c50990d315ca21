//! The delivery worker: one loop per Function that leases due invocations
//! (never more than the Function's `async.maxInFlight` at once), sends each
//! through the gateway, and settles it — delivered, retried after a backoff,
//! or dead-lettered — then hands the result to the callbacks. It also keeps
//! the pending-depth gauges current for the autoscaler.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flint_api::sync::lock;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::callback::{CallbackConfig, Callbacks, Settled};
use super::deliver::{self, HttpClient, Outcome};
use super::invocation::{FunctionKey, now_ms};
use super::metrics::EventMetrics;
use super::policy::{self, Backoff, Limits, Next};
use super::queue::{Delivery, FetchLimits, Queue, QueueError};
use super::targets::{Target, Targets};

/// Worker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Backoff between delivery attempts.
    pub backoff: Backoff,
    /// Most invocations leased per fetch.
    pub batch: usize,
    /// How long a fetch waits for work.
    pub fetch_wait: Duration,
    /// Added to a Function's timeout to make its lease: how long a leased
    /// invocation may stay unsettled before another worker gets it.
    pub lease_margin: Duration,
    /// How often the depth gauges are refreshed.
    pub depth_every: Duration,
    /// Callback settings.
    pub callbacks: CallbackConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            batch: 64,
            fetch_wait: Duration::from_secs(1),
            lease_margin: Duration::from_secs(30),
            depth_every: Duration::from_secs(1),
            callbacks: CallbackConfig::default(),
        }
    }
}

/// Delivers asynchronous invocations from a queue `Q` through the gateway.
/// Generic over the queue, so a delivery is settled with the ticket type of
/// the queue that handed it out.
pub struct DeliveryWorker<Q> {
    shared: Arc<Shared<Q>>,
}

struct Shared<Q> {
    queue: Arc<Q>,
    targets: Targets,
    gateway: deliver::Destination,
    client: HttpClient,
    metrics: EventMetrics,
    callbacks: Callbacks,
    config: WorkerConfig,
    /// Invocations (by key, `<ns>/<fn>/<id>`) this worker is delivering or settling. A queue
    /// server that crashed may forget it handed one out and offer it again
    /// before the first delivery's settle lands; the second copy is left
    /// alone (unacknowledged) so the first settle decides its fate.
    holding: Mutex<HashSet<String>>,
}

impl<Q> std::fmt::Debug for DeliveryWorker<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryWorker")
            .field("gateway", &self.shared.gateway)
            .finish_non_exhaustive()
    }
}

impl<Q: Queue> DeliveryWorker<Q> {
    /// A worker taking from `queue` the invocations of `targets`, delivering
    /// them to the gateway at `gateway_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(
        queue: Arc<Q>,
        targets: Targets,
        gateway_url: &str,
        metrics: EventMetrics,
        config: WorkerConfig,
    ) -> Self {
        let client = deliver::client();
        Self {
            shared: Arc::new(Shared {
                callbacks: Callbacks::new(config.callbacks.clone(), metrics.clone()),
                queue,
                targets,
                gateway: deliver::Destination {
                    url: gateway_url.trim_end_matches('/').to_owned(),
                    token: None,
                },
                client,
                metrics,
                config,
                holding: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// The same worker presenting `token` (the gateway's internal token,
    /// [`crate::gateway::Gateway::internal_token`]) with every delivery, so
    /// that a cluster-local Function or one with `spec.auth` gets the
    /// invocations accepted for it.
    pub fn with_gateway_token(mut self, token: flint_api::drain::ControlToken) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.gateway.token = Some(token),
            None => {
                tracing::warn!("the delivery worker is already running; its token is unchanged")
            }
        }
        self
    }

    /// The same worker charging the result callbacks' bodies, until they
    /// are sent, to `budget` (the gateway's,
    /// [`crate::gateway::Gateway::memory_budget`]). Call before
    /// [`DeliveryWorker::run`].
    pub fn with_memory_budget(mut self, budget: crate::budget::MemoryBudget) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.callbacks = shared.callbacks.clone().with_memory_budget(budget),
            None => tracing::warn!(
                "the delivery worker is already running; its callbacks keep their memory budget"
            ),
        }
        self
    }

    /// Runs until `stop` turns true, then lets deliveries in flight finish
    /// and settle before returning.
    ///
    /// A Function's delivery loop runs while it has a target and may have
    /// work (see [`Queue::may_have_work`]): with the embedded queue, ten
    /// thousand Functions nobody invokes run no loop, and an enqueue
    /// starts one. A loop that finds its Function without work ends.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // Each loop with its target, halt switch and generation (a loop
        // replaced for a changed target ends later than its successor
        // starts; the generation tells which one ended).
        let mut loops: HashMap<FunctionKey, (Target, watch::Sender<bool>, u64)> = HashMap::new();
        let mut generation = 0u64;
        let mut tasks = JoinSet::new();
        let mut changed = self.shared.targets.subscribe();
        let mut arrivals = self.shared.queue.work_arrivals();
        let mut depth_tick = tokio::time::interval(self.shared.config.depth_every);
        // The loops follow the targets when they change, and the queue's
        // work when some arrives or a loop ends; not at every depth
        // refresh: ten thousand targets are not compared each second.
        let mut targets_changed = true;
        let mut work_changed = false;
        loop {
            let targets = self.shared.targets.all();
            if std::mem::take(&mut targets_changed) {
                loops.retain(|id, (target, halt, _)| {
                    let keep = targets.get(id) == Some(target);
                    if !keep {
                        let _ = halt.send(true);
                    }
                    keep
                });
                let wanted: Vec<FunctionKey> = targets
                    .keys()
                    .filter(|id| !loops.contains_key(*id) && self.shared.queue.may_have_work(id))
                    .cloned()
                    .collect();
                for id in wanted {
                    self.start_loop(&mut loops, &mut tasks, &mut generation, &targets, id);
                }
            } else if std::mem::take(&mut work_changed) {
                for id in self.shared.queue.with_work().unwrap_or_default() {
                    if !loops.contains_key(&id) {
                        self.start_loop(&mut loops, &mut tasks, &mut generation, &targets, id);
                    }
                }
            }
            tokio::select! {
                () = stopped(&mut stop) => break,
                r = changed.changed() => if r.is_err() { break } else { targets_changed = true },
                () = arrived(&mut arrivals) => work_changed = true,
                _ = depth_tick.tick() => self.shared.refresh_depths().await,
                Some(ended) = tasks.join_next() => {
                    if let Ok((id, ended_generation)) = ended
                        && loops.get(&id).is_some_and(|(_, _, g)| *g == ended_generation)
                    {
                        loops.remove(&id);
                    }
                    // Work may have arrived while it was ending.
                    work_changed = true;
                }
            }
        }
        tracing::debug!(loops = loops.len(), "delivery worker stopping");
        for (_, (_, halt, _)) in loops.drain() {
            let _ = halt.send(true);
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("delivery worker stopped");
    }
}

impl<Q: Queue> DeliveryWorker<Q> {
    /// Starts the delivery loop of `id` if it has a target.
    fn start_loop(
        &self,
        loops: &mut HashMap<FunctionKey, (Target, watch::Sender<bool>, u64)>,
        tasks: &mut JoinSet<(FunctionKey, u64)>,
        generation: &mut u64,
        targets: &HashMap<FunctionKey, Target>,
        id: FunctionKey,
    ) {
        let Some(target) = targets.get(&id).copied() else {
            return;
        };
        *generation += 1;
        let (halt, halted) = watch::channel(false);
        loops.insert(id.clone(), (target, halt, *generation));
        let shared = Arc::clone(&self.shared);
        let this = *generation;
        tasks.spawn(async move {
            function_loop(shared, id.clone(), target, halted).await;
            (id, this)
        });
    }
}

/// Completes when `arrivals` changes; never when there is none.
async fn arrived(arrivals: &mut Option<watch::Receiver<u64>>) {
    match arrivals {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The queue is gone: nothing more arrives.
                *arrivals = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Completes once `rx` holds `true` (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl<Q: Queue> Shared<Q> {
    async fn refresh_depths(&self) {
        match self.queue.depth().await {
            Ok(depths) => self.metrics.set_depths(&depths, now_ms()),
            Err(err) => tracing::debug!(error = %err, "reading queue depth failed"),
        }
    }

    /// Repeats a settle until it succeeds or `limit` passes: a settle that
    /// never lands means a redelivery, so it is worth trying while the
    /// lease lasts.
    async fn settle<F, Fut>(&self, what: &'static str, id: &str, limit: Duration, op: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), QueueError>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        let mut wait = Duration::from_millis(50);
        loop {
            match op().await {
                Ok(()) => return true,
                Err(err) if tokio::time::Instant::now() + wait < deadline => {
                    tracing::warn!(invocation = %id, error = %err, what, "settling failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(err) => {
                    tracing::error!(invocation = %id, error = %err, what, "settling failed; the invocation will be delivered again");
                    return false;
                }
            }
        }
    }
}

async fn function_loop<Q: Queue>(
    shared: Arc<Shared<Q>>,
    id: FunctionKey,
    target: Target,
    mut halt: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(target.max_in_flight as usize));
    let mut deliveries = JoinSet::new();
    let lease = target.timeout + shared.config.lease_margin;
    loop {
        // Nothing stored for the Function (and so nothing in flight): the
        // loop ends, and the next enqueue starts another.
        if !shared.queue.may_have_work(&id) {
            break;
        }
        let first = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = stopped(&mut halt) => break,
        };
        let mut permits = vec![first];
        while permits.len() < shared.config.batch {
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let limits = FetchLimits {
            max: permits.len(),
            max_in_flight: target.max_in_flight,
            wait: shared.config.fetch_wait,
            lease,
        };
        let fetched = tokio::select! {
            r = shared.queue.fetch(&id, limits) => r,
            () = stopped(&mut halt) => break,
        };
        match fetched {
            Ok(batch) => {
                for (delivery, permit) in batch.into_iter().zip(permits) {
                    let Some(hold) = Hold::take(&shared, &delivery.invocation.key()) else {
                        tracing::info!(invocation = %delivery.invocation.id, "offered again while its first delivery is still settling; left to that settle");
                        continue;
                    };
                    deliveries.spawn(deliver_one(
                        Arc::clone(&shared),
                        delivery,
                        target,
                        lease,
                        (permit, hold),
                    ));
                }
            }
            Err(err) => {
                tracing::warn!(function = %id, error = %err, kind = err.metric_label(), "fetching invocations failed");
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = stopped(&mut halt) => break,
                }
            }
        }
        while deliveries.try_join_next().is_some() {}
    }
    tracing::debug!(function = %id, in_flight = deliveries.len(), "function loop stopping");
    while deliveries.join_next().await.is_some() {}
    tracing::debug!(function = %id, "function loop stopped");
}

/// An invocation key in [`Shared::holding`], released when dropped (also
/// when its delivery task is cancelled).
struct Hold<Q> {
    shared: Arc<Shared<Q>>,
    key: String,
}

impl<Q> Hold<Q> {
    /// Holds `key`, or `None` when this worker already holds it.
    fn take(shared: &Arc<Shared<Q>>, key: &str) -> Option<Self> {
        let mut holding = lock(&shared.holding);
        holding.insert(key.to_owned()).then(|| Self {
            shared: Arc::clone(shared),
            key: key.to_owned(),
        })
    }
}

impl<Q> Drop for Hold<Q> {
    fn drop(&mut self) {
        let mut holding = lock(&self.shared.holding);
        holding.remove(&self.key);
    }
}

async fn deliver_one<Q: Queue>(
    shared: Arc<Shared<Q>>,
    delivery: Delivery<Q::Ticket>,
    target: Target,
    lease: Duration,
    _held: (OwnedSemaphorePermit, Hold<Q>),
) {
    let inv = &delivery.invocation;
    let limits = Limits {
        max_retries: target.max_retries,
        max_age: target.max_age,
    };
    let age = |now: u64| Duration::from_millis(now.saturating_sub(inv.enqueued_at_ms));
    let (outcome, next) = if policy::expired(age(now_ms()), limits) {
        let outcome = Outcome {
            attempt: policy::Attempt::TimedOut,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
            error: Some("not attempted".into()),
        };
        let give_up = policy::GiveUp::MaxAge {
            age_seconds: age(now_ms()).as_secs(),
        };
        (outcome, Next::DeadLetter(give_up))
    } else {
        let outcome = deliver::send(
            &shared.client,
            &shared.gateway,
            inv,
            delivery.attempt,
            target.timeout + Duration::from_secs(5),
        )
        .await;
        let verdict = policy::classify(outcome.attempt);
        let delay = policy::backoff(shared.config.backoff, delivery.attempt, rand::random());
        (
            outcome,
            policy::next(verdict, delivery.attempt, age(now_ms()), limits, delay),
        )
    };
    let queue = &shared.queue;
    match next {
        Next::Complete => {
            if shared
                .settle("complete", &inv.id, lease, || {
                    queue.complete(delivery.ticket.clone())
                })
                .await
            {
                shared.metrics.delivered(&inv.target);
                shared.callbacks.send(inv, Settled::Delivered, &outcome);
            }
        }
        Next::Retry(delay) => {
            tracing::debug!(invocation = %inv.id, attempt = delivery.attempt, outcome = %outcome.describe(), ?delay, "delivery failed; retrying");
            if shared
                .settle("retry", &inv.id, lease, || {
                    queue.retry(delivery.ticket.clone(), delay)
                })
                .await
            {
                shared.metrics.retried(&inv.target);
            }
        }
        Next::DeadLetter(give_up) => {
            let reason = format!(
                "{give_up}; last attempt ({}): {}",
                delivery.attempt,
                outcome.describe()
            );
            if shared
                .settle("dead-letter", &inv.id, lease, || {
                    queue.dead_letter(delivery.clone(), &reason)
                })
                .await
            {
                shared
                    .metrics
                    .dead_lettered(&inv.target, give_up.metric_label());
                tracing::warn!(invocation = %inv.id, function = %inv.target, %reason, "invocation dead-lettered");
                shared
                    .callbacks
                    .send(inv, Settled::DeadLettered(&reason), &outcome);
            }
        }
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
