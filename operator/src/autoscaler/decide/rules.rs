//! The rules of [`super::decide`], one function each, in the order the
//! decision applies them. Each takes the `(desired, reason)` so far and
//! returns the next; only the state it names is changed.

use std::time::Duration;

use flint_api::ScaleSpec;

use super::super::keepalive::{self, IdleHistogram, LastReplica};
use super::super::window::Window;
use super::{
    DecideConfig, Observation, Reason, ScaleState, activity_hold, to_count, wanted_for_waiting,
};

/// A decision so far: the replicas wanted and the rule that set them.
pub(super) type Step = (u32, Reason);

/// What the rules share, derived once from the spec and the observation.
pub(super) struct Inputs {
    /// The per-replica target of stable and panic demand (never zero).
    target: f64,
    /// Replicas the backlog's share needs.
    backlog_pods: u32,
    /// The upper bound (`max`, at least `min`).
    max: u32,
}

impl Inputs {
    /// The inputs of one decision.
    pub(super) fn new(spec: &ScaleSpec, obs: Observation) -> Self {
        let target = spec.effective_target().max(f64::MIN_POSITIVE);
        Self {
            target,
            backlog_pods: obs.backlog.replicas(target),
            max: spec.max.max(spec.min),
        }
    }
}

/// Demand over the stable and panic windows, rate-bounded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Demand {
    /// Replicas the stable-window average needs.
    stable: u32,
    /// Replicas the panic-window average needs.
    panic: u32,
    /// Whether panic-window demand crosses the panic threshold.
    over_threshold: bool,
}

/// Records a poke: the requests waiting, the most of the pokes within one
/// panic window.
pub(super) fn note_poke(
    spec: &ScaleSpec,
    poke: Option<u32>,
    now: Duration,
    state: &mut ScaleState,
) {
    let Some(waiting) = poke else {
        return;
    };
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

/// Rule 1, metrics stale or missing: hold, but let a poke bring the
/// revision up from zero and the backlog raise it. Blind time counts as
/// traffic only while something runs (so no replica is removed blind); a
/// revision at zero has nothing to protect, and must not wake up when the
/// data returns. Pending work, read in the same scrape, is observed
/// activity.
pub(super) fn hold_when_blind(
    spec: &ScaleSpec,
    inputs: &Inputs,
    poke: Option<u32>,
    now: Duration,
    state: &mut ScaleState,
) -> Step {
    if state.desired > 0 || inputs.backlog_pods > 0 {
        state.last_active = Some(now);
        state.last_active_observed = inputs.backlog_pods > 0;
    }
    let mut step = (state.desired, Reason::NoData);
    if let Some(waiting) = poke {
        let want = wanted_for_waiting(waiting, inputs.target).max(1);
        if want > step.0 {
            step = (want.min(inputs.max), Reason::Poke);
        }
    }
    if inputs.backlog_pods > step.0 {
        step = (inputs.backlog_pods.min(inputs.max), Reason::Backlog);
    }
    (step.0.clamp(spec.min, inputs.max), step.1)
}

/// Pending work is activity: the keep-alive clock restarts now.
pub(super) fn note_backlog_activity(inputs: &Inputs, now: Duration, state: &mut ScaleState) {
    if inputs.backlog_pods > 0 {
        state.last_active = state.last_active.max(Some(now));
        state.last_active_observed = true;
    }
}

/// Rule 2: stable and panic demand → `ceil(avg / target)`, each bounded by
/// the max scale-up rate (× ready) and scale-down rate (÷ ready).
pub(super) fn demand(
    spec: &ScaleSpec,
    cfg: &DecideConfig,
    window: &Window,
    inputs: &Inputs,
    ready: u32,
    now: Duration,
) -> Demand {
    let ready = f64::from(ready.max(1));
    let stable = window
        .average(spec.metric, now, spec.stable_window.as_std())
        .unwrap_or(0.0);
    let panic_avg = window
        .average(spec.metric, now, spec.panic_window().as_std())
        .unwrap_or(0.0);
    let dspc = (stable / inputs.target).ceil();
    let dppc = (panic_avg / inputs.target).ceil();
    let max_up = (cfg.max_scale_up_rate * ready).ceil();
    let max_down = (ready / cfg.max_scale_down_rate).floor();
    Demand {
        stable: to_count(dspc.max(max_down).min(max_up)),
        panic: to_count(dppc.max(max_down).min(max_up)),
        over_threshold: dppc / ready >= f64::from(spec.panic_threshold_percent) / 100.0,
    }
}

/// Rule 3: panic when panic-window demand crosses the threshold; in panic,
/// never below the most wanted since it began; leave after a stable window
/// without crossing it. Otherwise the stable demand.
pub(super) fn panic(
    spec: &ScaleSpec,
    demand: Demand,
    now: Duration,
    state: &mut ScaleState,
) -> Step {
    if demand.over_threshold {
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
    if state.panic_since.is_some() {
        state.max_panic = state.max_panic.max(demand.stable.max(demand.panic));
        return (state.max_panic, Reason::Panic);
    }
    (demand.stable, Reason::Stable)
}

/// The backlog's share, before the last-replica rules it outranks.
pub(super) fn backlog_floor(inputs: &Inputs, step: Step) -> Step {
    if inputs.backlog_pods > step.0 {
        (inputs.backlog_pods, Reason::Backlog)
    } else {
        step
    }
}

/// Rule 4, the last replica: traffic just seen or a recent poke keeps (or
/// brings) one; otherwise the keep-alive policy decides between zero and
/// one. Above one replica or in panic, nothing changes.
pub(super) fn last_replica(
    spec: &ScaleSpec,
    cfg: &DecideConfig,
    inputs: &Inputs,
    step: Step,
    now: Duration,
    state: &ScaleState,
) -> Step {
    let (desired, reason) = step;
    let last_seen = state.last_active.max(state.last_poke);
    let poked_recently = state
        .last_poke
        .is_some_and(|t| now.saturating_sub(t) < spec.panic_window().as_std());
    if poked_recently {
        let want = wanted_for_waiting(state.poke_waiting, inputs.target).max(1);
        return if want > desired {
            (want, Reason::Poke)
        } else {
            step
        };
    }
    if desired > 1 || state.panic_since.is_some() {
        return step;
    }
    if last_seen.is_some_and(|t| now.saturating_sub(t) < activity_hold(spec, cfg)) {
        return if desired == 0 {
            (1, Reason::KeepAlive)
        } else {
            step
        };
    }
    if last_seen.is_none() && state.desired == 0 {
        // Never had traffic and nothing running: nothing to keep alive.
        return (0, Reason::ScaleToZero);
    }
    let grace = spec.scale_to_zero_grace_period.as_std();
    let idle = state.idle_for(now);
    match keepalive::last_replica(spec.keep_alive, grace, state.idle.as_deref(), idle) {
        LastReplica::Keep if desired == 1 => (1, reason),
        LastReplica::Keep => (1, Reason::KeepAlive),
        LastReplica::PreWarm => (1, Reason::PreWarm),
        LastReplica::Release => (0, Reason::ScaleToZero),
    }
}

/// Rule 5a, `scaleDownDelay`: the most wanted over that trailing window.
pub(super) fn scale_down_delay(
    spec: &ScaleSpec,
    step: Step,
    now: Duration,
    state: &mut ScaleState,
) -> Step {
    let delay = spec.scale_down_delay.as_std();
    if delay.is_zero() {
        return step;
    }
    let desired = step.0;
    let from = now.saturating_sub(delay);
    while state.delay.front().is_some_and(|&(t, _)| t <= from) {
        state.delay.pop_front();
    }
    while state.delay.back().is_some_and(|&(_, d)| d <= desired) {
        state.delay.pop_back();
    }
    state.delay.push_back((now, desired));
    match state.delay.front() {
        Some(&(_, held)) if held > desired => (held, Reason::ScaleDownDelay),
        _ => step,
    }
}

/// Rule 5b: `initial` through the revision's first stable window, then
/// `min` and `max`.
pub(super) fn initial_and_bounds(
    spec: &ScaleSpec,
    inputs: &Inputs,
    step: Step,
    now: Duration,
    state: &ScaleState,
) -> Step {
    let mut step = step;
    if now < state.started + spec.stable_window.as_std() && step.0 < spec.initial {
        step = (spec.initial, Reason::Initial);
    }
    let bounded = step.0.clamp(spec.min, inputs.max);
    if bounded != step.0 {
        step = (bounded, Reason::Bounds);
    }
    step
}

/// Walks the samples not seen yet: updates the last active time and records
/// idle times (and the requests between them) into the histogram of an
/// adaptive or learned revision.
pub(super) fn observe_activity(
    spec: &ScaleSpec,
    cfg: &DecideConfig,
    window: &Window,
    state: &mut ScaleState,
) {
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
            if state.last_active_observed && gap >= cfg.min_idle(policy) {
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
