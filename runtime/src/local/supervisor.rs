//! One revision's replicas: keeps as many processes as the autoscaler asked
//! for, restarts crashed ones with backoff, reports a revision that cannot
//! start, and drains replicas (out of rotation first, in-flight requests
//! finished) before stopping them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flint_api::backend::{Endpoint, Replicas, RevisionKey};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::ports::free_loopback_port;
use super::replica::{self, ProcessSpec, ReplicaEvent, ReplicaHandle};
use super::{BackendEvent, EndpointSink};

/// Consecutive failed starts after which the revision is reported failed.
const FAILED_AFTER: u32 = 3;
/// First and longest restart backoff.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often a draining replica's in-flight count is checked.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Requests to a supervisor.
#[derive(Debug)]
pub(super) enum Command {
    /// Keep `n` replicas.
    Scale(u32),
    /// Drain and stop every replica, then end; the sender is told when done.
    Stop(oneshot::Sender<()>),
}

struct Replica {
    handle: ReplicaHandle,
    ready: bool,
    terminating: bool,
}

/// The per-revision actor.
pub(super) struct Supervisor {
    key: RevisionKey,
    spec: ProcessSpec,
    drain_timeout: Duration,
    sink: Arc<dyn EndpointSink>,
    events: broadcast::Sender<BackendEvent>,
    state: watch::Sender<Replicas>,
    desired: u32,
    replicas: BTreeMap<u64, Replica>,
    next_id: u64,
    failed_starts: u32,
    retry_at: Option<Instant>,
    failure: Option<String>,
}

impl Supervisor {
    pub(super) fn new(
        key: RevisionKey,
        spec: ProcessSpec,
        drain_timeout: Duration,
        sink: Arc<dyn EndpointSink>,
        events: broadcast::Sender<BackendEvent>,
        state: watch::Sender<Replicas>,
    ) -> Self {
        Self {
            key,
            spec,
            drain_timeout,
            sink,
            events,
            state,
            desired: 0,
            replicas: BTreeMap::new(),
            next_id: 1,
            failed_starts: 0,
            retry_at: None,
            failure: None,
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let (drained_tx, mut drained_rx) = mpsc::unbounded_channel::<u64>();
        let mut stopped: Vec<oneshot::Sender<()>> = Vec::new();
        let mut stopping = false;
        loop {
            self.converge(&ev_tx, &drained_tx);
            self.publish();
            if stopping && self.replicas.is_empty() {
                break;
            }
            let retry = self.retry_at;
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Scale(n)) if !stopping => self.set_desired(n),
                    Some(Command::Scale(_)) => {}
                    Some(Command::Stop(done)) => { stopping = true; self.desired = 0; stopped.push(done); }
                    None => { stopping = true; self.desired = 0; }
                },
                Some(ev) = ev_rx.recv() => self.on_replica_event(ev),
                Some(id) = drained_rx.recv() => {
                    if let Some(r) = self.replicas.get_mut(&id) { r.handle.stop(); }
                }
                _ = sleep_until(retry), if retry.is_some() => self.retry_at = None,
            }
        }
        self.sink.set_endpoints(&self.key, Vec::new());
        for done in stopped {
            let _ = done.send(());
        }
    }

    fn set_desired(&mut self, n: u32) {
        if n != self.desired {
            let _ = self.events.send(BackendEvent::Scaled {
                revision: self.key.clone(),
                from: self.desired,
                to: n,
            });
            self.desired = n;
        }
    }

    /// Starts or drains replicas until the live (not terminating) count matches `desired`.
    fn converge(
        &mut self,
        ev_tx: &mpsc::UnboundedSender<ReplicaEvent>,
        drained_tx: &mpsc::UnboundedSender<u64>,
    ) {
        let live = self.replicas.values().filter(|r| !r.terminating).count();
        let desired = self.desired as usize;
        if live < desired && self.retry_at.is_none() {
            for _ in live..desired {
                if !self.start_one(ev_tx) {
                    break;
                }
            }
        } else if live > desired {
            for _ in desired..live {
                if let Some(id) = self.pick_victim() {
                    self.drain(id, drained_tx);
                }
            }
        }
    }

    fn start_one(&mut self, ev_tx: &mpsc::UnboundedSender<ReplicaEvent>) -> bool {
        let id = self.next_id;
        self.next_id += 1;
        let started = free_loopback_port()
            .map_err(|e| format!("no free port: {e}"))
            .and_then(|addr| {
                replica::spawn(&self.spec, id, addr, ev_tx.clone()).map_err(|e| e.to_string())
            });
        match started {
            Ok(handle) => {
                tracing::debug!(revision = %self.key, replica = id, addr = %handle.addr, "replica starting");
                self.replicas.insert(
                    id,
                    Replica {
                        handle,
                        ready: false,
                        terminating: false,
                    },
                );
                true
            }
            Err(reason) => {
                self.start_failed(reason);
                false
            }
        }
    }

    /// Not-ready replicas first (they carry no traffic), then the least busy, newest on ties.
    fn pick_victim(&self) -> Option<u64> {
        self.replicas
            .iter()
            .filter(|(_, r)| !r.terminating)
            .min_by_key(|(id, r)| {
                let busy = if r.ready {
                    1 + self.sink.in_flight(&self.key, &id.to_string())
                } else {
                    0
                };
                (busy, std::cmp::Reverse(**id))
            })
            .map(|(id, _)| *id)
    }

    /// Takes a replica out of rotation, then stops it once its in-flight requests finished.
    fn drain(&mut self, id: u64, drained_tx: &mpsc::UnboundedSender<u64>) {
        let Some(r) = self.replicas.get_mut(&id) else {
            return;
        };
        r.terminating = true;
        if !r.ready {
            r.handle.stop();
            return;
        }
        self.publish();
        let sink = Arc::clone(&self.sink);
        let key = self.key.clone();
        let deadline = Instant::now() + self.drain_timeout;
        let tx = drained_tx.clone();
        tokio::spawn(async move {
            while sink.in_flight(&key, &id.to_string()) > 0 && Instant::now() < deadline {
                tokio::time::sleep(DRAIN_POLL).await;
            }
            let _ = tx.send(id);
        });
    }

    fn on_replica_event(&mut self, ev: ReplicaEvent) {
        match ev {
            ReplicaEvent::Ready { id, addr, startup } => {
                let cold = !self.replicas.values().any(|r| r.ready && !r.terminating);
                if let Some(r) = self.replicas.get_mut(&id) {
                    r.ready = true;
                }
                self.failed_starts = 0;
                if self.failure.take().is_some() {
                    let _ = self.events.send(BackendEvent::RevisionRecovered {
                        revision: self.key.clone(),
                    });
                }
                let _ = self.events.send(BackendEvent::ReplicaReady {
                    revision: self.key.clone(),
                    replica: id,
                    addr,
                    startup,
                    cold,
                });
            }
            ReplicaEvent::Readiness { id, ready, reason } => {
                if let Some(r) = self.replicas.get_mut(&id) {
                    r.ready = ready;
                    let _ = self.events.send(BackendEvent::ReplicaReadiness {
                        revision: self.key.clone(),
                        replica: id,
                        ready,
                        reason,
                    });
                }
            }
            ReplicaEvent::Exited {
                id,
                was_ready,
                requested,
                reason,
            } => {
                let terminating = self.replicas.remove(&id).is_some_and(|r| r.terminating);
                let crashed = !requested && !terminating;
                let _ = self.events.send(BackendEvent::ReplicaExited {
                    revision: self.key.clone(),
                    replica: id,
                    crashed,
                    reason: reason.clone(),
                });
                if crashed {
                    if was_ready {
                        // It served before: restart soon, without counting toward failure.
                        self.retry_at = Some(Instant::now() + BACKOFF_MIN);
                    } else {
                        self.start_failed(reason);
                    }
                }
            }
        }
    }

    fn start_failed(&mut self, reason: String) {
        self.failed_starts += 1;
        let exp = self.failed_starts.saturating_sub(1).min(16);
        let backoff = BACKOFF_MIN.saturating_mul(1 << exp).min(BACKOFF_MAX);
        self.retry_at = Some(Instant::now() + backoff);
        tracing::warn!(revision = %self.key, attempts = self.failed_starts, %reason, ?backoff, "replica failed to start");
        if self.failed_starts >= FAILED_AFTER && self.failure.as_deref() != Some(reason.as_str()) {
            self.failure = Some(reason.clone());
            let _ = self.events.send(BackendEvent::RevisionFailed {
                revision: self.key.clone(),
                message: reason,
            });
        }
    }

    fn publish(&self) {
        let endpoints: Vec<Endpoint> = self
            .replicas
            .iter()
            .filter(|(_, r)| r.ready)
            .map(|(id, r)| Endpoint {
                id: id.to_string(),
                addr: r.handle.addr,
                ready: true,
                terminating: r.terminating,
            })
            .collect();
        let ready = endpoints.iter().filter(|e| !e.terminating).count();
        self.state.send_replace(Replicas {
            desired: self.desired,
            ready: u32::try_from(ready).unwrap_or(u32::MAX),
        });
        self.sink.set_endpoints(&self.key, endpoints);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
