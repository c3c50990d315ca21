//! One replica: a child process running the Function's command with `PORT`
//! set, probed for readiness (and liveness, when the manifest asks),
//! stopped with SIGTERM then SIGKILL.
//!
//! This module starts the process and runs its life (starting, serving,
//! gone), reporting each step to the supervisor; the probes that decide
//! when it is ready or must go live in [`health`], the process's output
//! and its stopping in [`process`].

mod health;
mod process;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use super::probe::Probes;
use health::Watch;
use process::{KEPT_LINES, forward_output, terminate};

/// What to run for every replica of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Program and arguments (`command` followed by `args`).
    pub argv: Vec<String>,
    /// Extra environment (the manifest's `env` values); `PORT` is added per replica.
    pub env: Vec<(String, String)>,
    /// Working directory: the manifest's directory, or `workingDir` under it.
    pub dir: PathBuf,
    /// The manifest's startup, readiness and liveness probes.
    pub probes: Probes,
    /// Prefix of the replica's output lines on Flint's stderr.
    pub log_prefix: String,
    /// Longest time a replica may take to become ready before it is restarted.
    pub startup_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub stop_grace: Duration,
}

/// What a replica reports to its supervisor.
#[derive(Debug)]
pub enum ReplicaEvent {
    /// The app accepts connections at `addr`; it took `startup` since spawn.
    Ready {
        /// Replica id.
        id: u64,
        /// Where it listens.
        addr: SocketAddr,
        /// Time from spawn to ready.
        startup: Duration,
    },
    /// A ready replica's readiness probe failed `failureThreshold` times
    /// in a row (`ready: false`), or passed again (`ready: true`).
    Readiness {
        /// Replica id.
        id: u64,
        /// Whether it may take requests now.
        ready: bool,
        /// The last probe's result, for people.
        reason: String,
    },
    /// The process is gone.
    Exited {
        /// Replica id.
        id: u64,
        /// Whether it had become ready before it exited.
        was_ready: bool,
        /// Whether Flint asked it to stop.
        requested: bool,
        /// Why it ended, for people: exit status and the last lines of its output.
        reason: String,
    },
}

/// Errors starting a replica.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The manifest has no command to run locally.
    #[error("no command to run: set spec.command for `flint dev`")]
    NoCommand,
    /// The program could not be started.
    #[error("cannot start {program:?} in {dir}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The working directory.
        dir: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running replica task; dropping it does not stop the process, [`ReplicaHandle::stop`] does.
#[derive(Debug)]
pub struct ReplicaHandle {
    /// The address the replica listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl ReplicaHandle {
    /// Asks the replica to stop (SIGTERM, then SIGKILL after the grace period).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Spawns replica `id` listening on `addr` and supervises it until it exits;
/// events go to `events`.
pub fn spawn(
    spec: &ProcessSpec,
    id: u64,
    addr: SocketAddr,
    events: mpsc::UnboundedSender<ReplicaEvent>,
) -> Result<ReplicaHandle, ReplicaError> {
    let (program, args) = spec.argv.split_first().ok_or(ReplicaError::NoCommand)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&spec.dir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("PORT", addr.port().to_string())
        .env("FLINT_DEV", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group, so stopping reaches the app's own children too.
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ReplicaError::Spawn {
        program: program.clone(),
        dir: spec.dir.display().to_string(),
        source,
    })?;
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LINES)));
    let prefix = format!("{}#{id}", spec.log_prefix);
    let mut readers = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(forward_output(
            out,
            prefix.clone(),
            Arc::clone(&tail),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(forward_output(err, prefix, Arc::clone(&tail))));
    }
    let (stop_tx, stop_rx) = oneshot::channel();
    let run = Run {
        id,
        addr,
        started,
        startup_timeout: spec.startup_timeout,
        grace: spec.stop_grace,
        probes: spec.probes.clone(),
        tail,
        readers,
    };
    tokio::spawn(run.supervise(child, stop_rx, events));
    Ok(ReplicaHandle {
        addr,
        stop: Some(stop_tx),
    })
}

/// A running replica, as its supervising task sees it.
struct Run {
    id: u64,
    addr: SocketAddr,
    started: Instant,
    startup_timeout: Duration,
    grace: Duration,
    probes: Probes,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// The tasks forwarding its stdout and stderr.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Run {
    /// Runs the replica's life until its process is gone: starting (until
    /// its probes pass, it exits, or it is asked to stop), then serving
    /// (until it exits, is asked to stop, or fails its liveness probe),
    /// reporting each step to `events`.
    async fn supervise(
        mut self,
        mut child: Child,
        mut stop: oneshot::Receiver<()>,
        events: mpsc::UnboundedSender<ReplicaEvent>,
    ) {
        // Starting: the process runs, the probes have not passed yet.
        let outcome = tokio::select! {
            ready = self.start() => ready.err().map(|why| (false, why)),
            status = child.wait() => Some((false, self.describe(status).await)),
            _ = &mut stop => { terminate(&mut child, self.grace).await; Some((true, "stopped".to_owned())) }
        };
        if let Some((requested, reason)) = outcome {
            if !requested {
                terminate(&mut child, self.grace).await;
            }
            let _ = events.send(ReplicaEvent::Exited {
                id: self.id,
                was_ready: false,
                requested,
                reason,
            });
            return;
        }
        let _ = events.send(ReplicaEvent::Ready {
            id: self.id,
            addr: self.addr,
            startup: self.started.elapsed(),
        });
        // Serving: until it exits, is asked to stop, or fails its liveness probe.
        let mut readiness = Watch::new("readiness", self.probes.readiness.clone(), self.started);
        let mut liveness = Watch::new("liveness", self.probes.liveness.clone(), self.started);
        let mut ready = true;
        let (requested, reason) = loop {
            tokio::select! {
                status = child.wait() => break (false, self.describe(status).await),
                _ = &mut stop => { terminate(&mut child, self.grace).await; break (true, "stopped".to_owned()) }
                changed = readiness.next(self.addr) => {
                    if let Some((passing, why)) = changed && passing != ready {
                        ready = passing;
                        let _ = events.send(ReplicaEvent::Readiness { id: self.id, ready, reason: why });
                    }
                }
                changed = liveness.next(self.addr) => {
                    if let Some((false, why)) = changed {
                        terminate(&mut child, self.grace).await;
                        break (false, why);
                    }
                }
            }
        };
        let _ = events.send(ReplicaEvent::Exited {
            id: self.id,
            was_ready: true,
            requested,
            reason,
        });
    }
}
