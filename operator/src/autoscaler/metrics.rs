//! The autoscaler's own Prometheus metrics, registered in a registry the
//! binary serves on its admin `/metrics`.

use flint_api::metrics as names;
use prometheus::{CounterVec, GaugeVec, Histogram, HistogramOpts, Opts, Registry};

/// Handles of the autoscaler's metrics.
#[derive(Clone, Debug)]
pub struct AutoscalerMetrics {
    /// Replicas wanted, per revision.
    pub desired: GaugeVec,
    /// Ready replicas, per revision.
    pub actual: GaugeVec,
    /// 1 while in panic mode, per revision.
    pub panic: GaugeVec,
    /// Pending asynchronous invocations per Function, as last read.
    pub backlog: GaugeVec,
    /// Decisions, by reason.
    pub decisions: CounterVec,
    /// Failures to read the signal, by source and kind.
    pub source_errors: CounterVec,
    /// Time one `decide()` takes.
    pub decision_latency: Histogram,
}

const REV: [&str; 3] = [
    names::LABEL_NAMESPACE,
    names::LABEL_FUNCTION,
    names::LABEL_REVISION,
];

impl AutoscalerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            desired: GaugeVec::new(
                Opts::new(names::DESIRED_REPLICAS, "Replicas the autoscaler wants."),
                &REV,
            )?,
            actual: GaugeVec::new(
                Opts::new(names::ACTUAL_REPLICAS, "Replicas ready to serve."),
                &REV,
            )?,
            panic: GaugeVec::new(
                Opts::new(names::PANIC_MODE, "1 while the revision is in panic mode."),
                &REV,
            )?,
            backlog: GaugeVec::new(
                Opts::new(
                    names::AUTOSCALER_BACKLOG,
                    "Pending asynchronous invocations per Function, the backlog input of the decisions.",
                ),
                &[names::LABEL_NAMESPACE, names::LABEL_FUNCTION],
            )?,
            decisions: CounterVec::new(
                Opts::new(names::DECISIONS_TOTAL, "Autoscaler decisions, by reason."),
                &[names::LABEL_REASON],
            )?,
            source_errors: CounterVec::new(
                Opts::new(
                    names::METRICS_SOURCE_ERRORS_TOTAL,
                    "Failures to read the scaling signal, by source and kind.",
                ),
                &["source", "kind"],
            )?,
            decision_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "flint_autoscaler_decision_duration_seconds",
                    "Time one scaling decision takes.",
                )
                .buckets(vec![1e-7, 2.5e-7, 5e-7, 1e-6, 2e-6, 5e-6, 1e-5, 1e-4]),
            )?,
        };
        registry.register(Box::new(m.desired.clone()))?;
        registry.register(Box::new(m.actual.clone()))?;
        registry.register(Box::new(m.panic.clone()))?;
        registry.register(Box::new(m.backlog.clone()))?;
        registry.register(Box::new(m.decisions.clone()))?;
        registry.register(Box::new(m.source_errors.clone()))?;
        registry.register(Box::new(m.decision_latency.clone()))?;
        Ok(m)
    }

    /// Drops the per-revision series of a revision no longer tracked.
    pub fn forget(&self, key: &flint_api::backend::RevisionKey) {
        let labels = [
            key.namespace.as_str(),
            key.function.as_str(),
            key.revision.as_str(),
        ];
        let _ = self.desired.remove_label_values(&labels);
        let _ = self.actual.remove_label_values(&labels);
        let _ = self.panic.remove_label_values(&labels);
    }
}
