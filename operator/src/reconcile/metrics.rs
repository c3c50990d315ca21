//! The reconciler's Prometheus metrics: reconciles by result, errors by kind,
//! and reconcile duration.

use flint_api::metrics::{RECONCILE_DURATION_SECONDS, RECONCILE_ERRORS_TOTAL, RECONCILES_TOTAL};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

/// Handles to the reconciler's metrics, registered once at start-up.
#[derive(Clone, Debug)]
pub struct ReconcileMetrics {
    reconciles: IntCounterVec,
    errors: IntCounterVec,
    duration: Histogram,
}

impl ReconcileMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let reconciles = IntCounterVec::new(
            Opts::new(
                RECONCILES_TOTAL,
                "Function reconciles, by result (ok or error).",
            ),
            &["result"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                RECONCILE_ERRORS_TOTAL,
                "Function reconcile errors, by kind.",
            ),
            &["error"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                RECONCILE_DURATION_SECONDS,
                "Duration of Function reconciles.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            reconciles,
            errors,
            duration,
        })
    }

    /// Records a finished reconcile that took `seconds`.
    pub fn observe(&self, seconds: f64, error: Option<&'static str>) {
        self.duration.observe(seconds);
        let result = if error.is_some() { "error" } else { "ok" };
        self.reconciles.with_label_values(&[result]).inc();
        if let Some(kind) = error {
            self.errors.with_label_values(&[kind]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_results_and_error_kinds() {
        let registry = Registry::new();
        let m = ReconcileMetrics::register(&registry).unwrap();
        m.observe(0.01, None);
        m.observe(0.02, Some("apply"));
        assert_eq!(m.reconciles.with_label_values(&["ok"]).get(), 1);
        assert_eq!(m.reconciles.with_label_values(&["error"]).get(), 1);
        assert_eq!(m.errors.with_label_values(&["apply"]).get(), 1);
        assert_eq!(m.duration.get_sample_count(), 2);
        assert!(
            ReconcileMetrics::register(&registry).is_err(),
            "double registration"
        );
    }
}
