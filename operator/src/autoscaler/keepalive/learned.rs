//! The learned keep-alive policy (`keepAlive: learned`): reads the same
//! idle-time histogram as the adaptive policy, but chooses its windows by
//! cost instead of by percentile. After every idle time it picks, among
//! "keep for k minutes" and "keep for k, release, pre-warm from a until b",
//! the windows with the lowest expected cold starts plus a price per idle
//! replica-second, reading the function's idle times together with a
//! population prior and weighing each cold start by the function's request
//! rate. Its settings, and how they follow the price (the one knob), live
//! here too ([`LearnedConfig`], [`LearnedConfig::at_price`]); apart from the
//! adaptive policy because none of its tunables or its search are shared.

use std::time::Duration;

use super::{BIN_WIDTH, BINS, IdleHistogram, Windows};

/// Common timer periods (cron schedules), in minutes: the learned policy's
/// prior puts part of its mass at these idle times.
pub const TIMER_PERIODS_MINUTES: [usize; 5] = [5, 10, 15, 30, 60];

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
    /// adaptive policy's [`AdaptiveConfig::min_idle`](super::AdaptiveConfig::min_idle), lower at high
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

impl IdleHistogram {
    /// A histogram with no idle time yet, for the learned policy: its windows
    /// come from the prior alone (or the fixed `grace` without one).
    pub fn learned(grace: Duration, cfg: &LearnedConfig) -> Self {
        let mut h = Self::default();
        h.windows = Some(h.compute_learned(grace, cfg));
        h
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
    pub(super) fn compute_learned(&self, grace: Duration, cfg: &LearnedConfig) -> Windows {
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
}

#[cfg(test)]
mod tests {
    use super::super::{LastReplica, last_replica, next_prewarm};
    use super::*;
    use flint_api::KeepAlive;

    const MIN: Duration = Duration::from_secs(60);

    fn learned_after(gaps: &[Duration], requests: u32, cfg: &LearnedConfig) -> IdleHistogram {
        let mut h = IdleHistogram::learned(MIN * 10, cfg);
        for &g in gaps {
            h.record_learned(g, requests, MIN * 10, cfg);
        }
        h
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
}
