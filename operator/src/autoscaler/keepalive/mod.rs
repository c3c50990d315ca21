//! Keep-alive policies for a revision's last replica (`scale.keepAlive`):
//! the idle-time histogram they learn from, the windows they learn, and the
//! decision they lead to.
//!
//! `fixed` keeps the last replica for `scaleToZeroGracePeriod` after the last
//! request. `adaptive` ([`AdaptiveConfig`], in `adaptive.rs`) and `learned`
//! ([`LearnedConfig`], in `learned.rs`) both record the function's idle times
//! (gaps between requests) in the same histogram of one-minute bins over
//! four hours, [`IdleHistogram`], and learn from it [`Windows`]: how long to
//! keep the replica after a request, when to release it, when to pre-warm it
//! and until when to keep it. [`last_replica`] turns those windows (or the
//! fixed grace period without them) into what the autoscaler does with the
//! last replica now. The histogram and the decision live here, one policy
//! per submodule, so that neither policy depends on the other. State is one
//! fixed-size histogram per revision (about half a KiB).

use std::time::Duration;

use flint_api::KeepAlive;

mod adaptive;
mod learned;

pub use adaptive::AdaptiveConfig;
pub use learned::{LearnedConfig, TIMER_PERIODS_MINUTES};

/// Number of histogram bins.
pub const BINS: usize = 240;
/// Width of one histogram bin.
pub const BIN_WIDTH: Duration = Duration::from_secs(60);

/// The counts of an [`IdleHistogram`]: what a new leader needs to make the
/// same decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramParts {
    /// Idle times per one-minute bin.
    pub bins: [u16; BINS],
    /// Idle times beyond the last bin.
    pub out_of_range: u16,
    /// Requests seen between the recorded idle times.
    pub requests: u32,
    /// Sum of the recorded idle times, in seconds.
    pub idle_secs: u32,
}

/// The learned windows, relative to the end of the last request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Keep the replica this long first (the short mode of a two-mode
    /// histogram: gaps inside a burst); zero when there is no such mode.
    pub keep_first: Duration,
    /// Bring the replica back this long after the last request (zero: keep
    /// it from the start).
    pub prewarm: Duration,
    /// Keep the replica until this long after the last request.
    pub keep_until: Duration,
}

/// A revision's idle-time histogram (bounded: [`BINS`] counters) and the
/// windows learned from it.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleHistogram {
    bins: [u16; BINS],
    out_of_range: u16,
    total: u16,
    /// Requests seen between the recorded idle times (with `idle_secs`, the
    /// function's request rate, for the learned policy).
    requests: u32,
    /// Sum of the recorded idle times, in seconds (with `requests`, the
    /// function's request rate).
    idle_secs: u32,
    windows: Option<Windows>,
}

/// Counts are halved once the total reaches this, so old behaviour fades
/// (and no bin can overflow).
const DECAY_AT: u16 = u16::MAX;

impl Default for IdleHistogram {
    fn default() -> Self {
        Self {
            bins: [0; BINS],
            out_of_range: 0,
            total: 0,
            requests: 0,
            idle_secs: 0,
            windows: None,
        }
    }
}

impl IdleHistogram {
    /// Counts one idle time, halving every count first once the total has
    /// reached [`DECAY_AT`]. Each policy then recomputes its windows.
    fn add(&mut self, idle: Duration) {
        if self.total == DECAY_AT {
            for b in &mut self.bins {
                *b /= 2;
            }
            self.out_of_range /= 2;
            self.requests /= 2;
            self.idle_secs /= 2;
            let sum: u32 = self.bins.iter().map(|&b| u32::from(b)).sum();
            self.total = u16::try_from(sum + u32::from(self.out_of_range)).unwrap_or(u16::MAX);
        }
        let bin = usize::try_from(idle.as_secs() / BIN_WIDTH.as_secs()).unwrap_or(usize::MAX);
        match self.bins.get_mut(bin) {
            Some(count) => *count = count.saturating_add(1),
            None => self.out_of_range = self.out_of_range.saturating_add(1),
        }
        self.total = self.total.saturating_add(1);
    }

    /// The recorded counts, without the windows (which follow from them and
    /// the policy): what is persisted for a new leader.
    pub fn parts(&self) -> HistogramParts {
        HistogramParts {
            bins: self.bins,
            out_of_range: self.out_of_range,
            requests: self.requests,
            idle_secs: self.idle_secs,
        }
    }

    /// The histogram of recorded `parts`, with its windows recomputed for
    /// `policy` as [`IdleHistogram::record`] or
    /// [`IdleHistogram::record_learned`] would have left them.
    pub fn from_parts(
        parts: HistogramParts,
        policy: KeepAlive,
        grace: Duration,
        adaptive: &AdaptiveConfig,
        learned: &LearnedConfig,
    ) -> Self {
        let sum: u32 = parts.bins.iter().map(|&b| u32::from(b)).sum();
        let mut h = Self {
            bins: parts.bins,
            out_of_range: parts.out_of_range,
            total: u16::try_from(sum + u32::from(parts.out_of_range)).unwrap_or(u16::MAX),
            requests: parts.requests,
            idle_secs: parts.idle_secs,
            windows: None,
        };
        h.windows = match policy {
            KeepAlive::Fixed => None,
            KeepAlive::Adaptive => h.adaptive_windows(grace, adaptive),
            KeepAlive::Learned => Some(h.compute_learned(grace, learned)),
        };
        h
    }

    /// Idle times recorded (after decay).
    pub fn observations(&self) -> u32 {
        u32::from(self.total)
    }

    /// The learned windows, or `None` when the histogram is not representative.
    pub fn windows(&self) -> Option<Windows> {
        self.windows
    }
}

/// What the keep-alive policy wants for the last replica right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastReplica {
    /// Keep it (within the keep-alive window).
    Keep,
    /// Bring it up ahead of the expected next request.
    PreWarm,
    /// Let it go.
    Release,
}

/// The keep-alive decision for a revision idle for `idle` (no request since).
pub fn last_replica(
    policy: KeepAlive,
    grace: Duration,
    histogram: Option<&IdleHistogram>,
    idle: Duration,
) -> LastReplica {
    let learned = match policy {
        KeepAlive::Fixed => None,
        KeepAlive::Adaptive | KeepAlive::Learned => histogram.and_then(IdleHistogram::windows),
    };
    match learned {
        None if idle < grace => LastReplica::Keep,
        None => LastReplica::Release,
        Some(w) if idle < w.keep_first => LastReplica::Keep,
        Some(w) if idle < w.prewarm => LastReplica::Release,
        Some(w) if idle < w.keep_until && w.prewarm.is_zero() => LastReplica::Keep,
        Some(w) if idle < w.keep_until => LastReplica::PreWarm,
        Some(_) => LastReplica::Release,
    }
}

/// When, after the last request, the policy next wants a replica although
/// none is needed for traffic: the pre-warm time, if one is learned and still
/// ahead. Lets the simulator skip quiet time without missing a pre-warm.
pub fn next_prewarm(
    policy: KeepAlive,
    histogram: Option<&IdleHistogram>,
    idle: Duration,
) -> Option<Duration> {
    if policy == KeepAlive::Fixed {
        return None;
    }
    let w = histogram.and_then(IdleHistogram::windows)?;
    (w.prewarm > idle && !w.prewarm.is_zero()).then_some(w.prewarm)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn fixed_policy_ignores_the_histogram() {
        let cfg = AdaptiveConfig::default();
        let mut h = IdleHistogram::default();
        for _ in 0..200 {
            h.record(Duration::from_secs(20), MIN * 10, &cfg);
        }
        assert_eq!(
            last_replica(KeepAlive::Fixed, MIN * 10, Some(&h), MIN * 5),
            LastReplica::Keep
        );
    }

    #[test]
    fn learned_state_fits_in_half_a_kib() {
        assert!(std::mem::size_of::<IdleHistogram>() <= 600);
    }

    #[test]
    fn counts_stay_bounded() {
        let cfg = AdaptiveConfig::default();
        let mut h = IdleHistogram::default();
        // One bin takes every idle time: it must neither overflow nor stop.
        for _ in 0..(u32::from(DECAY_AT) + 10) {
            h.record(MIN * 3, MIN * 10, &cfg);
        }
        assert!(h.observations() <= u32::from(DECAY_AT));
        assert!(h.observations() > u32::from(DECAY_AT) / 2);
    }
}
