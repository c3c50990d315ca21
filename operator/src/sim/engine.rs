//! Replays one function's trace through `decide()` in simulated time.
//!
//! Model (all times simulated):
//! - arrivals: a minute's `count` requests are spread evenly over the minute,
//!   at `(i + ½) × 60 s / count`;
//! - each request takes `request` once it has a replica; replicas have no
//!   concurrency limit, so the only queueing is waiting for a cold start;
//! - a replica becomes ready `cold_start` after the decision that asked for it;
//! - a request that arrives while no replica is ready is a cold start: it
//!   pokes the autoscaler (an immediate decision) and waits for the first
//!   replica, and that wait is its queueing delay;
//! - the autoscaler sees one sample a second (average in-flight requests,
//!   counted from arrival as the gateway does, and requests per second) and
//!   decides every `tick`;
//! - idle replica-seconds: every second, replicas that exist (ready or
//!   starting) minus those busy (`ceil` of that second's concurrency).
//!
//! Quiet stretches at zero replicas are skipped (decisions there cannot
//! change anything) up to the next arrival or the next adaptive pre-warm.

use std::collections::VecDeque;
use std::time::Duration;

use flint_api::ScaleSpec;

use super::trace::{FunctionTrace, MINUTES};
use crate::autoscaler::{DecideConfig, Observation, Sample, ScaleState, Window, decide, keepalive};

/// Simulation settings shared by all policies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Time from a scale-up decision to a ready replica.
    pub cold_start: Duration,
    /// Time a request takes once it has a replica.
    pub request: Duration,
    /// Interval between periodic decisions.
    pub tick: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            cold_start: Duration::from_secs(1),
            request: Duration::from_secs(1),
            tick: Duration::from_secs(2),
        }
    }
}

/// What one function experienced under one policy.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FunctionStats {
    /// Requests replayed.
    pub requests: u64,
    /// Requests that found no ready replica.
    pub cold_starts: u64,
    /// Sum of the time requests waited for a replica, in milliseconds.
    pub wait_ms: f64,
    /// Replica-seconds not serving any request.
    pub idle_replica_seconds: f64,
    /// Scale writes (changes of the desired count).
    pub scale_writes: u64,
}

impl FunctionStats {
    /// Cold starts as a percentage of requests.
    pub fn cold_start_pct(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.cold_starts as f64 * 100.0 / self.requests as f64
        }
    }
}

const MS: u64 = 1000;

fn dur(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

struct Replicas {
    ready: u32,
    /// Ready times of replicas still starting, ascending.
    starting: VecDeque<u64>,
}

impl Replicas {
    fn promote(&mut self, now_ms: u64) {
        while self.starting.front().is_some_and(|&t| t <= now_ms) {
            self.starting.pop_front();
            self.ready += 1;
        }
    }

    fn total(&self) -> u32 {
        self.ready + u32::try_from(self.starting.len()).unwrap_or(u32::MAX)
    }

    fn set(&mut self, desired: u32, now_ms: u64, cold_start_ms: u64) {
        let total = self.total();
        if desired > total {
            for _ in total..desired {
                self.starting.push_back(now_ms + cold_start_ms);
            }
        } else {
            let mut extra = total - desired;
            while extra > 0 && self.starting.pop_back().is_some() {
                extra -= 1;
            }
            self.ready -= extra.min(self.ready);
        }
    }
}

/// Per-second load not yet turned into samples, from the current second on.
#[derive(Default)]
struct Buckets {
    base: u64,
    slots: VecDeque<(f64, u32)>,
}

impl Buckets {
    fn slot(&mut self, sec: u64) -> Option<&mut (f64, u32)> {
        let idx = usize::try_from(sec.checked_sub(self.base)?).ok()?;
        if self.slots.len() <= idx {
            self.slots.resize(idx + 1, (0.0, 0));
        }
        self.slots.get_mut(idx)
    }

    /// Adds a request in flight over `[from_ms, to_ms)` that arrived at `from_ms`.
    fn add(&mut self, from_ms: u64, to_ms: u64) {
        if let Some(s) = self.slot(from_ms / MS) {
            s.1 += 1;
        }
        let mut t = from_ms;
        while t < to_ms {
            let sec = t / MS;
            let end = ((sec + 1) * MS).min(to_ms);
            if let Some(s) = self.slot(sec) {
                s.0 += (end - t) as f64 / MS as f64;
            }
            t = end;
        }
    }

    /// Takes the finished second `base` out.
    fn pop(&mut self) -> (f64, u32) {
        self.base += 1;
        self.slots.pop_front().unwrap_or((0.0, 0))
    }

    fn is_quiet(&self) -> bool {
        self.slots.iter().all(|&(c, n)| c == 0.0 && n == 0)
    }

    fn skip_to(&mut self, sec: u64) {
        self.slots.clear();
        self.base = sec;
    }
}

/// Replays `trace` under `spec`; returns what the function experienced.
pub fn simulate(
    trace: &FunctionTrace,
    spec: &ScaleSpec,
    cfg: &DecideConfig,
    sim: &SimConfig,
) -> FunctionStats {
    let cold_ms = millis(sim.cold_start);
    let req_ms = millis(sim.request);
    let tick_s = sim.tick.as_secs().max(1);
    let end_s = u64::from(MINUTES) * 60;
    let mut arrivals = trace.minutes.iter().flat_map(|&(m, c)| {
        let start = u64::from(m - 1) * 60 * MS;
        (0..u64::from(c)).map(move |i| start + (2 * i + 1) * 30 * MS / u64::from(c))
    });
    let mut next_arrival = arrivals.next();
    let mut window = Window::new(spec.stable_window.as_std());
    let mut state = ScaleState::new(spec, Duration::ZERO);
    let mut replicas = Replicas {
        ready: 0,
        starting: VecDeque::new(),
    };
    replicas.set(state.desired, 0, cold_ms);
    let mut buckets = Buckets {
        base: 0,
        slots: VecDeque::new(),
    };
    let mut stats = FunctionStats::default();
    let mut waiting_in_cold_start = 0u32;
    let apply =
        |state: &ScaleState, replicas: &mut Replicas, at_ms: u64, stats: &mut FunctionStats| {
            if state.desired != replicas.total() {
                stats.scale_writes += 1;
                replicas.set(state.desired, at_ms, cold_ms);
            }
        };

    let mut sec = 0u64;
    while sec < end_s {
        // Second `sec` covers [sec, sec + 1) and its sample is stamped sec + 1.
        let sec_end_ms = (sec + 1) * MS;
        while let Some(a) = next_arrival.filter(|&a| a < sec_end_ms) {
            replicas.promote(a);
            let start = if replicas.ready > 0 {
                waiting_in_cold_start = 0;
                a
            } else {
                stats.cold_starts += 1;
                waiting_in_cold_start += 1;
                let obs = Observation {
                    ready: 0,
                    poke: Some(waiting_in_cold_start),
                    ..Observation::default()
                };
                let d = decide(spec, cfg, &window, obs, dur(a), state);
                state = d.state;
                apply(&state, &mut replicas, a, &mut stats);
                replicas.starting.front().copied().unwrap_or(a).max(a)
            };
            stats.requests += 1;
            stats.wait_ms += (start - a) as f64;
            buckets.add(a, start + req_ms);
            next_arrival = arrivals.next();
        }
        replicas.promote(sec_end_ms);
        let (concurrency, count) = buckets.pop();
        let exist = replicas.total();
        let busy = u32::try_from(concurrency.ceil() as u64)
            .unwrap_or(u32::MAX)
            .min(exist);
        stats.idle_replica_seconds += f64::from(exist - busy);
        window.push(Sample {
            at: Duration::from_secs(sec + 1),
            concurrency,
            rps: f64::from(count),
        });
        sec += 1;
        if sec.is_multiple_of(tick_s) {
            let obs = Observation {
                ready: replicas.ready,
                ..Observation::default()
            };
            let d = decide(spec, cfg, &window, obs, Duration::from_secs(sec), state);
            state = d.state;
            apply(&state, &mut replicas, sec * MS, &mut stats);
            if state.desired == 0 && replicas.total() == 0 && buckets.is_quiet() {
                let wake = keepalive::next_prewarm(
                    spec.keep_alive,
                    state.idle.as_deref(),
                    state.idle_for(Duration::from_secs(sec)),
                )
                .map(|pw| {
                    let base = Duration::from_secs(sec) - state.idle_for(Duration::from_secs(sec));
                    (base + pw).as_secs().div_ceil(tick_s) * tick_s
                });
                let arrive = next_arrival.map_or(end_s, |a| a / MS);
                let to = wake.unwrap_or(end_s).min(arrive).min(end_s);
                if to > sec + 1 {
                    sec = to - 1;
                    buckets.skip_to(sec);
                    window.clear();
                    window.push(Sample {
                        at: Duration::from_secs(sec),
                        concurrency: 0.0,
                        rps: 0.0,
                    });
                }
            }
        }
    }
    stats
}
