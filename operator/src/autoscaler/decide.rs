//! `decide()`: the pure scaling decision with Knative KPA semantics.
//!
//! Given a revision's [`ScaleSpec`], its sample [`Window`], the current time
//! and the state left by the previous decision, it returns the desired
//! replica count, the new state and the reason. No clock, no I/O, no
//! randomness: the same inputs always give the same decision, which is what
//! makes it table-testable and replayable by `flint sim`.
//!
//! The rules, in order:
//! 1. Stale or missing metrics: hold the current scale (a poke may still
//!    bring a revision up from zero). Never scale down blind.
//! 2. Stable and panic averages → `ceil(avg / (target × utilization))`, each
//!    bounded by the max scale-up rate (× ready) and scale-down rate (÷).
//! 3. Panic when panic-window demand ≥ threshold × ready; in panic, never
//!    scale down; leave panic after a stable window without crossing it.
//! 4. The last replica belongs to the keep-alive policy: zero only after the
//!    grace period without traffic (`fixed`), or per the learned idle-time
//!    windows (`adaptive`), never while traffic was seen in the panic window.
//! 5. `scaleDownDelay`: the maximum over that trailing window; then `initial`
//!    for the first stable window, then min/max.
//!
//! The asynchronous backlog is one of the observed inputs ([`Backlog`], how
//! [`super::backlog`] routes a Function's pending work to this revision):
//! never fewer than `ceil(share / target)` replicas, also from zero and
//! while metrics are missing, and pending work counts as activity, so a
//! revision with a backlog never reaches zero.
//!
//! Each rule is a small function of its own in [`rules`], taking the
//! `(desired, reason)` so far and returning the next.

use std::time::Duration;

use flint_api::ScaleSpec;

use super::keepalive::{AdaptiveConfig, LearnedConfig};
pub use super::state::ScaleState;
use super::window::Window;

mod rules;

/// Global autoscaler tunables (not per Function).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecideConfig {
    /// Most a decision may multiply the ready replicas by (Knative: 1000).
    pub max_scale_up_rate: f64,
    /// Most a decision may divide the ready replicas by (Knative: 2).
    pub max_scale_down_rate: f64,
    /// Samples older than this count as missing: the decision holds.
    pub stale_after: Duration,
    /// Adaptive keep-alive tunables.
    pub adaptive: AdaptiveConfig,
    /// Learned keep-alive tunables.
    pub learned: LearnedConfig,
}

impl Default for DecideConfig {
    fn default() -> Self {
        Self {
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            stale_after: Duration::from_secs(5),
            adaptive: AdaptiveConfig::default(),
            learned: LearnedConfig::default(),
        }
    }
}

impl DecideConfig {
    /// Gaps between requests shorter than this are not idle times under
    /// `policy`: the replica is kept through them and they are not learned.
    pub fn min_idle(&self, policy: flint_api::KeepAlive) -> Duration {
        match policy {
            flint_api::KeepAlive::Fixed => Duration::ZERO,
            flint_api::KeepAlive::Adaptive => self.adaptive.min_idle,
            flint_api::KeepAlive::Learned => self.learned.min_idle,
        }
    }
}

/// What a decision sees besides the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    /// Replicas ready to serve now.
    pub ready: u32,
    /// Set when the gateway poked: requests waiting for a replica.
    pub poke: Option<u32>,
    /// This revision's share of its Function's pending asynchronous
    /// invocations ([`Backlog::NONE`] when there are none).
    pub backlog: Backlog,
}

/// One revision's view of its Function's asynchronous backlog: how many
/// deliveries it is expected to run, which the decision turns into replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Invocations pending for the Function (accepted, not settled).
    pub pending: u64,
    /// The Function's `async.maxInFlight`: most deliveries running at once.
    pub max_in_flight: u32,
    /// Percent of the Function's traffic this revision receives (0 to 100).
    pub percent: u32,
}

impl Backlog {
    /// No backlog: the decision is the one without this signal.
    pub const NONE: Backlog = Backlog {
        pending: 0,
        max_in_flight: 0,
        percent: 0,
    };

    /// Deliveries this revision is expected to run at once:
    /// `ceil(min(pending, maxInFlight) × percent / 100)`; 0 without pending
    /// work or without a traffic share.
    pub fn in_flight(&self) -> u64 {
        let running = self.pending.min(u64::from(self.max_in_flight));
        let percent = u64::from(self.percent.min(100));
        (running * percent).div_ceil(100)
    }

    /// Replicas this share needs at `target` per replica: `ceil(in_flight / target)`.
    pub fn replicas(&self, target: f64) -> u32 {
        // `in_flight` is bounded by `maxInFlight`, a u32.
        let work = u32::try_from(self.in_flight()).unwrap_or(u32::MAX);
        wanted_for_waiting(work, target.max(f64::MIN_POSITIVE))
    }
}

/// Why the desired count is what it is (the last rule that set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// From the stable-window average.
    Stable,
    /// Panic mode: from the panic-window average, never lower than before.
    Panic,
    /// Metrics missing or stale: holding the current scale.
    NoData,
    /// A poke: requests are waiting for a revision at zero.
    Poke,
    /// Held at `initial` during the revision's first stable window.
    Initial,
    /// The keep-alive policy keeps the last replica.
    KeepAlive,
    /// The adaptive policy brings the last replica back ahead of traffic.
    PreWarm,
    /// No traffic for long enough: scaled to zero.
    ScaleToZero,
    /// A scale-down held back by `scaleDownDelay`.
    ScaleDownDelay,
    /// Raised to what the Function's pending asynchronous invocations need.
    Backlog,
    /// Raised to `min` or lowered to `max`.
    Bounds,
}

impl Reason {
    /// The metric label of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Stable => "stable",
            Reason::Panic => "panic",
            Reason::NoData => "no_data",
            Reason::Poke => "poke",
            Reason::Initial => "initial",
            Reason::KeepAlive => "keep_alive",
            Reason::PreWarm => "prewarm",
            Reason::ScaleToZero => "scale_to_zero",
            Reason::ScaleDownDelay => "scale_down_delay",
            Reason::Backlog => "backlog",
            Reason::Bounds => "bounds",
        }
    }
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Replicas wanted.
    pub desired: u32,
    /// Why.
    pub reason: Reason,
    /// State for the next decision.
    pub state: ScaleState,
}

/// Decides the desired replica count of one revision. Pure and
/// deterministic: the rules of the module documentation, in order.
pub fn decide(
    spec: &ScaleSpec,
    cfg: &DecideConfig,
    window: &Window,
    obs: Observation,
    now: Duration,
    mut state: ScaleState,
) -> Decision {
    let inputs = rules::Inputs::new(spec, obs);
    rules::note_poke(spec, obs.poke, now, &mut state);
    let fresh = window
        .latest()
        .is_some_and(|s| s.at <= now && now - s.at <= cfg.stale_after);
    if !fresh {
        let (desired, reason) = rules::hold_when_blind(spec, &inputs, obs.poke, now, &mut state);
        state.desired = desired;
        return Decision {
            desired,
            reason,
            state,
        };
    }
    rules::observe_activity(spec, cfg, window, &mut state);
    rules::note_backlog_activity(&inputs, now, &mut state);
    let demand = rules::demand(spec, cfg, window, &inputs, obs.ready, now);
    let step = rules::panic(spec, demand, now, &mut state);
    let step = rules::backlog_floor(&inputs, step);
    let step = rules::last_replica(spec, cfg, &inputs, step, now, &state);
    let step = rules::scale_down_delay(spec, step, now, &mut state);
    let (desired, reason) = rules::initial_and_bounds(spec, &inputs, step, now, &state);
    state.desired = desired;
    Decision {
        desired,
        reason,
        state,
    }
}

/// How long after its last activity a revision counts as serving: its last
/// replica is kept this long whatever the keep-alive policy (the panic
/// window; for a learning policy at least the shortest idle time it records).
pub fn activity_hold(spec: &ScaleSpec, cfg: &DecideConfig) -> Duration {
    spec.panic_window()
        .as_std()
        .max(cfg.min_idle(spec.keep_alive))
}

/// Replicas needed for `waiting` queued requests (or pending deliveries)
/// at `target` each.
fn wanted_for_waiting(waiting: u32, target: f64) -> u32 {
    to_count((f64::from(waiting) / target).ceil())
}

/// A replica count from a non-negative float (NaN and negatives are 0,
/// saturating at `u32::MAX`).
fn to_count(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x as u32
    }
}
