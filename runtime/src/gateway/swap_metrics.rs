//! Metrics of the last routing-table swap: how many Functions the table
//! routes, how long the swap took and when it happened. `flint dev` reports
//! its swaps here (building the table from the manifests plus swapping it
//! in), so a benchmark reads the swap time from `/metrics` rather than from
//! a log line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, IntGauge, Registry};

use crate::metrics::{MetricsError, register};

/// Functions routed by the last swapped-in table.
pub const ROUTE_TABLE_FUNCTIONS: &str = "flint_route_table_functions";
/// Duration of the last routing-table swap, in seconds.
pub const ROUTE_SWAP_SECONDS: &str = "flint_route_swap_seconds";
/// Unix time of the last routing-table swap, in seconds.
pub const ROUTE_SWAP_TIMESTAMP_SECONDS: &str = "flint_route_swap_timestamp_seconds";

/// The last swap's gauges, in their own registry appended to `/metrics`.
#[derive(Clone)]
pub(crate) struct SwapMetrics {
    registry: Registry,
    functions: IntGauge,
    seconds: Gauge,
    timestamp: Gauge,
}

impl SwapMetrics {
    /// The gauges, registered in a fresh registry; all zero until a swap is
    /// recorded.
    pub(crate) fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        Ok(Self {
            functions: register(
                &registry,
                ROUTE_TABLE_FUNCTIONS,
                IntGauge::new(
                    ROUTE_TABLE_FUNCTIONS,
                    "Functions routed by the last routing table swapped in.",
                ),
            )?,
            seconds: register(
                &registry,
                ROUTE_SWAP_SECONDS,
                Gauge::new(
                    ROUTE_SWAP_SECONDS,
                    "Time the last routing-table swap took (building and swapping in), in seconds.",
                ),
            )?,
            timestamp: register(
                &registry,
                ROUTE_SWAP_TIMESTAMP_SECONDS,
                Gauge::new(
                    ROUTE_SWAP_TIMESTAMP_SECONDS,
                    "Unix time the last routing table was swapped in, in seconds.",
                ),
            )?,
            registry,
        })
    }

    /// Records a swap of a table routing `functions` Functions that took
    /// `took` and ended at `at`.
    pub(crate) fn record(&self, functions: usize, took: Duration, at: SystemTime) {
        self.functions
            .set(i64::try_from(functions).unwrap_or(i64::MAX));
        self.seconds.set(took.as_secs_f64());
        let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.timestamp.set(since_epoch.as_secs_f64());
    }

    /// The gauges in Prometheus text format.
    pub(crate) fn encode(&self) -> Result<String, MetricsError> {
        crate::metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_swap_is_exported() {
        let metrics = SwapMetrics::new().unwrap();
        metrics.record(
            3,
            Duration::from_micros(1500),
            UNIX_EPOCH + Duration::from_secs(7),
        );
        let text = metrics.encode().unwrap();
        assert!(text.contains("flint_route_table_functions 3\n"), "{text}");
        assert!(text.contains("flint_route_swap_seconds 0.0015\n"), "{text}");
        assert!(
            text.contains("flint_route_swap_timestamp_seconds 7\n"),
            "{text}"
        );
    }
}
