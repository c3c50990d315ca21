//! A scenario driver for the pure scaling decision: one sample per second
//! into the window and a decision every 2 s, with the actuator assumed
//! instant (ready = the previous decision). Decides with `decide()`,
//! observing the backlog once one is set.

use std::time::Duration;

use flint_api::ScaleSpec;
use flint_operator::autoscaler::{
    Backlog, DecideConfig, Observation, Reason, Sample, ScaleState, Window, decide,
};

/// One decision: (time in seconds, desired, reason, panicking after it).
pub type Entry = (u64, u32, Reason, bool);

/// The decision inputs, the clock and every decision taken so far.
pub struct Scenario {
    pub spec: ScaleSpec,
    pub cfg: DecideConfig,
    pub window: Window,
    pub state: ScaleState,
    /// Seconds since the start.
    pub now: u64,
    /// `None`: decide without the asynchronous signal; `Some`: with this
    /// backlog.
    pub backlog: Option<Backlog>,
    /// Every decision, in order.
    pub log: Vec<Entry>,
}

impl Scenario {
    /// At time 0, an empty window, deciding with `decide()`.
    pub fn new(spec: ScaleSpec) -> Self {
        let window = Window::new(spec.stable_window.as_std());
        let state = ScaleState::new(&spec, Duration::ZERO);
        Self {
            spec,
            cfg: DecideConfig::default(),
            window,
            state,
            now: 0,
            backlog: None,
            log: Vec::new(),
        }
    }

    /// One second of concurrency `load` (None: the metrics source is down).
    pub fn tick(&mut self, load: Option<f64>) {
        self.now += 1;
        if let Some(c) = load {
            self.window.push(Sample {
                at: Duration::from_secs(self.now),
                concurrency: c,
                rps: c,
            });
        }
    }

    /// `secs` seconds of concurrency `load`, deciding every 2 s.
    pub fn run(&mut self, secs: u64, load: Option<f64>) -> &mut Self {
        for _ in 0..secs {
            self.tick(load);
            if self.now.is_multiple_of(2) {
                self.decide(None);
            }
        }
        self
    }

    /// Decides now, with `poke` requests waiting at the gateway, and logs it.
    pub fn decide(&mut self, poke: Option<u32>) -> (u32, Reason) {
        let obs = Observation {
            ready: self.state.desired,
            poke,
            backlog: self.backlog.unwrap_or(Backlog::NONE),
        };
        let now = Duration::from_secs(self.now);
        let d = decide(
            &self.spec,
            &self.cfg,
            &self.window,
            obs,
            now,
            self.state.clone(),
        );
        self.state = d.state;
        self.log
            .push((self.now, d.desired, d.reason, self.state.panicking()));
        (d.desired, d.reason)
    }

    /// The last decision: (desired, reason).
    pub fn last(&self) -> (u32, Reason) {
        let &(_, d, r, _) = self.log.last().unwrap();
        (d, r)
    }

    /// The decisions taken after time `t`.
    pub fn since(&self, t: u64) -> impl Iterator<Item = &Entry> {
        self.log.iter().filter(move |e| e.0 > t)
    }
}
