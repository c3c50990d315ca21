//! The adaptive keep-alive policy (`keepAlive: adaptive`): the hybrid
//! histogram policy of Shahrad et al., "Serverless in the Wild" (USENIX ATC
//! 2020). When the idle-time histogram is representative, it releases the
//! replica right after a request, pre-warms it at a low percentile of the
//! idle times (the head, minus a margin) and keeps it until a high
//! percentile (the tail, plus a margin); a histogram with two modes is kept
//! through the short one and pre-warmed for the long one. When the
//! histogram is not representative (too few idle times, too flat, too many
//! beyond its range, or no better than `fixed` when replayed) it falls back
//! to the fixed grace period. Apart from the learned policy because it
//! reads the histogram by percentile, not by cost.

use std::time::Duration;

use super::{BIN_WIDTH, BINS, IdleHistogram, Windows};

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

impl IdleHistogram {
    /// Records one idle time and recomputes the windows (adaptive policy).
    pub fn record(&mut self, idle: Duration, grace: Duration, cfg: &AdaptiveConfig) {
        self.add(idle);
        self.windows = self.adaptive_windows(grace, cfg);
    }

    /// The adaptive windows, kept only when the histogram is representative
    /// and, replayed, they beat the fixed `grace`.
    pub(super) fn adaptive_windows(
        &self,
        grace: Duration,
        cfg: &AdaptiveConfig,
    ) -> Option<Windows> {
        self.compute(cfg)
            .filter(|w| self.beats_fixed(w, grace, cfg.max_idle_ratio))
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

    fn compute(&self, cfg: &AdaptiveConfig) -> Option<Windows> {
        if u32::from(self.total) < cfg.min_observations {
            return None;
        }
        let total = f64::from(self.total);
        if f64::from(self.out_of_range) * 100.0 > cfg.max_out_of_range_percent * total {
            return None;
        }
        let in_range = u32::from(self.total - self.out_of_range);
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
        let empty = |c: u16| u64::from(c) * 100 < u64::from(in_range);
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
            seen += u32::from(c);
            f64::from(seen) >= rank
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LastReplica, last_replica, next_prewarm};
    use super::*;
    use flint_api::KeepAlive;

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
}
