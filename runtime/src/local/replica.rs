//! One replica: a child process running the Function's command with `PORT`
//! set, probed for readiness (and liveness, when the manifest asks),
//! stopped with SIGTERM then SIGKILL.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flint_api::sync::lock;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use super::probe::{LocalProbe, Probes};

/// How often the readiness probe retries while a replica starts: a refused
/// loopback connect costs microseconds, and every millisecond here is added
/// to the cold start.
const PROBE_INTERVAL: Duration = Duration::from_millis(1);
/// How often a starting replica's own probe is retried once the app
/// answers: often enough for a fast cold start, rarely enough not to flood
/// an app that is still loading.
const STARTING_PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Lines of output kept to explain a crash.
const KEPT_LINES: usize = 8;
/// How long an exit waits for the rest of the process's output, so its
/// reason includes the last line written just before it (e.g. the error
/// an app prints as it gives up). Bounded: a leftover child of the app may
/// hold the pipes open.
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);

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

    /// Waits for the startup probe (if any), then for the readiness probe
    /// (by default: a TCP connect) to pass, checking quickly rather than
    /// every period so a cold start is not slower for it. The error says
    /// why the replica never became ready.
    async fn start(&self) -> Result<(), String> {
        let mut deadline = tokio::time::Instant::from_std(self.started) + self.startup_timeout;
        if let Some(startup) = &self.probes.startup {
            // The kubelet allows initialDelaySeconds + failureThreshold periods.
            let budget =
                startup.initial_delay + startup.period.saturating_mul(startup.failure_threshold);
            deadline = deadline.max(tokio::time::Instant::from_std(self.started) + budget);
            self.until_passing(startup, 1, deadline)
                .await
                .map_err(|why| format!("startup probe did not pass: {why}"))?;
        }
        match &self.probes.readiness {
            Some(readiness) => self
                .until_passing(readiness, readiness.success_threshold.max(1), deadline)
                .await
                .map_err(|why| format!("readiness probe did not pass: {why}")),
            None => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if probe(self.addr, left).await {
                    Ok(())
                } else {
                    Err(format!(
                        "not ready after {:?} (no listener on port {})",
                        self.startup_timeout,
                        self.addr.port()
                    ))
                }
            }
        }
    }

    /// Checks `p` until it passes `passes` times in a row, or `deadline`.
    async fn until_passing(
        &self,
        p: &LocalProbe,
        passes: u32,
        deadline: tokio::time::Instant,
    ) -> Result<(), String> {
        tokio::time::sleep_until(tokio::time::Instant::from_std(self.started) + p.initial_delay)
            .await;
        let mut streak = 0;
        let mut last = "never checked".to_owned();
        while tokio::time::Instant::now() < deadline {
            match p.check(self.addr).await {
                Ok(()) => {
                    streak += 1;
                    if streak >= passes {
                        return Ok(());
                    }
                    tokio::time::sleep(STARTING_PROBE_INTERVAL).await;
                }
                Err(why) => {
                    streak = 0;
                    // Nothing listens yet: retry at once; the app answers
                    // but fails: give it a moment.
                    let pause = if why.starts_with("connect") {
                        PROBE_INTERVAL
                    } else {
                        STARTING_PROBE_INTERVAL
                    };
                    last = why;
                    tokio::time::sleep(pause).await;
                }
            }
        }
        Err(last)
    }

    /// Why the process ended: its exit status and its last output line,
    /// once the output it wrote before exiting has been read.
    async fn describe(&mut self, status: std::io::Result<ExitStatus>) -> String {
        let readers = std::mem::take(&mut self.readers);
        let _ = tokio::time::timeout(OUTPUT_DRAIN, futures::future::join_all(readers)).await;
        let status = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("wait failed: {e}"),
        };
        let tail: Vec<String> = lock(&self.tail).iter().cloned().collect();
        match tail.last() {
            Some(last) => format!("process {status}; last output: {last}"),
            None => format!("process {status}"),
        }
    }
}

/// A probe run every period once the replica is ready, counting
/// consecutive results against its thresholds.
struct Watch {
    name: &'static str,
    probe: Option<LocalProbe>,
    next_at: tokio::time::Instant,
    passing: bool,
    streak: u32,
}

impl Watch {
    fn new(name: &'static str, probe: Option<LocalProbe>, started: Instant) -> Self {
        let started = tokio::time::Instant::from_std(started);
        let next_at = probe.as_ref().map_or(started, |p| {
            (started + p.initial_delay).max(tokio::time::Instant::now() + p.period)
        });
        Self {
            name,
            probe,
            next_at,
            passing: true,
            streak: 0,
        }
    }

    /// Runs the next check when it is due; returns the probe's verdict
    /// when it changed (`false` after `failureThreshold` failures in a
    /// row, `true` after `successThreshold` passes in a row), with the last
    /// check's result. Never returns without a probe.
    async fn next(&mut self, addr: SocketAddr) -> Option<(bool, String)> {
        let Some(p) = &self.probe else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(self.next_at).await;
        self.next_at = tokio::time::Instant::now() + p.period;
        let result = p.check(addr).await;
        let passed = result.is_ok();
        if passed == self.passing {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if passed {
            p.success_threshold
        } else {
            p.failure_threshold
        };
        if self.streak < needed.max(1) {
            return None;
        }
        self.streak = 0;
        self.passing = passed;
        Some(match result {
            Ok(()) => (true, format!("{} probe passes again", self.name)),
            Err(why) => (
                false,
                match needed.max(1) {
                    1 => format!("{} probe failed: {why}", self.name),
                    n => format!("{} probe failed {n} times in a row: {why}", self.name),
                },
            ),
        })
    }
}

/// Polls a TCP connect to `addr` until it succeeds (true) or `timeout` passes (false).
async fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// SIGTERM to the replica's process group, SIGKILL after `grace`.
async fn terminate(child: &mut Child, grace: Duration) {
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        return; // already reaped
    };
    let group = Pid::from_raw(pid);
    if killpg(group, Signal::SIGTERM).is_err() {
        let _ = child.start_kill();
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.kill().await;
    }
    // Whatever the app left in its group goes too.
    let _ = killpg(group, Signal::SIGKILL);
}

async fn forward_output(
    stream: impl AsyncRead + Unpin,
    prefix: String,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{prefix}] {line}");
        let mut t = lock(&tail);
        if t.len() == KEPT_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn run(readers: Vec<tokio::task::JoinHandle<()>>, tail: Arc<Mutex<VecDeque<String>>>) -> Run {
        Run {
            id: 1,
            addr: SocketAddr::from(([127, 0, 0, 1], 9)),
            started: Instant::now(),
            startup_timeout: Duration::from_secs(1),
            grace: Duration::from_secs(1),
            probes: Probes::default(),
            tail,
            readers,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_exit_is_described_with_output_still_being_read() {
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        // The process's last line reaches the reader only after its exit
        // was seen.
        let late = {
            let tail = Arc::clone(&tail);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tail.lock()
                    .unwrap()
                    .push_back("cannot load model.bin".to_owned());
            })
        };
        let mut run = run(vec![late], tail);
        let reason = run.describe(Ok(ExitStatus::from_raw(4 << 8))).await;
        assert_eq!(
            reason,
            "process exit status: 4; last output: cannot load model.bin"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn output_held_open_does_not_hold_up_the_exit_for_long() {
        let tail = Arc::new(Mutex::new(VecDeque::from(["last words".to_owned()])));
        let stuck = tokio::spawn(std::future::pending::<()>());
        let mut run = run(vec![stuck], tail);
        let start = tokio::time::Instant::now();
        let reason = run.describe(Ok(ExitStatus::from_raw(1 << 8))).await;
        assert_eq!(reason, "process exit status: 1; last output: last words");
        assert_eq!(start.elapsed(), OUTPUT_DRAIN);
    }
}
