//! A local replica's process: its output forwarded to Flint's stderr and
//! its last lines kept to explain an exit, and stopping it (its whole
//! process group) with SIGTERM, then SIGKILL after the grace period.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flint_api::sync::lock;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

use super::Run;

/// Lines of output kept to explain a crash.
pub(super) const KEPT_LINES: usize = 8;
/// How long an exit waits for the rest of the process's output, so its
/// reason includes the last line written just before it (e.g. the error
/// an app prints as it gives up). Bounded: a leftover child of the app may
/// hold the pipes open.
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);

impl Run {
    /// Why the process ended: its exit status and its last output line,
    /// once the output it wrote before exiting has been read.
    pub(super) async fn describe(&mut self, status: std::io::Result<ExitStatus>) -> String {
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

/// SIGTERM to the replica's process group, SIGKILL after `grace`.
pub(super) async fn terminate(child: &mut Child, grace: Duration) {
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

/// Forwards `stream` (the process's stdout or stderr) line by line to
/// Flint's stderr under `prefix`, keeping the last [`KEPT_LINES`] in `tail`.
pub(super) async fn forward_output(
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
    use std::net::SocketAddr;
    use std::os::unix::process::ExitStatusExt;
    use std::time::Instant;

    use super::*;
    use crate::local::probe::Probes;

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
