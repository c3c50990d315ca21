//! Whether a local replica is ready and alive: its startup and readiness
//! probes checked quickly while it starts (every millisecond of a cold
//! start counts), then its readiness and liveness probes every period
//! while it serves, against the manifest's thresholds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Run;
use crate::local::probe::LocalProbe;

/// How often the readiness probe retries while a replica starts: a refused
/// loopback connect costs microseconds, and every millisecond here is added
/// to the cold start.
const PROBE_INTERVAL: Duration = Duration::from_millis(1);
/// How often a starting replica's own probe is retried once the app
/// answers: often enough for a fast cold start, rarely enough not to flood
/// an app that is still loading.
const STARTING_PROBE_INTERVAL: Duration = Duration::from_millis(20);

impl Run {
    /// Waits for the startup probe (if any), then for the readiness probe
    /// (by default: a TCP connect) to pass, checking quickly rather than
    /// every period so a cold start is not slower for it. The error says
    /// why the replica never became ready.
    pub(super) async fn start(&self) -> Result<(), String> {
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
}

/// A probe run every period once the replica is ready, counting
/// consecutive results against its thresholds.
pub(super) struct Watch {
    name: &'static str,
    probe: Option<LocalProbe>,
    next_at: tokio::time::Instant,
    passing: bool,
    streak: u32,
}

impl Watch {
    /// The probe `name` (for messages), its first check due after its
    /// initial delay from `started` and at least a period from now.
    pub(super) fn new(name: &'static str, probe: Option<LocalProbe>, started: Instant) -> Self {
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
    pub(super) async fn next(&mut self, addr: SocketAddr) -> Option<(bool, String)> {
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
