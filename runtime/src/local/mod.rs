//! The local backend behind `flint dev`: each replica of a revision is a child
//! process running the Function's command with `PORT` set, in the manifest's
//! directory (or its `workingDir` under it), probed as the manifest says. It
//! implements the same [`ScaleActuator`] as the Kubernetes backend, so the
//! autoscaler drives it unchanged, and it feeds replica endpoints to the
//! gateway through an [`EndpointSink`].

mod ports;
mod probe;
mod replica;
mod sink;
mod supervisor;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flint_api::backend::{Endpoint, Replicas, RevisionKey, ScaleActuator, ScaleError};
use flint_api::sync::lock;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use probe::{LocalProbe, ProbeCheck, Probes};
pub use replica::ProcessSpec;
use supervisor::{Command, Supervisor};

/// Where replica endpoints go (the gateway), and how busy each replica is, so
/// a replica is drained before it stops.
pub trait EndpointSink: Send + Sync + 'static {
    /// The replicas of `revision` changed; `endpoints` is the full list.
    fn set_endpoints(&self, revision: &RevisionKey, endpoints: Vec<Endpoint>);
    /// Requests in flight to replica `endpoint_id` of `revision`.
    fn in_flight(&self, revision: &RevisionKey, endpoint_id: &str) -> usize;
}

/// Something a person running `flint dev` wants to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// The autoscaler changed a revision's replica count.
    Scaled {
        /// The revision.
        revision: RevisionKey,
        /// Replicas before.
        from: u32,
        /// Replicas now asked for.
        to: u32,
    },
    /// A replica became ready.
    ReplicaReady {
        /// The revision.
        revision: RevisionKey,
        /// Replica id.
        replica: u64,
        /// Where it listens.
        addr: SocketAddr,
        /// Time from process start to ready.
        startup: Duration,
        /// No other replica was serving: requests were waiting on this one.
        cold: bool,
    },
    /// A ready replica's readiness probe failed (it is out of rotation) or
    /// passed again (it is back).
    ReplicaReadiness {
        /// The revision.
        revision: RevisionKey,
        /// Replica id.
        replica: u64,
        /// Whether it takes requests now.
        ready: bool,
        /// The probe's result, for people.
        reason: String,
    },
    /// A replica's process ended.
    ReplicaExited {
        /// The revision.
        revision: RevisionKey,
        /// Replica id.
        replica: u64,
        /// It ended on its own (not asked to stop).
        crashed: bool,
        /// Exit status and its last output.
        reason: String,
    },
    /// Replicas keep failing to start; requests get 503 with `message`.
    RevisionFailed {
        /// The revision.
        revision: RevisionKey,
        /// Why, for people.
        message: String,
    },
    /// A failed revision started a replica after all.
    RevisionRecovered {
        /// The revision.
        revision: RevisionKey,
    },
}

/// A registered revision.
enum RevisionEntry {
    /// At zero and never asked for a replica: what its supervisor needs,
    /// and no task or channel yet. Most of ten thousand Functions at zero
    /// stay here, at the size of their process spec.
    Idle {
        spec: Box<ProcessSpec>,
        drain_timeout: Duration,
    },
    /// Its supervisor runs (since the first replica was asked for).
    Running {
        commands: mpsc::UnboundedSender<Command>,
        state: watch::Receiver<Replicas>,
    },
}

/// Runs revisions as local processes. Cheap to clone.
#[derive(Clone)]
pub struct LocalBackend {
    revisions: Arc<Mutex<HashMap<RevisionKey, RevisionEntry>>>,
    sink: Arc<dyn EndpointSink>,
    events: broadcast::Sender<BackendEvent>,
}

impl LocalBackend {
    /// A backend that publishes endpoints to `sink`.
    pub fn new(sink: Arc<dyn EndpointSink>) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            revisions: Arc::default(),
            sink,
            events,
        }
    }

    /// Events for display (scale changes, replicas ready or exited, failures).
    pub fn subscribe(&self) -> broadcast::Receiver<BackendEvent> {
        self.events.subscribe()
    }

    /// Registers a revision at zero replicas; `drain_timeout` bounds how long
    /// a leaving replica may finish its in-flight requests. Its supervisor
    /// starts with the first replica asked for.
    pub fn add_revision(&self, key: RevisionKey, spec: ProcessSpec, drain_timeout: Duration) {
        lock(&self.revisions)
            .entry(key)
            .or_insert_with(|| RevisionEntry::Idle {
                spec: Box::new(spec),
                drain_timeout,
            });
    }

    /// Drains and stops every replica of `key` and forgets it; returns when
    /// its processes are gone.
    pub async fn remove_revision(&self, key: &RevisionKey) {
        let entry = lock(&self.revisions).remove(key);
        if let Some(RevisionEntry::Running { commands, .. }) = entry {
            let (done_tx, done_rx) = oneshot::channel();
            if commands.send(Command::Stop(done_tx)).is_ok() {
                let _ = done_rx.await;
            }
        }
    }

    /// Stops every revision; returns when no child process is left.
    pub async fn shutdown(&self) {
        let keys: Vec<RevisionKey> = lock(&self.revisions).keys().cloned().collect();
        let stops = keys.iter().map(|k| self.remove_revision(k));
        futures::future::join_all(stops).await;
    }

    /// The revisions currently registered.
    pub fn revisions(&self) -> Vec<RevisionKey> {
        lock(&self.revisions).keys().cloned().collect()
    }

    /// `entry`'s command sender, starting its supervisor if it is idle.
    fn run(&self, key: &RevisionKey, entry: &mut RevisionEntry) -> mpsc::UnboundedSender<Command> {
        let (spec, drain_timeout) = match entry {
            RevisionEntry::Running { commands, .. } => return commands.clone(),
            RevisionEntry::Idle {
                spec,
                drain_timeout,
            } => (ProcessSpec::clone(spec), *drain_timeout),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(Replicas::default());
        let sup = Supervisor::new(
            key.clone(),
            spec,
            drain_timeout,
            Arc::clone(&self.sink),
            self.events.clone(),
            state_tx,
        );
        tokio::spawn(sup.run(rx));
        *entry = RevisionEntry::Running {
            commands: tx.clone(),
            state: state_rx,
        };
        tx
    }
}

fn no_such_revision(revision: &RevisionKey) -> ScaleError {
    ScaleError {
        revision: revision.clone(),
        reason: "no such revision in flint dev".into(),
    }
}

impl ScaleActuator for LocalBackend {
    async fn scale(&self, revision: &RevisionKey, replicas: u32) -> Result<(), ScaleError> {
        let commands = {
            let mut revisions = lock(&self.revisions);
            let entry = revisions
                .get_mut(revision)
                .ok_or_else(|| no_such_revision(revision))?;
            if replicas == 0 && matches!(entry, RevisionEntry::Idle { .. }) {
                return Ok(());
            }
            self.run(revision, entry)
        };
        commands
            .send(Command::Scale(replicas))
            .map_err(|_| ScaleError {
                revision: revision.clone(),
                reason: "revision is shutting down".into(),
            })
    }

    async fn replicas(&self, revision: &RevisionKey) -> Result<Replicas, ScaleError> {
        match lock(&self.revisions).get(revision) {
            Some(RevisionEntry::Running { state, .. }) => Ok(*state.borrow()),
            Some(RevisionEntry::Idle { .. }) => Ok(Replicas::default()),
            None => Err(no_such_revision(revision)),
        }
    }
}
