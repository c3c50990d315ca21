//! When an idle revision's series leave `/metrics`, and when they come back.
//!
//! The rule is one fixed grace, the same for every scraper: a revision's
//! per-revision series are exported while it has had a change (a request
//! started or finished, a queue or cold-start event) or something in
//! flight or queued within the last [`IDLE_SERIES_GRACE`], and not after.
//! A scraper that scrapes more often than the grace therefore sees every
//! final value — the counters at their last total, the in-flight and
//! queue gauges at zero — before the series go, whoever else scrapes: no
//! scraper's visit hides anything from another (per-scraper bookkeeping
//! would need to know every scraper; a clock needs to know none).
//!
//! A new revision's creation counts as a change: its series are shown at
//! zero for the grace, so scrapers hold a zero before its first request.
//!
//! The counters themselves are never reset while the gateway lives: a
//! revision that gets traffic again exports its counters continuing from
//! where they were, so `rate()` and `increase()` see no reset, and the
//! autoscaler's direct source, which keeps the last totals it read, reads
//! the increase since then.
//!
//! Pure: the caller passes the clock.

use std::time::{Duration, Instant};

/// How long a revision's series stay exported after its last change: five
/// minutes, ten scrapes at Prometheus' usual 30 s and three hundred of the
/// autoscaler's direct source.
pub const IDLE_SERIES_GRACE: Duration = Duration::from_secs(300);

/// One revision's export state: when it last changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expiry {
    last_change: Option<Instant>,
    /// Whether the last scrape found requests in flight or queued: such a
    /// revision stays shown however long they last.
    busy: bool,
}

impl Expiry {
    /// A revision that has not changed yet: nothing to export.
    pub fn new() -> Self {
        Self::default()
    }

    /// A revision created at `now`: its creation counts as a change, so
    /// its series are exported at zero for a grace. A scraper then holds
    /// each counter at 0 before the first request, and `increase()` counts
    /// that request (and its cold start): a counter first seen at 1 shows
    /// no increase.
    pub fn created(now: Instant) -> Self {
        Self {
            last_change: Some(now),
            busy: false,
        }
    }

    /// Whether the series are exported at `now` without a new change: busy
    /// at the last scrape, or changed within the grace.
    pub fn shown(&self, now: Instant, grace: Duration) -> bool {
        self.busy
            || self
                .last_change
                .is_some_and(|at| now.saturating_duration_since(at) < grace)
    }

    /// A scrape at `now`: `changed` when anything was counted since the
    /// previous scrape, `busy` while requests are in flight or queued.
    /// Returns whether the series are exported in this scrape.
    pub fn observe(&mut self, now: Instant, changed: bool, busy: bool, grace: Duration) -> bool {
        if changed || busy {
            self.last_change = Some(self.last_change.map_or(now, |at| at.max(now)));
        }
        self.busy = busy;
        self.shown(now, grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a scrape sees in a step of the exhaustive walk.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Step {
        Quiet,
        Changed,
        Busy,
    }

    const STEPS: [Step; 3] = [Step::Quiet, Step::Changed, Step::Busy];

    /// Every sequence of `len` scrape steps, one second apart.
    fn sequences(len: u32) -> impl Iterator<Item = Vec<Step>> {
        (0..3usize.pow(len)).map(move |mut n| {
            (0..len)
                .map(|_| {
                    let s = STEPS[n % 3];
                    n /= 3;
                    s
                })
                .collect()
        })
    }

    #[test]
    fn exported_exactly_while_a_change_is_within_the_grace() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(3);
        for steps in sequences(8) {
            let mut expiry = Expiry::new();
            let mut last: Option<usize> = None;
            for (i, step) in steps.iter().enumerate() {
                let now = t0 + Duration::from_secs(i as u64);
                let shown = expiry.observe(now, *step == Step::Changed, *step == Step::Busy, grace);
                if *step != Step::Quiet {
                    last = Some(i);
                }
                let expected = last.is_some_and(|l| i - l < 3);
                assert_eq!(shown, expected, "{steps:?} at {i}");
                assert_eq!(expiry.shown(now, grace), expected);
            }
        }
    }

    #[test]
    fn a_scraper_faster_than_the_grace_sees_the_final_value_whoever_else_scrapes() {
        // Two scrapers interleaved: A every 2 s, B every 3 s, both faster
        // than the 5 s grace. Whatever the changes, after each change
        // (the final value) both scrape at least once while it is shown.
        let t0 = Instant::now();
        let grace = Duration::from_secs(5);
        for steps in sequences(7) {
            let mut expiry = Expiry::new();
            let mut pending: Vec<(u64, bool, bool)> = Vec::new();
            let mut changed_since = false;
            for second in 0..20u64 {
                let step = steps.get(second as usize).copied().unwrap_or(Step::Quiet);
                if step != Step::Quiet {
                    changed_since = true;
                    pending.push((second, false, false));
                }
                for (scraper, every) in [(0, 2), (1, 3)] {
                    if second % every != 0 {
                        continue;
                    }
                    let now = t0 + Duration::from_secs(second);
                    let shown = expiry.observe(
                        now,
                        std::mem::take(&mut changed_since),
                        step == Step::Busy,
                        grace,
                    );
                    if shown {
                        for p in &mut pending {
                            if scraper == 0 {
                                p.1 = true;
                            } else {
                                p.2 = true;
                            }
                        }
                    }
                }
            }
            for (at, a, b) in pending {
                assert!(a && b, "{steps:?}: change at {at} seen by A {a}, B {b}");
            }
        }
    }

    #[test]
    fn comes_back_on_the_first_change_after_expiring() {
        let t0 = Instant::now();
        let grace = IDLE_SERIES_GRACE;
        let mut expiry = Expiry::new();
        assert!(!expiry.observe(t0, false, false, grace));
        assert!(expiry.observe(t0, true, false, grace));
        // Created: shown at zero for the grace, then not.
        let mut created = Expiry::created(t0);
        assert!(created.observe(t0 + grace / 2, false, false, grace));
        assert!(!created.observe(t0 + grace, false, false, grace));
        let later = t0 + grace;
        assert!(!expiry.observe(later, false, false, grace));
        assert!(expiry.observe(later + Duration::from_secs(3600), true, false, grace));
        // A clock read out of order never moves the last change back.
        assert!(expiry.observe(t0, true, false, grace));
        assert!(expiry.shown(later + Duration::from_secs(3601), grace));
    }
}
