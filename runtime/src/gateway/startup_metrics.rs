//! Replica start-up times reported by the gateway's owner: `flint dev` runs
//! the replicas, measures each one's start-up (process start to ready) and
//! reports it here, so a benchmark reads it from `/metrics` rather than from
//! the printed `ready in … ms` line.

use std::time::Duration;

use flint_api::backend::RevisionKey;
use flint_api::metrics as names;
use prometheus::{GaugeVec, Opts, Registry};

use crate::metrics::{MetricsError, register};

/// Start-up of the revision's replica that became ready last (process start
/// to ready), in seconds.
pub const REPLICA_STARTUP_SECONDS: &str = "flint_replica_startup_seconds";

/// The start-up gauge, in its own registry appended to `/metrics`.
#[derive(Clone)]
pub(crate) struct StartupMetrics {
    registry: Registry,
    startup: GaugeVec,
}

impl StartupMetrics {
    /// The gauge, registered in a fresh registry; no revision until one is
    /// reported.
    pub(crate) fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let startup = register(
            &registry,
            REPLICA_STARTUP_SECONDS,
            GaugeVec::new(
                Opts::new(
                    REPLICA_STARTUP_SECONDS,
                    "Start-up of the revision's replica that became ready last (process start to ready), in seconds.",
                ),
                &[
                    names::LABEL_NAMESPACE,
                    names::LABEL_FUNCTION,
                    names::LABEL_REVISION,
                ],
            ),
        )?;
        Ok(Self { registry, startup })
    }

    /// Records that a replica of `revision` became ready `startup` after
    /// its process started.
    pub(crate) fn record(&self, revision: &RevisionKey, startup: Duration) {
        self.startup
            .with_label_values(&[
                revision.namespace.as_str(),
                revision.function.as_str(),
                revision.revision.as_str(),
            ])
            .set(startup.as_secs_f64());
    }

    /// Forgets `revision` (it was removed).
    pub(crate) fn forget(&self, revision: &RevisionKey) {
        let _ = self.startup.remove_label_values(&[
            revision.namespace.as_str(),
            revision.function.as_str(),
            revision.revision.as_str(),
        ]);
    }

    /// The gauge in Prometheus text format.
    pub(crate) fn encode(&self) -> Result<String, MetricsError> {
        crate::metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_startup_is_exported_until_forgotten() {
        let metrics = StartupMetrics::new().unwrap();
        let key = RevisionKey::new("default", "hello", "hello-00001");
        metrics.record(&key, Duration::from_millis(250));
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(r#"flint_replica_startup_seconds{function="hello",namespace="default",revision="hello-00001"} 0.25"#),
            "{text}"
        );
        metrics.forget(&key);
        assert!(!metrics.encode().unwrap().contains("hello-00001"));
    }
}
