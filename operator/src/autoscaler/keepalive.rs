//! Keep-alive policies for a revision's last replica (`scale.keepAlive`).
//!
//! `fixed` keeps the last replica for `scaleToZeroGracePeriod` after the last
//! request. `adaptive` follows the hybrid histogram policy of Shahrad et al.,
//! "Serverless in the Wild" (USENIX ATC 2020): it records the function's idle
//! times (gaps between requests) in a histogram of one-minute bins over four
//! hours and, when the histogram is representative, releases the replica
//! right after a request, pre-warms it at a low percentile of the idle times
//! (the head, minus a margin) and keeps it until a high percentile (the tail,
//! plus a margin). When the histogram is not representative (too few idle
//! times, too flat, or too many beyond its range) it falls back to `fixed`.
//! State is one fixed-size histogram per revision (about 1 KiB).

use std::time::Duration;

use flint_api::KeepAlive;

/// Number of histogram bins.
pub const BINS: usize = 240;
/// Width of one histogram bin.
pub const BIN_WIDTH: Duration = Duration::from_secs(60);

/// Tunables of the adaptive policy. The defaults follow the paper.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConfig {
    /// Percentile of idle times at which the replica is pre-warmed (the head).
    pub head_percentile: f64,
    /// Percentile of idle times up to which the replica is kept (the tail).
    pub tail_percentile: f64,
    /// Safety margin in percent: the head is lowered and the tail raised by it.
    pub margin_percent: f64,
    /// Fewest recorded idle times before the histogram is trusted.
    pub min_observations: u32,
    /// Lowest coefficient of variation of the bin counts for the histogram to
    /// count as representative (a flat histogram predicts nothing).
    pub min_cv: f64,
    /// Highest share (percent) of idle times beyond the histogram's range.
    pub max_out_of_range_percent: f64,
    /// Gaps between requests shorter than this are not idle times: the
    /// replica is kept through them whatever the policy.
    pub min_idle: Duration,
    /// A run of at least this many (nearly) empty bins between the head and
    /// the tail splits the histogram in two modes: keep through the short
    /// one, release, pre-warm for the long one.
    pub split_bins: usize,
    /// The learned windows are used only if, replayed over the recorded idle
    /// times, they give no more cold starts than the fixed grace period and
    /// at most this many times its idle replica time.
    pub max_idle_ratio: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            head_percentile: 5.0,
            tail_percentile: 99.0,
            margin_percent: 10.0,
            min_observations: 4,
            min_cv: 2.0,
            max_out_of_range_percent: 50.0,
            min_idle: Duration::from_secs(60),
            split_bins: 10,
            max_idle_ratio: 2.0,
        }
    }
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

/// A revision's idle-time histogram (bounded: [`BINS`] counters).
#[derive(Debug, Clone, PartialEq)]
pub struct IdleHistogram {
    bins: [u32; BINS],
    out_of_range: u32,
    total: u32,
    windows: Option<Windows>,
}

/// Counts are halved once the total reaches this, so old behaviour fades.
const DECAY_AT: u32 = 1 << 16;

impl Default for IdleHistogram {
    fn default() -> Self {
        Self {
            bins: [0; BINS],
            out_of_range: 0,
            total: 0,
            windows: None,
        }
    }
}

impl IdleHistogram {
    /// Records one idle time and recomputes the windows.
    pub fn record(&mut self, idle: Duration, grace: Duration, cfg: &AdaptiveConfig) {
        if self.total >= DECAY_AT {
            for b in &mut self.bins {
                *b /= 2;
            }
            self.out_of_range /= 2;
            self.total = self.bins.iter().sum::<u32>() + self.out_of_range;
        }
        let bin = usize::try_from(idle.as_secs() / BIN_WIDTH.as_secs()).unwrap_or(usize::MAX);
        match self.bins.get_mut(bin) {
            Some(count) => *count += 1,
            None => self.out_of_range += 1,
        }
        self.total += 1;
        self.windows = self
            .compute(cfg)
            .filter(|w| self.beats_fixed(w, grace, cfg.max_idle_ratio));
    }

    /// Replays the recorded idle times under `w` and under a fixed `grace`.
    fn beats_fixed(&self, w: &Windows, grace: Duration, max_idle_ratio: f64) -> bool {
        let width = BIN_WIDTH.as_secs_f64();
        let (ka1, pw, ku) = (
            w.keep_first.as_secs_f64(),
            w.prewarm.as_secs_f64(),
            w.keep_until.as_secs_f64(),
        );
        let g = grace.as_secs_f64();
        let (mut idle_l, mut idle_f, mut cold_l, mut cold_f) = (0.0, 0.0, 0.0, 0.0);
        let far = BINS as f64 * width * 2.0;
        let gaps = self
            .bins
            .iter()
            .enumerate()
            .map(|(i, &c)| ((i as f64 + 0.5) * width, f64::from(c)))
            .chain(std::iter::once((far, f64::from(self.out_of_range))));
        for (t, c) in gaps.filter(|&(_, c)| c > 0.0) {
            let kept = t.min(ka1) + if t > pw { t.min(ku) - pw } else { 0.0 };
            let warm = t < ka1 || (t >= pw && t < ku);
            idle_l += c * kept;
            cold_l += if warm { 0.0 } else { c };
            idle_f += c * t.min(g);
            cold_f += if t < g { 0.0 } else { c };
        }
        cold_l <= cold_f && idle_l <= idle_f * max_idle_ratio
    }

    /// Idle times recorded (after decay).
    pub fn observations(&self) -> u32 {
        self.total
    }

    /// The learned windows, or `None` when the histogram is not representative.
    pub fn windows(&self) -> Option<Windows> {
        self.windows
    }

    fn compute(&self, cfg: &AdaptiveConfig) -> Option<Windows> {
        if self.total < cfg.min_observations {
            return None;
        }
        let total = f64::from(self.total);
        if f64::from(self.out_of_range) * 100.0 > cfg.max_out_of_range_percent * total {
            return None;
        }
        let in_range = self.total - self.out_of_range;
        let n = BINS as f64;
        let mean = f64::from(in_range) / n;
        let var = self
            .bins
            .iter()
            .map(|&c| (f64::from(c) - mean).powi(2))
            .sum::<f64>()
            / n;
        if mean <= 0.0 || var.sqrt() / mean < cfg.min_cv {
            return None;
        }
        let head = self.percentile_bin(cfg.head_percentile, in_range)?;
        let tail = self.percentile_bin(cfg.tail_percentile, in_range)?;
        let width = BIN_WIDTH.as_secs_f64();
        let early = 1.0 - cfg.margin_percent / 100.0;
        let late = 1.0 + cfg.margin_percent / 100.0;
        let keep_until = (tail + 1) as f64 * width * late;
        // The longest run of (nearly) empty bins between head and tail.
        let empty = |c: u32| u64::from(c) * 100 < u64::from(in_range);
        let (mut best, mut run_start) = ((0, 0), None);
        for i in head..=tail {
            match (empty(self.bins[i]), run_start) {
                (true, None) => run_start = Some(i),
                (false, Some(start)) => {
                    if i - start > best.1 - best.0 {
                        best = (start, i);
                    }
                    run_start = None;
                }
                _ => {}
            }
        }
        let (keep_first, prewarm) = if best.1 - best.0 >= cfg.split_bins.max(1) {
            (best.0 as f64 * width * late, best.1 as f64 * width * early)
        } else {
            (0.0, head as f64 * width * early)
        };
        let secs = |x: f64| Duration::from_secs_f64(x.max(0.0));
        Some(Windows {
            keep_first: secs(keep_first),
            prewarm: secs(prewarm.max(keep_first)),
            keep_until: secs(keep_until.max(prewarm)),
        })
    }

    fn percentile_bin(&self, pct: f64, in_range: u32) -> Option<usize> {
        let rank = (pct / 100.0 * f64::from(in_range)).ceil().max(1.0);
        let mut seen = 0u32;
        self.bins.iter().position(|&c| {
            seen += c;
            f64::from(seen) >= rank
        })
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
        KeepAlive::Adaptive => histogram.and_then(IdleHistogram::windows),
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
    if policy != KeepAlive::Adaptive {
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
    fn periodic_function_is_prewarmed_before_its_period() {
        let cfg = AdaptiveConfig::default();
        let mut h = IdleHistogram::default();
        for _ in 0..10 {
            h.record(MIN * 30 + Duration::from_secs(5), MIN * 10, &cfg);
        }
        let w = h.windows().unwrap();
        assert_eq!(w.prewarm, Duration::from_secs(30 * 60 * 9 / 10));
        assert_eq!(w.keep_until, Duration::from_secs(31 * 60 * 11 / 10));
        let grace = MIN * 10;
        let at = |idle| last_replica(KeepAlive::Adaptive, grace, Some(&h), idle);
        assert_eq!(at(MIN), LastReplica::Release);
        assert_eq!(at(MIN * 28), LastReplica::PreWarm);
        assert_eq!(at(MIN * 35), LastReplica::Release);
        assert_eq!(
            next_prewarm(KeepAlive::Adaptive, Some(&h), MIN),
            Some(w.prewarm)
        );
    }

    #[test]
    fn falls_back_to_fixed_until_representative() {
        let cfg = AdaptiveConfig::default();
        let mut h = IdleHistogram::default();
        h.record(MIN * 30, MIN * 10, &cfg);
        assert_eq!(h.windows(), None);
        let grace = MIN * 10;
        let at = |h: &IdleHistogram, idle| last_replica(KeepAlive::Adaptive, grace, Some(h), idle);
        assert_eq!(at(&h, MIN * 9), LastReplica::Keep);
        assert_eq!(at(&h, MIN * 10), LastReplica::Release);
        // Mostly beyond four hours: not representative either.
        let mut far = IdleHistogram::default();
        for _ in 0..10 {
            far.record(MIN * 300, MIN * 10, &cfg);
        }
        assert_eq!(far.windows(), None);
    }

    #[test]
    fn frequent_function_keeps_replica_only_past_its_tail() {
        let cfg = AdaptiveConfig::default();
        let mut h = IdleHistogram::default();
        for _ in 0..200 {
            h.record(Duration::from_secs(20), MIN * 10, &cfg);
        }
        let w = h.windows().unwrap();
        assert_eq!(w.prewarm, Duration::ZERO);
        assert_eq!(w.keep_until, Duration::from_secs(66));
        let at = |idle| last_replica(KeepAlive::Adaptive, MIN * 10, Some(&h), idle);
        assert_eq!(at(Duration::from_secs(50)), LastReplica::Keep);
        assert_eq!(at(Duration::from_secs(70)), LastReplica::Release);
        assert_eq!(next_prewarm(KeepAlive::Adaptive, Some(&h), MIN), None);
    }

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
    fn counts_stay_bounded() {
        let cfg = AdaptiveConfig::default();
        let mut h = IdleHistogram::default();
        for _ in 0..(DECAY_AT + 10) {
            h.record(Duration::from_secs(1), MIN * 10, &cfg);
        }
        assert!(h.observations() <= DECAY_AT);
    }
}
