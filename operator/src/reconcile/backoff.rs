//! Per-Function retry delays after failed reconciles: exponential, capped.

use std::time::Duration;

/// Delay before the first retry.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest delay between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The delay before retry number `attempt` (1 for the first failure):
/// 1s, 2s, 4s, ... up to 5 minutes.
pub fn backoff_delay(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let secs: Vec<u64> = [0, 1, 2, 3, 4, 8, 9, 10, 1000, u32::MAX]
            .into_iter()
            .map(|a| backoff_delay(a).as_secs())
            .collect();
        assert_eq!(secs, [1, 1, 2, 4, 8, 128, 256, 300, 300, 300]);
    }
}
