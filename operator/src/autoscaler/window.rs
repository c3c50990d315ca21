//! The sample window: per-second observations of a revision's load, newest
//! last, that `decide()` averages over its stable and panic windows.
//!
//! Times are offsets from the autoscaler's own epoch (a monotonic clock in
//! production, simulated time in `flint sim`), so the window and `decide()`
//! never read a clock themselves.

use std::collections::VecDeque;
use std::time::Duration;

use flint_api::ScaleMetric;

/// One observation of a revision's load over the interval ending at `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// End of the observed interval (time since the autoscaler's epoch).
    pub at: Duration,
    /// Average requests in flight over the interval, summed over gateways.
    pub concurrency: f64,
    /// Requests per second over the interval, summed over gateways.
    pub rps: f64,
}

impl Sample {
    /// Whether any request was seen in the interval.
    pub fn is_active(&self) -> bool {
        self.concurrency > 0.0 || self.rps > 0.0
    }

    /// The value of `metric` in this sample.
    pub fn value(&self, metric: ScaleMetric) -> f64 {
        match metric {
            ScaleMetric::Concurrency => self.concurrency,
            ScaleMetric::Rps => self.rps,
        }
    }
}

/// The recent samples of one revision, bounded by a time span.
#[derive(Debug, Clone)]
pub struct Window {
    samples: VecDeque<Sample>,
    span: Duration,
}

impl Window {
    /// A window that keeps the samples of the last `span` (the stable window).
    pub fn new(span: Duration) -> Self {
        // Not reserved ahead: most revisions of a large cluster are at
        // zero and never hold a sample; an active one grows to its span.
        Self {
            samples: VecDeque::new(),
            span,
        }
    }

    /// The span of time the window keeps.
    pub fn span(&self) -> Duration {
        self.span
    }

    /// Changes the kept span (when a revision's stable window changes).
    pub fn set_span(&mut self, span: Duration) {
        self.span = span;
        self.evict();
    }

    /// Adds a sample. Samples not newer than the newest one are ignored, so a
    /// late or repeated scrape cannot reorder the window.
    pub fn push(&mut self, sample: Sample) {
        if self.samples.back().is_some_and(|last| sample.at <= last.at) {
            return;
        }
        self.samples.push_back(sample);
        self.evict();
    }

    fn evict(&mut self) {
        let Some(newest) = self.samples.back().map(|s| s.at) else {
            return;
        };
        let oldest_kept = newest.saturating_sub(self.span);
        while self.samples.front().is_some_and(|s| s.at <= oldest_kept) {
            self.samples.pop_front();
        }
    }

    /// Forgets every sample.
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the window holds no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Sample> {
        self.samples.iter()
    }

    /// Average of `metric` over the samples in `(now - over, now]`; `None`
    /// when there is none (missing seconds are left out, not read as zero).
    pub fn average(&self, metric: ScaleMetric, now: Duration, over: Duration) -> Option<f64> {
        let from = now.saturating_sub(over);
        let mut sum = 0.0;
        let mut n = 0u32;
        for s in self.samples.iter().rev() {
            if s.at > now {
                continue;
            }
            if s.at <= from {
                break;
            }
            sum += s.value(metric);
            n += 1;
        }
        (n > 0).then(|| sum / f64::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: u64, c: f64) -> Sample {
        Sample {
            at: Duration::from_secs(at),
            concurrency: c,
            rps: c * 2.0,
        }
    }

    #[test]
    fn averages_only_the_asked_span_and_evicts_old_samples() {
        let mut w = Window::new(Duration::from_secs(10));
        for t in 1..=20 {
            w.push(s(t, t as f64));
        }
        assert_eq!(w.len(), 10);
        let now = Duration::from_secs(20);
        assert_eq!(
            w.average(ScaleMetric::Concurrency, now, Duration::from_secs(2)),
            Some(19.5)
        );
        assert_eq!(
            w.average(ScaleMetric::Rps, now, Duration::from_secs(10)),
            Some(31.0)
        );
        assert_eq!(
            w.average(
                ScaleMetric::Concurrency,
                Duration::from_secs(40),
                Duration::from_secs(5)
            ),
            None
        );
    }

    #[test]
    fn ignores_out_of_order_samples() {
        let mut w = Window::new(Duration::from_secs(10));
        w.push(s(5, 1.0));
        w.push(s(4, 9.0));
        w.push(s(5, 9.0));
        assert_eq!(w.len(), 1);
        assert_eq!(w.latest(), Some(&s(5, 1.0)));
    }
}
