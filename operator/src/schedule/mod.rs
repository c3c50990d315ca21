//! Cron triggers: each Function's `spec.schedules` fired as asynchronous
//! invocations, at most once per tick across any number of schedulers
//! (operator replicas, restarts, failovers), from the leader-elected
//! operator on a cluster and from `flint dev` locally.
//!
//! - [`plan`]: pure tick arithmetic (due tick, next tick, invocation id).
//! - [`runner::CronRunner`]: the loop; the clock is injected.
//! - [`fire::HttpFire`]: fires through the gateway's async intake.
//! - [`configmap::ConfigMapTicks`]: the cluster's tick store (a ConfigMap
//!   written with optimistic concurrency); `flint dev` uses its embedded
//!   store's ([`flint_api::backend::TickStore`]).

pub mod configmap;
pub mod fire;
pub mod plan;
pub mod runner;

use std::sync::Arc;

use flint_api::Function;
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::watch;

pub use configmap::ConfigMapTicks;
pub use fire::{Fire, FireError, HttpFire};
pub use runner::{Clock, CronRunner, RunnerConfig, Schedules, SystemClock, TokioClock};

/// Feeds a runner its schedules.
#[derive(Debug, Clone)]
pub struct ScheduleSet {
    tx: Arc<watch::Sender<Vec<Arc<plan::Entry>>>>,
}

impl ScheduleSet {
    /// A set, and the receiver to give to [`CronRunner::new`].
    pub fn new() -> (Self, Schedules) {
        let (tx, rx) = watch::channel(Vec::new());
        (Self { tx: Arc::new(tx) }, rx)
    }

    /// Replaces every schedule with those of `functions`.
    pub fn set_functions(&self, functions: &[Function]) {
        let entries = plan::entries(functions).into_iter().map(Arc::new).collect();
        self.tx.send_replace(entries);
    }
}

/// The cluster's scheduler, run by the leader only: follows every
/// Function's schedules, claims ticks in the ConfigMap of `namespace`, fires
/// through the gateway at `gateway.0` presenting the control token
/// `gateway.1`; ends when `stop` turns true.
pub async fn run_cluster(
    client: kube::Client,
    namespace: &str,
    gateway: (&str, Option<flint_api::drain::ControlToken>),
    registry: &prometheus::Registry,
    stop: watch::Receiver<bool>,
) {
    let (set, schedules) = ScheduleSet::new();
    let runner = CronRunner::new(
        ConfigMapTicks::new(client.clone(), namespace),
        HttpFire::new(gateway.0).with_token(gateway.1),
        SystemClock,
        schedules,
        RunnerConfig::default(),
    );
    let runner = match runner.with_metrics(registry) {
        Ok(r) => r,
        Err(err) => {
            tracing::error!(error = %err, "registering the schedule metrics failed; schedules not run");
            return;
        }
    };
    let api: kube::Api<Function> = kube::Api::all(client);
    let (reader, writer) = reflector::store();
    let mut events = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .boxed();
    let mut halt = stop.clone();
    let watch = async {
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => {
                    let functions: Vec<Function> =
                        reader.state().iter().map(|f| (**f).clone()).collect();
                    set.set_functions(&functions);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Function watch (schedules) failed; retrying")
                }
            }
        }
    };
    tracing::info!(gateway_url = %gateway.0, "running cron schedules");
    tokio::select! {
        () = runner.run(stop) => {}
        () = watch => {}
        _ = halt.wait_for(|s| *s) => {}
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
