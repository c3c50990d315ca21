//! Pure decisions of the delivery worker: what an attempt's outcome means,
//! how long to back off, and whether to try again or give up. No clock, no
//! randomness inside: both are arguments, so every rule is table-tested.

use std::time::Duration;

/// What came back from one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The gateway answered with this status.
    Status(u16),
    /// No answer within the deadline.
    TimedOut,
    /// The connection failed (refused, reset, closed early).
    ConnectionFailed,
}

/// What an attempt means for the invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The function handled it (2xx, 3xx).
    Delivered,
    /// A transient failure (connection, timeout, 408, 429, 5xx): try again.
    Transient,
    /// The function refused it for good with this 4xx status: retrying cannot help.
    Rejected(u16),
}

/// Classifies one attempt.
pub fn classify(attempt: Attempt) -> Verdict {
    match attempt {
        Attempt::Status(code) if (200..400).contains(&code) => Verdict::Delivered,
        Attempt::Status(408 | 429) => Verdict::Transient,
        Attempt::Status(code) if (400..500).contains(&code) => Verdict::Rejected(code),
        Attempt::Status(_) | Attempt::TimedOut | Attempt::ConnectionFailed => Verdict::Transient,
    }
}

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry, before jitter.
    pub base: Duration,
    /// Longest delay, before jitter.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

/// Delay before retry number `retry` (1 for the first): `base · 2^(retry-1)`
/// capped at `cap`, then jittered into its upper half by `jitter` ∈ [0, 1)
/// ("equal jitter": retries of a burst spread out, none comes sooner than
/// half the nominal delay).
pub fn backoff(b: Backoff, retry: u32, jitter: f64) -> Duration {
    let exp = retry.saturating_sub(1).min(30);
    let nominal = b.base.saturating_mul(1u32 << exp).min(b.cap);
    let half = nominal / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Why an invocation is given up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GiveUp {
    /// `maxRetries` retries were made and the last attempt failed too.
    #[error("gave up after {attempts} attempts")]
    MaxRetries {
        /// Attempts made.
        attempts: u32,
    },
    /// Its age would pass `maxAge` before the next attempt.
    #[error("older than maxAge ({age_seconds}s old)")]
    MaxAge {
        /// Age in whole seconds when given up.
        age_seconds: u64,
    },
    /// The function refused it with a 4xx.
    #[error("the function refused it with status {status}")]
    Rejected {
        /// The status.
        status: u16,
    },
}

impl GiveUp {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::MaxRetries { .. } => "max_retries",
            Self::MaxAge { .. } => "max_age",
            Self::Rejected { .. } => "rejected",
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Settle as delivered.
    Complete,
    /// Redeliver after the delay.
    Retry(Duration),
    /// Dead-letter it.
    DeadLetter(GiveUp),
}

/// The invocation's limits (from `spec.async`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Oldest an invocation may get.
    pub max_age: Duration,
}

/// Decides what follows attempt number `attempt` (from 1) of an invocation
/// `age` old, whose outcome was `verdict`; `delay` is the backoff the next
/// retry would wait.
pub fn next(
    verdict: Verdict,
    attempt: u32,
    age: Duration,
    limits: Limits,
    delay: Duration,
) -> Next {
    match verdict {
        Verdict::Delivered => Next::Complete,
        Verdict::Rejected(status) => Next::DeadLetter(GiveUp::Rejected { status }),
        Verdict::Transient if attempt > limits.max_retries => {
            Next::DeadLetter(GiveUp::MaxRetries { attempts: attempt })
        }
        Verdict::Transient if age + delay > limits.max_age => Next::DeadLetter(GiveUp::MaxAge {
            age_seconds: age.as_secs(),
        }),
        Verdict::Transient => Next::Retry(delay),
    }
}

/// Whether an invocation `age` old may still be attempted.
pub fn expired(age: Duration, limits: Limits) -> bool {
    age > limits.max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        use Attempt::*;
        use Verdict::*;
        for (attempt, verdict) in [
            (Status(200), Delivered),
            (Status(204), Delivered),
            (Status(302), Delivered),
            (Status(400), Rejected(400)),
            (Status(404), Rejected(404)),
            (Status(408), Transient),
            (Status(429), Transient),
            (Status(500), Transient),
            (Status(502), Transient),
            (Status(503), Transient),
            (Status(504), Transient),
            (TimedOut, Transient),
            (ConnectionFailed, Transient),
        ] {
            assert_eq!(classify(attempt), verdict, "{attempt:?}");
        }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_into_the_upper_half() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for (retry, jitter, ms) in [
            (1, 0.0, 50),
            (1, 0.999_999, 99),
            (2, 0.0, 100),
            (3, 0.5, 300),
            (4, 0.0, 400),
            (5, 0.0, 500),
            (40, 0.0, 500),
            (40, 1.0, 1000),
        ] {
            assert_eq!(
                backoff(b, retry, jitter).as_millis(),
                ms,
                "retry {retry} jitter {jitter}"
            );
        }
    }

    #[test]
    fn next_steps() {
        let limits = Limits {
            max_retries: 2,
            max_age: Duration::from_secs(60),
        };
        let s = Duration::from_secs;
        for (verdict, attempt, age, delay, want) in [
            (Verdict::Delivered, 3, s(100), s(1), Next::Complete),
            (Verdict::Transient, 1, s(0), s(1), Next::Retry(s(1))),
            (Verdict::Transient, 2, s(10), s(2), Next::Retry(s(2))),
            (
                Verdict::Transient,
                3,
                s(10),
                s(4),
                Next::DeadLetter(GiveUp::MaxRetries { attempts: 3 }),
            ),
            (
                Verdict::Transient,
                1,
                s(59),
                s(2),
                Next::DeadLetter(GiveUp::MaxAge { age_seconds: 59 }),
            ),
            (Verdict::Transient, 1, s(58), s(2), Next::Retry(s(2))),
            (
                Verdict::Rejected(422),
                1,
                s(0),
                s(1),
                Next::DeadLetter(GiveUp::Rejected { status: 422 }),
            ),
        ] {
            assert_eq!(
                next(verdict, attempt, age, limits, delay),
                want,
                "{verdict:?} #{attempt}"
            );
        }
        assert!(expired(s(61), limits));
        assert!(!expired(s(60), limits));
    }
}
