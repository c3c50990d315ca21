//! The time integral of an in-flight count: the exact concurrency-seconds
//! behind `flint_request_concurrency_seconds_total`, advanced at each
//! change of the count and at each scrape. Pure: the caller passes the
//! clock.

use std::time::Instant;

/// The time integral of an in-flight count, advanced at each change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Integral {
    in_flight: u64,
    last: Instant,
}

impl Integral {
    /// Nothing in flight as of `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            in_flight: 0,
            last: now,
        }
    }

    /// Moves the clock to `now` and returns the concurrency-seconds accrued
    /// since the last call. A clock that went backwards accrues nothing.
    pub fn advance(&mut self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        self.in_flight as f64 * elapsed.as_secs_f64()
    }

    /// Advances to `now`, then adds `delta` (±1) to the in-flight count.
    pub fn change(&mut self, now: Instant, delta: i64) -> f64 {
        let accrued = self.advance(now);
        self.in_flight = self.in_flight.saturating_add_signed(delta);
        accrued
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn integral_is_exact_area_under_in_flight() {
        let t0 = Instant::now();
        let mut integral = Integral::new(t0);
        // (time ms, delta, expected accrual in seconds before applying delta)
        let steps: [(u64, i64, f64); 6] = [
            (0, 1, 0.0),
            (1000, 1, 1.0),  // one request for 1 s
            (1500, 1, 1.0),  // two requests for 0.5 s
            (2500, -1, 3.0), // three requests for 1 s
            (4500, -1, 4.0), // two requests for 2 s
            (5000, -1, 0.5), // one request for 0.5 s
        ];
        let mut total = 0.0;
        for (ms, delta, expected) in steps {
            let accrued = integral.change(at(t0, ms), delta);
            assert!((accrued - expected).abs() < 1e-9, "at {ms}: {accrued}");
            total += accrued;
        }
        assert_eq!(integral.in_flight(), 0);
        assert!((total - 9.5).abs() < 1e-9);
        assert_eq!(integral.advance(at(t0, 9000)), 0.0);
    }

    #[test]
    fn flushing_mid_request_splits_without_losing_time() {
        let t0 = Instant::now();
        let mut integral = Integral::new(t0);
        integral.change(t0, 2);
        let first = integral.advance(at(t0, 250));
        let second = integral.change(at(t0, 1000), -2);
        assert!((first - 0.5).abs() < 1e-9);
        assert!((second - 1.5).abs() < 1e-9);
    }

    #[test]
    fn clock_going_backwards_accrues_nothing() {
        let t0 = Instant::now();
        let mut integral = Integral::new(at(t0, 1000));
        integral.change(at(t0, 1000), 1);
        assert_eq!(integral.advance(t0), 0.0);
        assert!((integral.advance(at(t0, 2000)) - 1.0).abs() < 1e-9);
    }
}
