//! Aggregating per-function results into a policy's report, and printing
//! reports as a table or JSON.

use serde::Serialize;

use super::engine::FunctionStats;

/// One policy's results over a whole trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    /// Policy name and setting, e.g. `fixed-10m`.
    pub policy: String,
    /// Functions replayed.
    pub functions: usize,
    /// Requests replayed.
    pub requests: u64,
    /// Median over functions of the percentage of cold-start requests.
    pub cold_start_p50_pct: f64,
    /// 75th percentile over functions of the percentage of cold-start requests.
    pub cold_start_p75_pct: f64,
    /// Cold-start requests over all requests, in percent.
    pub cold_start_rate_pct: f64,
    /// Replica-seconds not serving a request, over all functions.
    pub idle_replica_seconds: f64,
    /// `idle_replica_seconds` divided by that of fixed 10-minute keep-alive.
    pub idle_vs_fixed_10m: f64,
    /// Mean time a request waited for a replica, in milliseconds.
    pub mean_queueing_delay_ms: f64,
    /// Scale writes over all functions.
    pub scale_writes: u64,
}

/// The `pct` percentile (nearest rank) of `values`.
pub fn percentile(values: &mut [f64], pct: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = (pct / 100.0 * values.len() as f64).ceil().max(1.0) as usize;
    values[rank.min(values.len()) - 1]
}

/// Builds a policy's report; `idle_vs_fixed_10m` is filled in by the caller.
pub fn aggregate(policy: &str, per_function: &[FunctionStats]) -> PolicyReport {
    let mut pcts: Vec<f64> = per_function
        .iter()
        .map(FunctionStats::cold_start_pct)
        .collect();
    let requests: u64 = per_function.iter().map(|s| s.requests).sum();
    let cold: u64 = per_function.iter().map(|s| s.cold_starts).sum();
    let wait: f64 = per_function.iter().map(|s| s.wait_ms).sum();
    let ratio = |x: f64| {
        if requests == 0 {
            0.0
        } else {
            x / requests as f64
        }
    };
    PolicyReport {
        policy: policy.to_owned(),
        functions: per_function.len(),
        requests,
        cold_start_p50_pct: percentile(&mut pcts, 50.0),
        cold_start_p75_pct: percentile(&mut pcts, 75.0),
        cold_start_rate_pct: ratio(cold as f64 * 100.0),
        idle_replica_seconds: per_function.iter().map(|s| s.idle_replica_seconds).sum(),
        idle_vs_fixed_10m: 0.0,
        mean_queueing_delay_ms: ratio(wait),
        scale_writes: per_function.iter().map(|s| s.scale_writes).sum(),
    }
}

/// The reports as an aligned text table.
pub fn table(reports: &[PolicyReport]) -> String {
    let mut out = format!(
        "{:<16} {:>9} {:>9} {:>9} {:>14} {:>9} {:>10}\n",
        "policy", "cold p50%", "cold p75%", "cold all%", "idle replica-s", "idle/10m", "queue ms"
    );
    for r in reports {
        out.push_str(&format!(
            "{:<16} {:>9.2} {:>9.2} {:>9.3} {:>14.0} {:>9.3} {:>10.3}\n",
            r.policy,
            r.cold_start_p50_pct,
            r.cold_start_p75_pct,
            r.cold_start_rate_pct,
            r.idle_replica_seconds,
            r.idle_vs_fixed_10m,
            r.mean_queueing_delay_ms
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&mut v, 50.0), 2.0);
        assert_eq!(percentile(&mut v, 75.0), 3.0);
        assert_eq!(percentile(&mut v, 100.0), 4.0);
        assert_eq!(percentile(&mut [], 75.0), 0.0);
    }

    #[test]
    fn aggregates_rates_over_requests() {
        let stats = [
            FunctionStats {
                requests: 10,
                cold_starts: 5,
                wait_ms: 1000.0,
                idle_replica_seconds: 60.0,
                scale_writes: 2,
            },
            FunctionStats {
                requests: 90,
                cold_starts: 0,
                wait_ms: 0.0,
                idle_replica_seconds: 40.0,
                scale_writes: 1,
            },
        ];
        let r = aggregate("x", &stats);
        assert_eq!(r.cold_start_rate_pct, 5.0);
        assert_eq!(r.cold_start_p75_pct, 50.0);
        assert_eq!(r.cold_start_p50_pct, 0.0);
        assert_eq!(r.mean_queueing_delay_ms, 10.0);
        assert_eq!(r.idle_replica_seconds, 100.0);
        assert_eq!(r.scale_writes, 3);
    }
}
