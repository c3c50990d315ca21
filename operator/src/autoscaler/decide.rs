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
//! [`decide_with_backlog`] adds the asynchronous backlog (see
//! [`super::backlog`]): never fewer than `ceil(share / target)` replicas, also
//! from zero and while metrics are missing, and pending work counts as
//! activity, so a revision with a backlog never reaches zero. [`decide`] is
//! the same decision without a backlog.

use std::time::Duration;

use flint_api::ScaleSpec;

use super::backlog::Backlog;
use super::keepalive::{self, AdaptiveConfig, IdleHistogram, LastReplica, LearnedConfig};
pub use super::state::ScaleState;
use super::window::Window;

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

/// What a decision sees besides the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    /// Replicas ready to serve now.
    pub ready: u32,
    /// Set when the gateway poked: requests waiting for a replica.
    pub poke: Option<u32>,
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

/// Decides the desired replica count of one revision. Pure and deterministic.
/// The same as [`decide_with_backlog`] with [`Backlog::NONE`].
pub fn decide(
    spec: &ScaleSpec,
    cfg: &DecideConfig,
    window: &Window,
    obs: Observation,
    now: Duration,
    state: ScaleState,
) -> Decision {
    decide_with_backlog(spec, cfg, window, obs, Backlog::NONE, now, state)
}

/// Decides the desired replica count of one revision whose Function has
/// `backlog` pending asynchronous invocations routed to it: at least
/// `backlog.replicas(target)`, with `target` the per-replica target of the
/// stable and panic demand. Pure and deterministic.
pub fn decide_with_backlog(
    spec: &ScaleSpec,
    cfg: &DecideConfig,
    window: &Window,
    obs: Observation,
    backlog: Backlog,
    now: Duration,
    mut state: ScaleState,
) -> Decision {
    let target = spec.effective_target().max(f64::MIN_POSITIVE);
    let backlog_pods = backlog.replicas(target);
    let max = spec.max.max(spec.min);
    let grace = spec.scale_to_zero_grace_period.as_std();
    if let Some(waiting) = obs.poke {
        let recent = state
            .last_poke
            .is_some_and(|t| now.saturating_sub(t) < spec.panic_window().as_std());
        state.poke_waiting = if recent {
            state.poke_waiting.max(waiting)
        } else {
            waiting
        };
        state.last_poke = Some(now);
    }
    let fresh = window
        .latest()
        .is_some_and(|s| s.at <= now && now - s.at <= cfg.stale_after);
    if !fresh {
        // 1. Blind: hold, but let a poke bring the revision up from zero.
        // Blind time counts as traffic only while something runs (so no
        // replica is removed blind); a revision at zero has nothing to
        // protect, and must not wake up when the data returns.
        // Pending work, read in the same scrape, is observed activity.
        if state.desired > 0 || backlog_pods > 0 {
            state.last_active = Some(now);
            state.last_active_observed = backlog_pods > 0;
        }
        let mut desired = state.desired;
        let mut reason = Reason::NoData;
        if let Some(waiting) = obs.poke {
            let want = wanted_for_waiting(waiting, target).max(1);
            if want > desired {
                desired = want.min(max);
                reason = Reason::Poke;
            }
        }
        if backlog_pods > desired {
            desired = backlog_pods.min(max);
            reason = Reason::Backlog;
        }
        state.desired = desired.clamp(spec.min, max);
        return Decision {
            desired: state.desired,
            reason,
            state,
        };
    }
    observe_activity(spec, cfg, window, &mut state);
    if backlog_pods > 0 {
        // Pending work is activity: the keep-alive clock restarts now.
        state.last_active = state.last_active.max(Some(now));
        state.last_active_observed = true;
    }

    // 2. Stable and panic demand, rate-bounded.
    let ready = f64::from(obs.ready.max(1));
    let stable = window
        .average(spec.metric, now, spec.stable_window.as_std())
        .unwrap_or(0.0);
    let panic_avg = window
        .average(spec.metric, now, spec.panic_window().as_std())
        .unwrap_or(0.0);
    let dspc = (stable / target).ceil();
    let dppc = (panic_avg / target).ceil();
    let max_up = (cfg.max_scale_up_rate * ready).ceil();
    let max_down = (ready / cfg.max_scale_down_rate).floor();
    let stable_pods = to_count(dspc.max(max_down).min(max_up));
    let panic_pods = to_count(dppc.max(max_down).min(max_up));

    // 3. Panic mode.
    let over = dppc / ready >= f64::from(spec.panic_threshold_percent) / 100.0;
    if over {
        if state.panic_since.is_none() {
            state.max_panic = state.desired;
        }
        state.panic_since = Some(now);
    } else if let Some(since) = state.panic_since
        && now >= since + spec.stable_window.as_std()
    {
        state.panic_since = None;
        state.max_panic = 0;
    }
    let mut desired = stable_pods;
    let mut reason = Reason::Stable;
    if state.panic_since.is_some() {
        state.max_panic = state.max_panic.max(stable_pods.max(panic_pods));
        desired = state.max_panic;
        reason = Reason::Panic;
    }
    // 3b. The backlog's share, before the last-replica rules it outranks.
    if backlog_pods > desired {
        desired = backlog_pods;
        reason = Reason::Backlog;
    }

    // 4. The last replica: traffic just seen or a poke keeps (or brings) one;
    // otherwise the keep-alive policy decides between zero and one.
    let last_seen = state.last_active.max(state.last_poke);
    let panic_window = spec.panic_window().as_std();
    let poked_recently = state
        .last_poke
        .is_some_and(|t| now.saturating_sub(t) < panic_window);
    if poked_recently {
        let want = wanted_for_waiting(state.poke_waiting, target).max(1);
        if want > desired {
            desired = want;
            reason = Reason::Poke;
        }
    } else if desired <= 1 && state.panic_since.is_none() {
        let hold = activity_hold(spec, cfg);
        if last_seen.is_some_and(|t| now.saturating_sub(t) < hold) {
            if desired == 0 {
                desired = 1;
                reason = Reason::KeepAlive;
            }
        } else if last_seen.is_none() && state.desired == 0 {
            // Never had traffic and nothing running: nothing to keep alive.
            desired = 0;
            reason = Reason::ScaleToZero;
        } else {
            let idle = state.idle_for(now);
            let want = keepalive::last_replica(spec.keep_alive, grace, state.idle.as_deref(), idle);
            (desired, reason) = match want {
                LastReplica::Keep => (
                    1,
                    if desired == 1 {
                        reason
                    } else {
                        Reason::KeepAlive
                    },
                ),
                LastReplica::PreWarm => (1, Reason::PreWarm),
                LastReplica::Release => (0, Reason::ScaleToZero),
            };
        }
    }

    // 5. Scale-down delay, initial scale, bounds.
    let delay = spec.scale_down_delay.as_std();
    if !delay.is_zero() {
        let from = now.saturating_sub(delay);
        while state.delay.front().is_some_and(|&(t, _)| t <= from) {
            state.delay.pop_front();
        }
        while state.delay.back().is_some_and(|&(_, d)| d <= desired) {
            state.delay.pop_back();
        }
        state.delay.push_back((now, desired));
        if let Some(&(_, held)) = state.delay.front()
            && held > desired
        {
            desired = held;
            reason = Reason::ScaleDownDelay;
        }
    }
    if now < state.started + spec.stable_window.as_std() && desired < spec.initial {
        desired = spec.initial;
        reason = Reason::Initial;
    }
    let bounded = desired.clamp(spec.min, max);
    if bounded != desired {
        desired = bounded;
        reason = Reason::Bounds;
    }
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
    let panic_window = spec.panic_window().as_std();
    if spec.keep_alive == flint_api::KeepAlive::Fixed {
        panic_window
    } else {
        panic_window.max(cfg.adaptive.min_idle)
    }
}

/// Replicas needed for `waiting` queued requests (or pending deliveries)
/// at `target` each.
pub(super) fn wanted_for_waiting(waiting: u32, target: f64) -> u32 {
    to_count((f64::from(waiting) / target).ceil())
}

fn to_count(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x as u32
    }
}

/// Walks the samples not seen yet: updates the last active time and records
/// idle times (and the requests between them) into the histogram of an
/// adaptive or learned revision.
fn observe_activity(spec: &ScaleSpec, cfg: &DecideConfig, window: &Window, state: &mut ScaleState) {
    let policy = spec.keep_alive;
    let grace = spec.scale_to_zero_grace_period.as_std();
    let seen = state.seen_until;
    let unseen = window.iter().rev().take_while(|s| s.at > seen).count();
    for s in window.iter().skip(window.len() - unseen) {
        if !s.is_active() {
            continue;
        }
        if let Some(last) = state.last_active {
            let gap = s.at.saturating_sub(last);
            if state.last_active_observed && gap >= cfg.adaptive.min_idle {
                match policy {
                    flint_api::KeepAlive::Fixed => {}
                    flint_api::KeepAlive::Adaptive => {
                        state.idle.get_or_insert_with(Box::default).record(
                            gap,
                            grace,
                            &cfg.adaptive,
                        );
                    }
                    flint_api::KeepAlive::Learned => {
                        let requests = std::mem::take(&mut state.requests_since_idle);
                        state
                            .idle
                            .get_or_insert_with(|| {
                                Box::new(IdleHistogram::learned(grace, &cfg.learned))
                            })
                            .record_learned(gap, requests, grace, &cfg.learned);
                    }
                }
            }
        }
        if policy == flint_api::KeepAlive::Learned {
            // Windows from the prior alone until the first idle time.
            state
                .idle
                .get_or_insert_with(|| Box::new(IdleHistogram::learned(grace, &cfg.learned)));
            state.requests_since_idle = state
                .requests_since_idle
                .saturating_add(s.rps.round().clamp(0.0, f64::from(u32::MAX)) as u32);
        }
        state.last_active = Some(s.at);
        state.last_active_observed = true;
    }
    if let Some(latest) = window.latest() {
        state.seen_until = state.seen_until.max(latest.at);
    }
}
