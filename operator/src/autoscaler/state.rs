//! The state a revision's scaling decisions carry from one to the next:
//! the last desired count, panic mode, activity times for the keep-alive
//! policy, the last poke and the scale-down-delay maxima.

use std::collections::VecDeque;
use std::time::Duration;

use flint_api::ScaleSpec;

use super::keepalive::IdleHistogram;

/// The state a revision's decisions carry from one to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleState {
    /// The last desired count.
    pub desired: u32,
    /// When the revision started being scaled.
    pub started: Duration,
    /// Set while in panic mode: the last time demand crossed the threshold.
    pub panic_since: Option<Duration>,
    /// Highest count wanted during the current panic.
    pub max_panic: u32,
    /// Newest sample time already looked at.
    pub seen_until: Duration,
    /// End of the last interval with traffic or pending asynchronous work
    /// (or of a metrics outage, which counts as traffic: idleness that was
    /// not observed is not assumed).
    pub last_active: Option<Duration>,
    /// Whether `last_active` was observed (so the next gap is a true idle time).
    pub last_active_observed: bool,
    /// The last poke.
    pub last_poke: Option<Duration>,
    /// Requests waiting at the last poke: their replicas are kept for a
    /// panic window, until the requests show in the metrics.
    pub poke_waiting: u32,
    /// Trailing (time, desired) maxima for `scaleDownDelay`.
    pub(super) delay: VecDeque<(Duration, u32)>,
    /// Idle-time histogram (adaptive and learned keep-alive only).
    pub idle: Option<Box<IdleHistogram>>,
    /// Requests seen since the last idle time (learned keep-alive only).
    pub requests_since_idle: u32,
}

impl ScaleState {
    /// The state of a revision that starts being scaled at `now` with
    /// `initial` replicas.
    pub fn new(spec: &ScaleSpec, now: Duration) -> Self {
        Self {
            desired: spec.initial.clamp(spec.min, spec.max.max(spec.min)),
            started: now,
            panic_since: None,
            max_panic: 0,
            seen_until: now,
            last_active: None,
            last_active_observed: false,
            last_poke: None,
            poke_waiting: 0,
            delay: VecDeque::new(),
            idle: None,
            requests_since_idle: 0,
        }
    }

    /// Whether the revision is in panic mode.
    pub fn panicking(&self) -> bool {
        self.panic_since.is_some()
    }

    /// Time since the last traffic or poke (since the start if none).
    pub fn idle_for(&self, now: Duration) -> Duration {
        let last = self.last_active.max(self.last_poke).unwrap_or(self.started);
        now.saturating_sub(last)
    }
}
