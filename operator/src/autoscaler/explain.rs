//! Why a revision's last replica is kept, pre-warmed or released, in words
//! a person can check against the clock ("periodic: released; next call
//! expected around 14:05 UTC"). Pure: the view is computed from the spec,
//! the decision state and the time; rendering maps the autoscaler's clock
//! to the wall clock given.
//!
//! Messages only change when something a person would care about changes
//! (the revision goes idle, the policy moves between keep, release and
//! pre-warm, or it learns new windows): they are written to the Function's
//! status, so a message that ticked with the clock would write every second.

use std::time::{Duration, SystemTime};

use flint_api::{KeepAlive, ScaleSpec};

use super::decide::{DecideConfig, activity_hold};
use super::keepalive::{self, IdleHistogram, LastReplica, Windows};
use super::state::ScaleState;

/// What the policy is doing with the last replica, times on the
/// autoscaler's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Requests seen recently (or more than one replica wanted).
    Serving,
    /// Held up by `scale.min`.
    Minimum(u32),
    /// No request since the autoscaler started on the revision.
    NeverCalled,
    /// Keeping the last replica until the given time.
    Keeping {
        /// When it is let go (unless a request comes).
        until: Duration,
    },
    /// Let go; with a learned pre-warm ahead: from when, and until when the
    /// next call is expected.
    Released {
        /// When the replica was (or is) let go.
        since: Duration,
        /// The pre-warm ahead, if any: (start, end).
        prewarm: Option<(Duration, Duration)>,
    },
    /// Brought back ahead of the expected next call, kept until the time.
    PreWarmed {
        /// When it is let go again if no call comes.
        until: Duration,
    },
}

/// What has been learned, for the message's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// `keepAlive: fixed`: the grace period.
    Fixed(Duration),
    /// Learned windows from this many idle times (0: the prior alone);
    /// `periodic` when they release and pre-warm.
    Learned {
        /// Idle times recorded.
        observations: u32,
        /// Whether the windows release and then pre-warm.
        periodic: bool,
    },
    /// `adaptive` without a representative histogram: the grace period,
    /// with this many idle times recorded.
    Fallback(Duration, u32),
}

/// The view and its basis for one revision at `now`. Pure.
pub fn view(
    spec: &ScaleSpec,
    cfg: &DecideConfig,
    state: &ScaleState,
    now: Duration,
) -> (View, Basis) {
    let grace = spec.scale_to_zero_grace_period.as_std();
    let histogram = state.idle.as_deref();
    let windows = match spec.keep_alive {
        KeepAlive::Fixed => None,
        KeepAlive::Adaptive | KeepAlive::Learned => histogram.and_then(IdleHistogram::windows),
    };
    let observations = histogram.map_or(0, IdleHistogram::observations);
    let basis = match (spec.keep_alive, windows) {
        (KeepAlive::Fixed, _) => Basis::Fixed(grace),
        (_, Some(w)) => Basis::Learned {
            observations,
            periodic: w.prewarm > w.keep_first,
        },
        (KeepAlive::Learned, None) => Basis::Learned {
            observations,
            periodic: false,
        },
        (KeepAlive::Adaptive, None) => Basis::Fallback(grace, observations),
    };
    let hold = activity_hold(spec, cfg);
    let last = state.last_active.max(state.last_poke);
    let idle = state.idle_for(now);
    let view = if state.desired > 1 || (last.is_some() && idle < hold) {
        View::Serving
    } else if spec.min > 0 {
        View::Minimum(spec.min)
    } else if let Some(last) = last {
        let at = |d: Duration| last + d;
        match keepalive::last_replica(spec.keep_alive, grace, histogram, idle) {
            LastReplica::Keep => View::Keeping {
                until: at(keep_end(windows, grace, idle)),
            },
            LastReplica::PreWarm => View::PreWarmed {
                until: at(windows.map_or(grace, |w| w.keep_until)),
            },
            LastReplica::Release => View::Released {
                since: at(release_start(windows, grace, idle)),
                prewarm: keepalive::next_prewarm(spec.keep_alive, histogram, idle)
                    .zip(windows)
                    .map(|(p, w)| (at(p), at(w.keep_until))),
            },
        }
    } else {
        View::NeverCalled
    };
    (view, basis)
}

/// How long after the last request a kept replica is let go.
fn keep_end(windows: Option<Windows>, grace: Duration, idle: Duration) -> Duration {
    match windows {
        None => grace,
        Some(w) if idle < w.keep_first => w.keep_first,
        Some(w) => w.keep_until,
    }
}

/// How long after the last request the current release began.
fn release_start(windows: Option<Windows>, grace: Duration, idle: Duration) -> Duration {
    match windows {
        None => grace,
        Some(w) if idle >= w.keep_until && w.prewarm <= w.keep_until && idle >= w.prewarm => {
            w.keep_until
        }
        Some(w) => w.keep_first,
    }
}

/// The message for `view` on `basis`; `wall` maps the autoscaler's clock
/// to the wall clock.
pub fn render(view: View, basis: Basis, wall: impl Fn(Duration) -> SystemTime) -> String {
    let hour_minute = |d: Duration| {
        let t: chrono::DateTime<chrono::Utc> = wall(d).into();
        t.format("%H:%M").to_string()
    };
    let clock = |d: Duration| format!("{} UTC", hour_minute(d));
    let prefix = match basis {
        Basis::Fixed(grace) => format!("fixed {}", minutes(grace)),
        Basis::Learned {
            observations: 0, ..
        } => "learned (no idle time yet, population prior)".to_owned(),
        Basis::Learned {
            observations,
            periodic,
        } => format!(
            "learned from {observations} idle time{}{}",
            if observations == 1 { "" } else { "s" },
            if periodic { ", periodic" } else { "" }
        ),
        Basis::Fallback(grace, n) => {
            format!(
                "adaptive, not yet representative ({n} idle times): fixed {}",
                minutes(grace)
            )
        }
    };
    match view {
        View::Serving => "serving requests".to_owned(),
        View::Minimum(n) => format!("held at scale.min = {n}"),
        View::NeverCalled => format!("{prefix}: no request yet"),
        View::Keeping { until } => {
            format!("{prefix}: keeping the last replica until {}", clock(until))
        }
        View::PreWarmed { until } => format!(
            "{prefix}: pre-warmed for the next call, expected by {}",
            clock(until)
        ),
        View::Released {
            since,
            prewarm: Some((from, until)),
        } => format!(
            "{prefix}: released at {}; next call expected {}-{}, pre-warming from {}",
            clock(since),
            hour_minute(from),
            clock(until),
            clock(from)
        ),
        View::Released {
            since,
            prewarm: None,
        } => format!(
            "{prefix}: released at {}; the next request starts a replica",
            clock(since)
        ),
    }
}

/// `30s`, `10m`, `1h30m`: the way a Function's durations are written.
fn minutes(d: Duration) -> String {
    let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    flint_api::Duration::from_millis(millis).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::keepalive::LearnedConfig;

    const MIN: Duration = Duration::from_secs(60);
    /// 2026-12-05 14:00:00 UTC on the autoscaler's clock at `MIN * 1000`.
    fn wall(d: Duration) -> SystemTime {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_479_200);
        if d >= MIN * 1000 {
            base + (d - MIN * 1000)
        } else {
            base - (MIN * 1000 - d)
        }
    }

    fn spec(policy: KeepAlive) -> ScaleSpec {
        let mut s: ScaleSpec = serde_json::from_str("{}").unwrap();
        s.keep_alive = policy;
        s
    }

    fn idle_since(spec: &ScaleSpec, last: Duration) -> ScaleState {
        let mut st = ScaleState::new(spec, Duration::ZERO);
        st.desired = 1;
        st.last_active = Some(last);
        st.last_active_observed = true;
        st
    }

    #[test]
    fn fixed_keeps_then_releases_with_wall_clock_times() {
        let mut spec = spec(KeepAlive::Fixed);
        spec.scale_to_zero_grace_period = flint_api::Duration::from_secs(600);
        let cfg = DecideConfig::default();
        let grace = spec.scale_to_zero_grace_period.as_std();
        let last = MIN * 1000;
        let st = idle_since(&spec, last);
        let (v, b) = view(&spec, &cfg, &st, last + Duration::from_secs(1));
        assert_eq!(v, View::Serving);
        assert_eq!(render(v, b, wall), "serving requests");
        let (v, b) = view(&spec, &cfg, &st, last + MIN / 2);
        assert_eq!(
            v,
            View::Keeping {
                until: last + grace
            }
        );
        assert_eq!(
            render(v, b, wall),
            format!(
                "fixed {}: keeping the last replica until 14:{:02} UTC",
                minutes(grace),
                grace.as_secs() / 60
            )
        );
        let (v, b) = view(&spec, &cfg, &st, last + grace + MIN);
        assert_eq!(
            v,
            View::Released {
                since: last + grace,
                prewarm: None
            }
        );
        assert!(
            render(v, b, wall).ends_with("the next request starts a replica"),
            "{}",
            render(v, b, wall)
        );
    }

    #[test]
    fn a_learned_timer_says_when_the_next_call_is_expected() {
        let spec = spec(KeepAlive::Learned);
        let cfg = DecideConfig::default();
        let grace = spec.scale_to_zero_grace_period.as_std();
        let learned = LearnedConfig::default();
        let mut h = IdleHistogram::learned(grace, &learned);
        for _ in 0..12 {
            h.record_learned(MIN * 60, 1, grace, &learned);
        }
        let w = h.windows().unwrap();
        assert!(w.prewarm > w.keep_first, "{w:?}");
        let last = MIN * 1000;
        let mut st = idle_since(&spec, last);
        st.idle = Some(Box::new(h));
        let now = last + (w.keep_first + w.prewarm) / 2;
        let (v, b) = view(&spec, &cfg, &st, now);
        assert_eq!(
            v,
            View::Released {
                since: last + w.keep_first,
                prewarm: Some((last + w.prewarm, last + w.keep_until)),
            }
        );
        let text = render(v, b, wall);
        assert!(
            text.starts_with("learned from 12 idle times, periodic: released at"),
            "{text}"
        );
        assert!(
            text.ends_with(&format!(
                "next call expected 14:{:02}-15:{:02} UTC, pre-warming from 14:{:02} UTC",
                w.prewarm.as_secs() / 60,
                w.keep_until.as_secs() / 60 - 60,
                w.prewarm.as_secs() / 60
            )),
            "{text}"
        );
        let (v, b) = view(&spec, &cfg, &st, last + w.prewarm + Duration::from_secs(1));
        assert_eq!(
            v,
            View::PreWarmed {
                until: last + w.keep_until
            }
        );
        assert!(render(v, b, wall).contains("pre-warmed for the next call"));
    }

    #[test]
    fn min_and_never_called_say_so() {
        let mut s = spec(KeepAlive::Learned);
        let cfg = DecideConfig::default();
        let st = ScaleState::new(&s, Duration::ZERO);
        let (v, b) = view(&s, &cfg, &st, MIN * 5);
        assert_eq!(v, View::NeverCalled);
        assert_eq!(
            render(v, b, wall),
            "learned (no idle time yet, population prior): no request yet"
        );
        s.min = 2;
        assert_eq!(view(&s, &cfg, &st, MIN * 5).0, View::Minimum(2));
    }

    #[test]
    fn the_message_does_not_change_while_nothing_happens() {
        let spec = spec(KeepAlive::Fixed);
        let cfg = DecideConfig::default();
        let last = MIN * 1000;
        let st = idle_since(&spec, last);
        let at = |t| {
            let (v, b) = view(&spec, &cfg, &st, t);
            render(v, b, wall)
        };
        assert_eq!(at(last + MIN), at(last + MIN * 2));
    }
}
