//! The reconciler's Prometheus metrics: reconciles by result, errors by kind,
//! and reconcile duration; new revisions' image resolutions by outcome, and
//! the time registries took to answer.

use flint_api::metrics::{
    IMAGE_RESOLUTION_DURATION_SECONDS, IMAGE_RESOLUTIONS_TOTAL, RECONCILE_DURATION_SECONDS,
    RECONCILE_ERRORS_TOTAL, RECONCILES_TOTAL,
};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Handles to the reconciler's metrics, registered once at start-up.
#[derive(Clone, Debug)]
pub struct ReconcileMetrics {
    reconciles: IntCounterVec,
    errors: IntCounterVec,
    duration: Histogram,
    resolutions: IntCounterVec,
    resolution_duration: HistogramVec,
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
        let resolutions = IntCounterVec::new(
            Opts::new(
                IMAGE_RESOLUTIONS_TOTAL,
                "Images of new revisions, by outcome (resolved, as_written, failed).",
            ),
            &["outcome"],
        )?;
        let resolution_duration = HistogramVec::new(
            HistogramOpts::new(
                IMAGE_RESOLUTION_DURATION_SECONDS,
                "Time resolving a new revision's image took (pull Secrets read, registry asked), by outcome.",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["outcome"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(resolutions.clone()))?;
        registry.register(Box::new(resolution_duration.clone()))?;
        Ok(Self {
            reconciles,
            errors,
            duration,
            resolutions,
            resolution_duration,
        })
    }

    /// Records what became of a new revision's image: `outcome` is
    /// `resolved`, `as_written` or `failed`; `asked` is how long resolving
    /// took (pull Secrets read, registry asked), when it was tried.
    pub fn observe_image(&self, outcome: &'static str, asked: Option<f64>) {
        self.resolutions.with_label_values(&[outcome]).inc();
        if let Some(seconds) = asked {
            self.resolution_duration
                .with_label_values(&[outcome])
                .observe(seconds);
        }
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
        m.observe_image("resolved", Some(0.2));
        m.observe_image("as_written", None);
        m.observe_image("failed", Some(5.0));
        for outcome in ["resolved", "as_written", "failed"] {
            assert_eq!(m.resolutions.with_label_values(&[outcome]).get(), 1);
        }
        let asked = |o: &str| {
            m.resolution_duration
                .with_label_values(&[o])
                .get_sample_count()
        };
        assert_eq!(
            (asked("resolved"), asked("as_written"), asked("failed")),
            (1, 0, 1)
        );
        assert!(
            ReconcileMetrics::register(&registry).is_err(),
            "double registration"
        );
    }
}
