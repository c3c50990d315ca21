//! Which revisions a tick can skip: those at zero with nothing that could
//! wake them but a new input. For such a revision `decide()` would answer
//! "stay at zero" and change nothing in its state, so the runner skips it
//! (no replica read, no decision, no gauge written) until one of those
//! inputs arrives — a poke, a sample with traffic, pending asynchronous
//! work (which is also how `schedules` fire) — or a rule of its own wants
//! a replica: `min` above zero, the `initial` hold of a new revision, a
//! pre-warm its keep-alive policy has learned, a panic still on.
//!
//! Pure: the caller passes the clock and what it knows of the revision.

use std::time::Duration;

use flint_api::ScaleSpec;

use super::keepalive;
use super::state::ScaleState;
use super::window::Window;

/// How long a dormant revision's per-revision gauges (desired and actual
/// replicas, panic mode) stay exported, at zero, before they leave the
/// autoscaler's `/metrics`: the same five minutes as the gateway's idle
/// series, many scrapes of any scraper.
pub const SERIES_GRACE: Duration = Duration::from_secs(300);

/// What the runner knows of a revision besides its spec, state and window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// The count last written to the backend (`None`: never written).
    pub written: Option<u32>,
    /// Replicas ready when last read.
    pub ready: u32,
    /// Whether the revision was taken over (its first decision made possible).
    pub adopted: bool,
    /// Whether its Function has pending asynchronous work now.
    pub backlog: bool,
}

/// Whether a tick at `now` can skip the revision: at zero, written at
/// zero, nothing ready, and nothing that would make `decide()` want a
/// replica or change its state.
pub fn is_dormant(
    spec: &ScaleSpec,
    state: &ScaleState,
    window: &Window,
    situation: Situation,
    now: Duration,
) -> bool {
    let at_zero = state.desired == 0
        && situation.written == Some(0)
        && situation.ready == 0
        && situation.adopted
        && spec.min == 0;
    if !at_zero || situation.backlog || state.panicking() {
        return false;
    }
    // The `initial` hold of a new revision.
    if spec.initial > 0 && now < state.started + spec.stable_window.as_std() {
        return false;
    }
    // A poke the decision has not outlived yet.
    if state
        .last_poke
        .is_some_and(|t| now.saturating_sub(t) < spec.panic_window().as_std())
    {
        return false;
    }
    // Traffic no decision has looked at yet (samples without traffic
    // change nothing a decision at zero keeps).
    if window
        .iter()
        .rev()
        .take_while(|s| s.at > state.seen_until)
        .any(|s| s.is_active())
    {
        return false;
    }
    // A pre-warm the keep-alive policy has learned, still ahead.
    let idle = state.idle_for(now);
    keepalive::next_prewarm(spec.keep_alive, state.idle.as_deref(), idle).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::window::Sample;
    use flint_api::KeepAlive;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn spec() -> ScaleSpec {
        ScaleSpec {
            min: 0,
            initial: 0,
            ..ScaleSpec::default()
        }
    }

    fn situation() -> Situation {
        Situation {
            written: Some(0),
            ready: 0,
            adopted: true,
            backlog: false,
        }
    }

    fn idle_state(spec: &ScaleSpec) -> ScaleState {
        let mut state = ScaleState::new(spec, S(0));
        state.desired = 0;
        state
    }

    #[test]
    fn an_idle_revision_at_zero_is_dormant_and_anything_else_is_not() {
        let spec = spec();
        let state = idle_state(&spec);
        let window = Window::new(S(60));
        let now = S(1000);
        assert!(is_dormant(&spec, &state, &window, situation(), now));
        let cases: [(&str, Situation); 5] = [
            (
                "never written",
                Situation {
                    written: None,
                    ..situation()
                },
            ),
            (
                "written one",
                Situation {
                    written: Some(1),
                    ..situation()
                },
            ),
            (
                "a replica ready",
                Situation {
                    ready: 1,
                    ..situation()
                },
            ),
            (
                "not adopted",
                Situation {
                    adopted: false,
                    ..situation()
                },
            ),
            (
                "pending work",
                Situation {
                    backlog: true,
                    ..situation()
                },
            ),
        ];
        for (what, s) in cases {
            assert!(!is_dormant(&spec, &state, &window, s, now), "{what}");
        }
        let with_min = ScaleSpec {
            min: 1,
            ..spec.clone()
        };
        assert!(!is_dormant(&with_min, &state, &window, situation(), now));
        let mut wanting = state.clone();
        wanting.desired = 1;
        assert!(!is_dormant(&spec, &wanting, &window, situation(), now));
        let mut panicking = state.clone();
        panicking.panic_since = Some(S(999));
        assert!(!is_dormant(&spec, &panicking, &window, situation(), now));
    }

    #[test]
    fn a_poke_or_an_unseen_sample_wakes_it() {
        let spec = spec();
        let now = S(1000);
        let mut poked = idle_state(&spec);
        poked.last_poke = Some(now - S(1));
        assert!(!is_dormant(
            &spec,
            &poked,
            &Window::new(S(60)),
            situation(),
            now
        ));
        // Once a panic window has passed, the poke is spent.
        poked.last_poke = Some(now - spec.panic_window().as_std());
        assert!(is_dormant(
            &spec,
            &poked,
            &Window::new(S(60)),
            situation(),
            now
        ));
        let state = idle_state(&spec);
        let mut window = Window::new(S(60));
        window.push(Sample {
            at: now,
            concurrency: 1.0,
            rps: 1.0,
        });
        assert!(!is_dormant(&spec, &state, &window, situation(), now));
        let mut seen = state.clone();
        seen.seen_until = now;
        assert!(is_dormant(&spec, &seen, &window, situation(), now));
        // An unseen sample without traffic does not wake it.
        let mut quiet = Window::new(S(60));
        quiet.push(Sample {
            at: now,
            concurrency: 0.0,
            rps: 0.0,
        });
        assert!(is_dormant(&spec, &state, &quiet, situation(), now));
    }

    #[test]
    fn a_new_revision_in_its_initial_hold_is_not_dormant() {
        let spec = ScaleSpec {
            initial: 1,
            ..spec()
        };
        let state = idle_state(&spec);
        let window = Window::new(S(60));
        assert!(!is_dormant(&spec, &state, &window, situation(), S(10)));
        assert!(is_dormant(
            &spec,
            &state,
            &window,
            situation(),
            spec.stable_window.as_std() + S(1)
        ));
    }

    #[test]
    fn a_learned_pre_warm_ahead_keeps_it_decided() {
        use crate::autoscaler::keepalive::AdaptiveConfig;
        let spec = ScaleSpec {
            keep_alive: KeepAlive::Adaptive,
            scale_to_zero_grace_period: flint_api::Duration::from_secs(600),
            ..spec()
        };
        let cfg = AdaptiveConfig::default();
        let grace = spec.scale_to_zero_grace_period.as_std();
        let mut histogram = keepalive::IdleHistogram::default();
        // A function called every 30 minutes: pre-warm before the next call.
        for i in 0..200 {
            histogram.record(S(30 * 60 + (i % 3) * 60), grace, &cfg);
        }
        let windows = histogram.windows().expect("learned windows");
        assert!(!windows.prewarm.is_zero(), "{windows:?}");
        let mut state = idle_state(&spec);
        state.idle = Some(Box::new(histogram));
        state.last_active = Some(S(100));
        state.last_active_observed = true;
        let window = Window::new(S(60));
        let before = S(100) + windows.prewarm - S(60);
        assert!(!is_dormant(&spec, &state, &window, situation(), before));
        let after = S(100) + windows.keep_until + S(60);
        assert!(is_dormant(&spec, &state, &window, situation(), after));
    }
}
