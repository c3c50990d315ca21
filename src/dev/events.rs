//! Asynchronous invocations and cron triggers in `flint dev`: the embedded
//! durable queue (kept across restarts in `--events-dir`), the delivery
//! worker that sends each invocation through the gateway's own data path (so
//! it wakes functions from zero and respects `concurrency`), and the cron
//! runner that fires `spec.schedules` through the same async path.

use std::path::Path;

use anyhow::Context;
use flint_api::Function;
use flint_operator::schedule::{CronRunner, HttpFire, ScheduleSet, SystemClock};
use flint_runtime::events::{self, Targets};
use flint_runtime::gateway::Gateway;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The running event machinery.
pub struct DevEvents {
    targets: Targets,
    schedules: ScheduleSet,
    tasks: Vec<JoinHandle<()>>,
}

impl DevEvents {
    /// Opens the store in `dir`, hooks the intake into `gateway` and starts
    /// the worker and the cron runner, which stop when `stop` turns true.
    pub fn start(
        dir: &Path,
        gateway: &Gateway,
        gateway_url: &str,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let local = events::local(
            dir,
            gateway_url,
            events::AddressPolicy::for_local_gateway(gateway.config().listen.ip()),
        )
        .with_context(|| format!("opening the async invocation store in {}", dir.display()))?;
        gateway.set_async_intake(local.intake);
        let (schedules, receiver) = ScheduleSet::new();
        let cron = CronRunner::new(
            local.store,
            HttpFire::new(gateway_url).with_token(Some(gateway.internal_token().clone())),
            SystemClock,
            receiver,
            Default::default(),
        );
        let tasks = vec![
            tokio::spawn(
                local
                    .worker
                    .with_memory_budget(gateway.memory_budget().clone())
                    .with_gateway_token(gateway.internal_token().clone())
                    .run(stop.clone()),
            ),
            tokio::spawn(cron.run(stop.clone())),
        ];
        Ok(Self {
            targets: local.targets,
            schedules,
            tasks,
        })
    }

    /// The Functions changed: their async settings and schedules follow.
    pub fn set_functions(&self, functions: &[Function]) {
        self.targets.set_functions(functions);
        self.schedules.set_functions(functions);
    }

    /// Waits for the worker and the cron runner to finish after the stop signal,
    /// so deliveries in flight are recorded before the functions stop.
    pub async fn finish(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
