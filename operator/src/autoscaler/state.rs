//! The state a revision's scaling decisions carry from one to the next:
//! the last desired count, panic mode, activity times for the keep-alive
//! policy, the last poke and the scale-down-delay maxima.

use std::collections::VecDeque;
use std::time::Duration;

use flint_api::{KeepAlive, ScaleSpec};

use super::decide::{DecideConfig, activity_hold};
use super::keepalive::IdleHistogram;
use super::snapshot::Snapshot;

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

    /// Takes over a revision that was being scaled before this autoscaler
    /// started on it (a new leader, a restart): `age` since its replicas were
    /// first asked for, `desired` the count its backend holds. The count is
    /// kept, no `initial` hold applies, and a revision with replicas counts
    /// as active now: idleness that was not observed is not assumed.
    pub fn adopt(&mut self, now: Duration, age: Duration, desired: u32) {
        self.desired = desired;
        self.started = now.saturating_sub(age);
        if desired > 0 {
            self.last_active = Some(now);
            self.last_active_observed = false;
        }
    }

    /// Takes up what a previous leader persisted (`snapshot`, read at
    /// `wall_now`, Unix seconds): the histogram, the requests since the last
    /// idle time, and when the last activity ended.
    pub fn restore(
        &mut self,
        snapshot: &Snapshot,
        spec: &ScaleSpec,
        cfg: &DecideConfig,
        now: Duration,
        wall_now: u64,
    ) {
        if let Some(parts) = snapshot.histogram
            && spec.keep_alive != KeepAlive::Fixed
        {
            self.idle = Some(Box::new(IdleHistogram::from_parts(
                parts,
                spec.keep_alive,
                spec.scale_to_zero_grace_period.as_std(),
                &cfg.adaptive,
                &cfg.learned,
            )));
        }
        self.requests_since_idle = snapshot.requests_since_idle;
        if let Some(at) = snapshot.last_active_unix {
            let ago = Duration::from_secs(wall_now.saturating_sub(at));
            self.last_active = Some(now.saturating_sub(ago));
            self.last_active_observed = snapshot.last_active_observed;
        }
    }

    /// What to persist at `now` (`wall_now`, Unix seconds). While the
    /// revision serves, only the histogram: the last activity and the
    /// request count move every second, and a new leader counts a serving
    /// revision active anyway. Once idle, everything, which then holds still
    /// until the next request.
    pub fn snapshot(
        &self,
        spec: &ScaleSpec,
        cfg: &DecideConfig,
        now: Duration,
        wall_now: u64,
    ) -> Snapshot {
        let histogram = self.idle.as_deref().map(IdleHistogram::parts);
        match self.last_active {
            Some(last) if self.idle_for(now) >= activity_hold(spec, cfg) => Snapshot {
                last_active_unix: Some(wall_now.saturating_sub(now.saturating_sub(last).as_secs())),
                last_active_observed: self.last_active_observed,
                requests_since_idle: self.requests_since_idle,
                histogram,
            },
            _ => Snapshot {
                histogram,
                ..Snapshot::default()
            },
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
