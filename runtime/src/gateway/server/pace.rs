//! The minimum pace of a request body: on average over the time the
//! gateway waited for it, at least a minimum rate, after a grace period
//! (Kestrel's `MinRequestBodyDataRate`). The I/O timeout alone lets a client
//! that sends one byte just inside each timeout hold a replica's slot for
//! the revision's whole `timeoutSeconds`; this does not.
//!
//! Only time spent waiting for the client counts: while the replica is
//! slow to take the body, the gateway does not poll it, and that time is
//! not the client's fault. Nothing is measured for a body that never makes
//! the gateway wait.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The slowest a request body may arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinBodyRate {
    /// Bytes per second, on average over the time spent waiting for them.
    pub bytes_per_second: u32,
    /// Waiting time allowed whatever the rate: a body is not judged before.
    pub grace: Duration,
}

impl MinBodyRate {
    /// How long a body that has delivered `received` bytes may have waited
    /// in total: the grace, or longer as the bytes earn it.
    pub fn allowed_wait(&self, received: u64) -> Duration {
        let earned = if self.bytes_per_second == 0 {
            Duration::MAX
        } else {
            Duration::from_secs_f64(received as f64 / f64::from(self.bytes_per_second))
        };
        self.grace.max(earned)
    }
}

/// Watches one request body for falling below its [`MinBodyRate`].
#[derive(Debug)]
pub(crate) struct Pace {
    min: MinBodyRate,
    received: u64,
    /// Waiting time before the current wait.
    waited: Duration,
    /// When the current wait began.
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Pace {
    /// A watch holding a body to `min`.
    pub(crate) fn new(min: MinBodyRate) -> Self {
        Self {
            min,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: None,
        }
    }

    /// The rate the body is held to.
    pub(crate) fn min(&self) -> MinBodyRate {
        self.min
    }

    /// Notes a piece of `bytes` (0 for trailers or the end), ending a wait.
    pub(crate) fn progress(&mut self, bytes: usize) {
        if let Some(since) = self.waiting_since.take() {
            self.waited += since.elapsed();
        }
        self.received = self.received.saturating_add(bytes as u64);
    }

    /// The body has to wait for the client: `true` once its waiting time
    /// exceeds what its bytes allow. A wait that is not over registers `cx`
    /// with the timer.
    pub(crate) fn too_slow(&mut self, cx: &mut Context<'_>) -> bool {
        if self.waiting_since.is_none() {
            let now = Instant::now();
            self.waiting_since = Some(now);
            let left = self
                .min
                .allowed_wait(self.received)
                .saturating_sub(self.waited);
            let deadline = now
                .checked_add(left)
                .unwrap_or(now + Duration::from_secs(86_400));
            match self.timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::task::Poll;

    const KESTREL: MinBodyRate = MinBodyRate {
        bytes_per_second: 240,
        grace: Duration::from_secs(5),
    };

    #[test]
    fn bytes_earn_waiting_time_beyond_the_grace() {
        assert_eq!(KESTREL.allowed_wait(0), Duration::from_secs(5));
        assert_eq!(KESTREL.allowed_wait(240), Duration::from_secs(5));
        assert_eq!(KESTREL.allowed_wait(2400), Duration::from_secs(10));
        let off = MinBodyRate {
            bytes_per_second: 0,
            grace: Duration::from_secs(5),
        };
        assert_eq!(off.allowed_wait(0), Duration::MAX);
    }

    async fn wait(pace: &mut Pace, secs: u64) -> bool {
        assert!(!poll_fn(|cx| Poll::Ready(pace.too_slow(cx))).await);
        tokio::time::advance(Duration::from_secs(secs)).await;
        poll_fn(|cx| Poll::Ready(pace.too_slow(cx))).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_a_second_is_too_slow_once_the_grace_is_spent() {
        let mut pace = Pace::new(KESTREL);
        for second in 1..=4 {
            assert!(!wait(&mut pace, 1).await, "second {second}");
            pace.progress(1);
        }
        // 4 s waited for 4 bytes; the fifth second spends the grace.
        assert!(!wait(&mut pace, 0).await);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!poll_fn(|cx| Poll::Ready(pace.too_slow(cx))).await);
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(poll_fn(|cx| Poll::Ready(pace.too_slow(cx))).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_above_the_rate_is_never_too_slow_and_time_not_waiting_is_free() {
        let mut pace = Pace::new(KESTREL);
        for _ in 0..30 {
            // 960 bytes after each 2 s wait: twice the minimum.
            assert!(!wait(&mut pace, 2).await);
            pace.progress(960);
            // The replica takes its time; the gateway is not waiting.
            tokio::time::advance(Duration::from_secs(10)).await;
        }
    }
}
