//! A timer for I/O that must keep making progress: armed when an operation
//! has to wait, disarmed when it makes progress, and due when it waited
//! longer than its limit. The timer is made on the first wait and then
//! reused, so traffic that never waits costs nothing (not even a clock
//! read).

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Watches one direction of I/O for a wait longer than `limit`.
#[derive(Debug)]
pub(crate) struct Stall {
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Stall {
    /// A watch that lets an operation wait at most `limit` for progress.
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            limit,
            timer: None,
            armed: false,
        }
    }

    /// The limit.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// Passes on the outcome of one poll of the watched operation, noting
    /// progress when it is ready; when it must wait, returns `true` once it
    /// has waited past the limit since its last progress (the caller then
    /// fails it). A pending outcome registers `cx` with the timer.
    pub(crate) fn waited_too_long(&mut self, ready: bool, cx: &mut Context<'_>) -> bool {
        if ready {
            self.armed = false;
            return false;
        }
        if !self.armed {
            let deadline = Instant::now() + self.limit;
            match self.timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        let due = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if due {
            self.armed = false;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::task::Poll;

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_limit_is_reported_and_progress_resets_it() {
        let mut stall = Stall::new(Duration::from_secs(2));
        // Pending for 1.5 s, progress, then pending again: the clock
        // restarts at the progress.
        let pending = poll_fn(|cx| Poll::Ready(stall.waited_too_long(false, cx))).await;
        assert!(!pending);
        tokio::time::advance(Duration::from_millis(1500)).await;
        poll_fn(|cx| Poll::Ready(stall.waited_too_long(true, cx))).await;
        assert!(!poll_fn(|cx| Poll::Ready(stall.waited_too_long(false, cx))).await);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(!poll_fn(|cx| Poll::Ready(stall.waited_too_long(false, cx))).await);
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(poll_fn(|cx| Poll::Ready(stall.waited_too_long(false, cx))).await);
    }
}
