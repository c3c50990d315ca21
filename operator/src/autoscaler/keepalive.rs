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
/// Common timer periods (cron schedules), in minutes: the learned policy's
/// prior puts part of its mass at these idle times.
pub const TIMER_PERIODS_MINUTES: [usize; 5] = [5, 10, 15, 30, 60];
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

/// Tunables of the learned policy (`keepAlive: learned`). The defaults were
/// tuned on one half of a public serverless trace's functions and checked
/// on the other (docs/autoscaling.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnedConfig {
    /// Price of one idle replica-second, in weighted cold starts: the one
    /// knob that moves the policy along its frontier, higher for less idle
    /// time and more cold starts.
    pub price: f64,
    /// A cold start weighs (the function's requests per hour) to the power
    /// of minus this, plus [`LearnedConfig::base_weight`]: at 1 it counts
    /// for what it costs that function's cold-start rate, so a rarely
    /// called function is kept warm longer than a busy one, whose rare cold
    /// starts hardly show; at 0 every cold start weighs the same.
    pub rate_exponent: f64,
    /// Added to every cold start's weight, so that busy functions' cold
    /// starts, and the overall cold-start rate, still count.
    pub base_weight: f64,
    /// How many idle times the population prior counts as; 0 for none (then
    /// the policy falls back to the fixed grace period until it has seen an
    /// idle time).
    pub prior_weight: f64,
    /// Exponent of the prior's power law over idle times (in minutes).
    pub prior_power: f64,
    /// Share of the prior at [`TIMER_PERIODS_MINUTES`].
    pub prior_timer_share: f64,
    /// Share of the prior beyond the histogram's range (four hours).
    pub prior_beyond: f64,
    /// Prior request rate (requests per hour) of a function...
    pub prior_requests_per_hour: f64,
    /// ...counted as this many hours of idle time.
    pub prior_hours: f64,
    /// A pre-warmed replica is asked for this long before the window opens,
    /// so that it is ready when the expected request comes.
    pub prewarm_lead: Duration,
    /// Gaps between requests shorter than this are not idle times: the
    /// replica is kept through them whatever the windows say (the
    /// adaptive policy's [`AdaptiveConfig::min_idle`], lower at high
    /// prices so that the policy can spend less than a fixed minute).
    pub min_idle: Duration,
}

impl Default for LearnedConfig {
    fn default() -> Self {
        Self {
            price: 1.3e-4,
            rate_exponent: 1.0,
            base_weight: 0.1,
            prior_weight: 16.0,
            prior_power: 1.0,
            prior_timer_share: 0.6,
            prior_beyond: 0.04,
            prior_requests_per_hour: 2.0,
            prior_hours: 2.0,
            prewarm_lead: Duration::from_secs(10),
            min_idle: Duration::from_secs(60),
        }
    }
}

/// The learned policy's settings along its price axis: (price, prior
/// weight, rate exponent, shortest idle time in seconds), read between
/// knots on a log scale of the price (below the first, the first; above
/// the last, the last). Chosen on the tuning half of the dev trace
/// (docs/autoscaling.md).
const SCHEDULE: [(f64, f64, f64, f64); 5] = [
    (2.5e-4, 16.0, 1.0, 60.0),
    (5e-4, 4.0, 0.75, 60.0),
    (7e-4, 0.0, 0.5, 60.0),
    (1e-3, 0.0, 0.5, 60.0),
    (2e-3, 0.0, 0.5, 30.0),
];

/// The schedule's (prior weight, rate exponent, shortest idle seconds) at
/// `price`.
fn scheduled(price: f64) -> (f64, f64, f64) {
    let first = SCHEDULE[0];
    let mut out = (first.1, first.2, first.3);
    for pair in SCHEDULE.windows(2) {
        let [(p0, w0, r0, m0), (p1, w1, r1, m1)] = [pair[0], pair[1]];
        if price >= p1 {
            out = (w1, r1, m1);
        } else if price > p0 {
            let t = (price / p0).ln() / (p1 / p0).ln();
            let mix = |a: f64, b: f64| a + (b - a) * t;
            out = (mix(w0, w1), mix(r0, r1), mix(m0, m1));
        }
    }
    out
}

impl LearnedConfig {
    /// The learned policy at `price`: the defaults (with that price) up to
    /// 2.5e-4; above it the population prior fades out and cold starts
    /// weigh the square root of the request rate instead of the rate, by
    /// 7e-4 (at high prices the prior pays for keeping rare functions
    /// warm that the budget cannot keep anyway; without it a function
    /// falls back to the grace period until its first idle time), and the
    /// shortest idle time falls from one minute to half a minute between
    /// 1e-3 and 2e-3, so the policy can spend less than a fixed minute.
    pub fn at_price(price: f64) -> Self {
        let (prior_weight, rate_exponent, min_idle) = scheduled(price);
        Self {
            price,
            prior_weight,
            rate_exponent,
            min_idle: Duration::from_secs_f64(min_idle),
            ..Self::default()
        }
    }

    /// The per-function cost-aware baseline at `price`: the function's own
    /// idle times only (no prior), every cold start weighed alike. What the
    /// learned policy is measured against in `flint sim`. Its shortest idle
    /// time follows the same schedule as [`LearnedConfig::at_price`], so
    /// both reach the same low budgets.
    pub fn baseline(price: f64) -> Self {
        Self {
            rate_exponent: 0.0,
            base_weight: 0.0,
            prior_weight: 0.0,
            ..Self::at_price(price)
        }
    }

    /// The prior's probability of each bin, and of beyond the range.
    fn prior(&self) -> ([f64; BINS], f64) {
        let mut p = [0.0; BINS];
        let mut sum = 0.0;
        for (i, x) in p.iter_mut().enumerate() {
            *x = (i as f64 + 0.5).powf(-self.prior_power);
            sum += *x;
        }
        let in_range = (1.0 - self.prior_beyond).max(0.0);
        let smooth = in_range * (1.0 - self.prior_timer_share);
        for x in &mut p {
            *x *= smooth / sum;
        }
        let timer = in_range * self.prior_timer_share / TIMER_PERIODS_MINUTES.len() as f64;
        for m in TIMER_PERIODS_MINUTES {
            // A request every m minutes leaves an idle time just under m.
            if let Some(x) = p.get_mut(m - 1) {
                *x += timer;
            }
        }
        (p, self.prior_beyond)
    }
}

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
    /// A histogram with no idle time yet, for the learned policy: its windows
    /// come from the prior alone (or the fixed `grace` without one).
    pub fn learned(grace: Duration, cfg: &LearnedConfig) -> Self {
        let mut h = Self::default();
        h.windows = Some(h.compute_learned(grace, cfg));
        h
    }

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

    /// Records one idle time and recomputes the windows (adaptive policy).
    pub fn record(&mut self, idle: Duration, grace: Duration, cfg: &AdaptiveConfig) {
        self.add(idle);
        self.windows = self
            .compute(cfg)
            .filter(|w| self.beats_fixed(w, grace, cfg.max_idle_ratio));
    }

    /// Records one idle time that ended a stretch of `requests` requests,
    /// and recomputes the windows (learned policy).
    pub fn record_learned(
        &mut self,
        idle: Duration,
        requests: u32,
        grace: Duration,
        cfg: &LearnedConfig,
    ) {
        self.add(idle);
        self.requests = self.requests.saturating_add(requests.max(1));
        self.idle_secs = self
            .idle_secs
            .saturating_add(u32::try_from(idle.as_secs()).unwrap_or(u32::MAX));
        self.windows = Some(self.compute_learned(grace, cfg));
    }

    /// The windows that minimise expected cold starts (weighed per request
    /// when asked) plus `price` × expected idle replica-seconds over the
    /// next idle time, drawn from the recorded idle times and the prior.
    /// Candidates: keep for `k` bins, then optionally release and pre-warm
    /// for the bins `[a, b)`; every bin edge is tried (prefix sums make the
    /// search quadratic in [`BINS`], about 30,000 steps, once per idle time).
    fn compute_learned(&self, grace: Duration, cfg: &LearnedConfig) -> Windows {
        let n = f64::from(self.total);
        let w0 = cfg.prior_weight.max(0.0);
        if n + w0 <= 0.0 {
            return Windows {
                keep_first: grace,
                prewarm: grace,
                keep_until: grace,
            };
        }
        let (prior, _) = cfg.prior();
        let width = BIN_WIDTH.as_secs_f64();
        // cdf[j] = P(idle < j bins); pt[j] = E[idle; idle < j bins].
        let mut cdf = [0.0; BINS + 1];
        let mut pt = [0.0; BINS + 1];
        for i in 0..BINS {
            let p = (f64::from(self.bins[i]) + w0 * prior[i]) / (n + w0);
            cdf[i + 1] = cdf[i] + p;
            pt[i + 1] = pt[i] + p * (i as f64 + 0.5) * width;
        }
        let beyond = |j: usize| (1.0 - cdf[j]).max(0.0);
        let cold_weight = if cfg.rate_exponent == 0.0 {
            1.0 + cfg.base_weight
        } else {
            let hours = f64::from(self.idle_secs) / 3600.0;
            let rate = (f64::from(self.requests) + cfg.prior_requests_per_hour * cfg.prior_hours)
                / (hours + cfg.prior_hours);
            rate.max(0.01).powf(-cfg.rate_exponent) + cfg.base_weight
        };
        let price = cfg.price;
        let keep = |j: usize| {
            let edge = j as f64 * width;
            cold_weight * beyond(j) + price * (pt[j] + beyond(j) * edge)
        };
        let window = |a: usize, b: usize| {
            let start = a as f64 * width;
            let idle =
                (pt[b] - pt[a]) - (cdf[b] - cdf[a]) * start + beyond(b) * (b - a) as f64 * width;
            -cold_weight * (cdf[b] - cdf[a]) + price * idle
        };
        // best[a]: the cheapest window opening at a or later (none: 0).
        let mut best = [(0.0f64, BINS, BINS); BINS + 1];
        for a in (1..BINS).rev() {
            let mut here = (0.0, BINS, BINS);
            for b in a + 1..=BINS {
                let c = window(a, b);
                if c < here.0 {
                    here = (c, a, b);
                }
            }
            best[a] = if here.0 < best[a + 1].0 {
                here
            } else {
                best[a + 1]
            };
        }
        let (mut k, mut a, mut b, mut cost) = (0, BINS, BINS, f64::INFINITY);
        for (j, &(c, wa, wb)) in best.iter().enumerate() {
            let total = keep(j) + c;
            if total < cost {
                (k, a, b, cost) = (j, wa, wb, total);
            }
        }
        let at = |bins: usize| BIN_WIDTH * u32::try_from(bins).unwrap_or(u32::MAX);
        if a >= b || a == k {
            // No separate window (or one that continues the keep): keep through.
            let until = if a == k && a < b { at(b) } else { at(k) };
            return Windows {
                keep_first: until,
                prewarm: until,
                keep_until: until,
            };
        }
        Windows {
            keep_first: at(k),
            prewarm: at(a).saturating_sub(cfg.prewarm_lead).max(at(k)),
            keep_until: at(b),
        }
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
            KeepAlive::Adaptive => h
                .compute(adaptive)
                .filter(|w| h.beats_fixed(w, grace, adaptive.max_idle_ratio)),
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

    fn learned_after(gaps: &[Duration], requests: u32, cfg: &LearnedConfig) -> IdleHistogram {
        let mut h = IdleHistogram::learned(MIN * 10, cfg);
        for &g in gaps {
            h.record_learned(g, requests, MIN * 10, cfg);
        }
        h
    }

    #[test]
    fn learned_state_fits_in_half_a_kib() {
        assert!(std::mem::size_of::<IdleHistogram>() <= 600);
    }

    #[test]
    fn a_new_function_gets_windows_from_the_prior_alone() {
        let cfg = LearnedConfig::default();
        let w = IdleHistogram::learned(MIN * 10, &cfg).windows().unwrap();
        // Kept for a while after its first requests: not released at once,
        // not kept for hours.
        assert!(w.keep_first >= MIN * 2, "{w:?}");
        assert!(w.keep_until <= MIN * 120, "{w:?}");
        // Without a prior (the cost-aware baseline) the fixed grace period.
        let base = IdleHistogram::learned(MIN * 10, &LearnedConfig::baseline(1e-4));
        assert_eq!(base.windows().unwrap().keep_first, MIN * 10);
    }

    #[test]
    fn an_hourly_timer_is_prewarmed_after_two_periods() {
        let cfg = LearnedConfig::default();
        let hourly = MIN * 60 - Duration::from_secs(2);
        let h = learned_after(&[hourly, hourly], 1, &cfg);
        let w = h.windows().unwrap();
        assert!(
            w.keep_first <= MIN * 30,
            "released well before the next call: {w:?}"
        );
        assert!(w.prewarm > MIN * 50 && w.prewarm < hourly, "{w:?}");
        assert!(w.keep_until > hourly, "{w:?}");
        let at = |idle| last_replica(KeepAlive::Learned, MIN * 10, Some(&h), idle);
        assert_eq!(at(MIN * 45), LastReplica::Release);
        assert_eq!(at(hourly - Duration::from_secs(5)), LastReplica::PreWarm);
        assert_eq!(
            next_prewarm(KeepAlive::Learned, Some(&h), MIN * 45),
            Some(w.prewarm)
        );
        // The cost-aware baseline, from the same two idle times, has no prior
        // that says timers recur: it pre-warms too, but only because both
        // idle times agree; with one it keeps through or releases.
        let one = learned_after(&[hourly], 1, &LearnedConfig::baseline(1e-4));
        assert!(one.windows().is_some());
    }

    #[test]
    fn a_rarely_called_function_is_kept_longer_than_a_busy_one() {
        let cfg = LearnedConfig::default();
        let gaps: Vec<Duration> = [3u32, 7, 12, 20, 25, 35, 8, 15]
            .iter()
            .map(|&m| MIN * m)
            .collect();
        let rare = learned_after(&gaps, 1, &cfg).windows().unwrap();
        let busy = learned_after(&gaps, 500, &cfg).windows().unwrap();
        assert!(
            rare.keep_first > busy.keep_first,
            "rare {rare:?} busy {busy:?}"
        );
    }

    #[test]
    fn a_higher_price_never_keeps_longer() {
        let gaps: Vec<Duration> = [2u32, 4, 9, 14, 30, 45, 59, 59, 90]
            .iter()
            .map(|&m| MIN * m)
            .collect();
        let mut last = Duration::MAX;
        for price in [1e-5, 1e-4, 1e-3, 1e-2] {
            let cfg = LearnedConfig {
                price,
                ..LearnedConfig::default()
            };
            let w = learned_after(&gaps, 3, &cfg).windows().unwrap();
            assert!(w.keep_first <= last, "price {price}: {w:?}");
            last = w.keep_first;
        }
        assert!(last < MIN * 5, "an expensive idle minute releases soon");
    }

    #[test]
    fn the_price_schedule_keeps_the_defaults_and_moves_one_way() {
        let d = LearnedConfig::default();
        assert_eq!(LearnedConfig::at_price(d.price), d);
        assert_eq!(
            LearnedConfig::at_price(1e-5),
            LearnedConfig { price: 1e-5, ..d }
        );
        let mut last = LearnedConfig::at_price(1e-6);
        for i in 1..200 {
            let price = 1e-6 * 1.1f64.powi(i);
            let c = LearnedConfig::at_price(price);
            assert!(c.prior_weight <= last.prior_weight, "{price}: {c:?}");
            assert!(c.rate_exponent <= last.rate_exponent, "{price}: {c:?}");
            assert!(c.min_idle <= last.min_idle, "{price}: {c:?}");
            last = c;
        }
        let knot = LearnedConfig::at_price(5e-4);
        assert_eq!((knot.prior_weight, knot.rate_exponent), (4.0, 0.75));
        assert_eq!(LearnedConfig::at_price(7e-4).prior_weight, 0.0);
        assert_eq!(LearnedConfig::at_price(1e-3).min_idle, MIN);
        assert_eq!(LearnedConfig::at_price(1e-2).min_idle, MIN / 2);
        let between = LearnedConfig::at_price(1.4e-3).min_idle;
        assert!(between > MIN / 2 && between < MIN, "{between:?}");
    }

    #[test]
    fn the_baseline_follows_the_schedule_without_prior_or_weighting() {
        let b = LearnedConfig::baseline(3e-3);
        assert_eq!(b.min_idle, MIN / 2);
        assert_eq!(
            (b.prior_weight, b.rate_exponent, b.base_weight),
            (0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn a_first_idle_time_without_prior_keeps_the_grace_period() {
        let cfg = LearnedConfig::at_price(2e-3);
        let w = IdleHistogram::learned(MIN * 10, &cfg).windows().unwrap();
        assert_eq!(w.keep_first, MIN * 10);
        assert_eq!(w.keep_until, MIN * 10);
    }

    #[test]
    fn an_expensive_idle_minute_can_release_at_once() {
        // Idle times all beyond the histogram's range: keeping any time at
        // all buys no warm start.
        let cfg = LearnedConfig::at_price(2e-3);
        let w = learned_after(&[MIN * 600; 6], 6, &cfg).windows().unwrap();
        assert_eq!(w.keep_first, Duration::ZERO, "{w:?}");
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
