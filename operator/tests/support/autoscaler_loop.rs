//! The autoscaler loop as a task of a test: short intervals so that a test
//! sees several scrapes and decisions per second, and a stop that waits for
//! the loop to end (and fails the test if it panicked).

use std::time::Duration;

use flint_api::backend::ScaleActuator;
use flint_operator::autoscaler::source::MetricsSource;
use flint_operator::autoscaler::{Autoscaler, AutoscalerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Scrapes every 100 ms, decides every 200 ms; the rest as configured by
/// default.
pub fn config() -> AutoscalerConfig {
    AutoscalerConfig {
        scrape_interval: Duration::from_millis(100),
        decide_interval: Duration::from_millis(200),
        ..AutoscalerConfig::default()
    }
}

/// A running loop.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Runs `scaler` on the test's runtime until [`Running::stop`].
    pub fn spawn<A: ScaleActuator, S: MetricsSource + Sync>(scaler: Autoscaler<A, S>) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(scaler.run(async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    /// Asks the loop to stop and waits until it has.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
    }
}
