//! `flint operator`: the process a cluster runs. It serves the admin
//! endpoints, campaigns for the Lease, and — only while it leads — runs the
//! reconciler and the autoscaler. It exits cleanly on SIGTERM/Ctrl-C
//! (releasing the Lease) and with an error if it loses the Lease, so that a
//! restarted process campaigns afresh.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use kube::Client;
use kube::runtime::events::Reporter;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::autoscaler::cluster::{self as autoscaler, ClusterAutoscalerConfig};
use crate::leader::{LeaderConfig, LeaderElector, Leadership};
use crate::reconcile::controller::{Context, run_controller};
use crate::reconcile::metrics::ReconcileMetrics;
use crate::reconcile::pin::ImagePinning;
use crate::telemetry::serve_admin;

/// Name the operator reports Events under.
pub const CONTROLLER_NAME: &str = "flint-operator";

/// Settings of `flint operator`.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub admin_addr: SocketAddr,
    /// Cluster domain of Function hosts.
    pub domain: String,
    /// Leader election settings (the identity is also the Event reporter instance).
    pub leader: LeaderConfig,
    /// The autoscaler's signal source and poke address.
    pub autoscaler: ClusterAutoscalerConfig,
    /// Base URL of the gateway, where cron schedules are fired as async
    /// invocations; `None` runs no schedules.
    pub schedule_gateway_url: Option<String>,
    /// How new revisions' images are pinned to digests; `None` runs them
    /// as written.
    pub images: Option<ImagePinning>,
}

/// Why the operator stopped other than by a shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No Kubernetes client could be configured (no kubeconfig, no in-cluster service account).
    #[error("configuring the Kubernetes client")]
    Client(#[from] kube::Error),
    /// The metrics could not be registered.
    #[error("registering metrics")]
    Metrics(#[from] prometheus::Error),
    /// The admin address could not be bound.
    #[error("binding the admin address {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another replica took the Lease over; this one stopped acting.
    #[error("lost the leader lease {0:?}; exiting so that a fresh process campaigns again")]
    LostLeadership(String),
}

async fn wait_true(mut rx: watch::Receiver<bool>) {
    // A dropped sender also ends the wait: nobody is left to say "keep going".
    let _ = rx.wait_for(|v| *v).await;
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                warn!(error = %error, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the operator until a shutdown signal (Ok) or the loss of the Lease (Err).
pub async fn run(config: OperatorConfig) -> Result<(), RunError> {
    let client = Client::try_default().await?;
    let registry = Registry::new();
    let metrics = ReconcileMetrics::register(&registry)?;
    let ready = Arc::new(AtomicBool::new(false));

    // `stop`: a shutdown signal arrived. `halt`: leader-only work must end
    // (shutdown, or leadership lost).
    let (stop_tx, stop_rx) = watch::channel(false);
    let (halt_tx, halt_rx) = watch::channel(false);
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown signal received");
        let _ = stop_tx.send(true);
    });

    let listener = TcpListener::bind(config.admin_addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.admin_addr,
            source,
        })?;
    info!(addr = %config.admin_addr, "serving /metrics, /healthz, /readyz");
    let admin = tokio::spawn(serve_admin(
        listener,
        registry.clone(),
        ready.clone(),
        wait_true(stop_rx.clone()),
    ));

    let (lead_tx, mut lead_rx) = watch::channel(Leadership::Unknown);
    let identity = config.leader.identity.clone();
    let lease_name = config.leader.lease_name.clone();
    let elector = tokio::spawn(
        LeaderElector::new(client.clone(), config.leader.clone()).run(lead_tx, stop_rx.clone()),
    );

    // Wait for leadership (or shutdown while following).
    let mut stop_wait = stop_rx.clone();
    let leading = tokio::select! {
        led = lead_rx.wait_for(|l| {
            if *l != Leadership::Unknown {
                ready.store(true, Ordering::Release);
            }
            *l == Leadership::Leading
        }) => led.is_ok(),
        _ = stop_wait.wait_for(|s| *s) => false,
    };
    if leading {
        info!(identity = %identity, lease = %lease_name, "leading: starting the reconciler");
        let mut lost = lead_rx.clone();
        let mut stop_watch = stop_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = lost.wait_for(|l| *l != Leadership::Leading) => {}
                _ = stop_watch.wait_for(|s| *s) => {}
            }
            let _ = halt_tx.send(true);
        });

        let mut ctx = Context::new(
            client.clone(),
            Reporter {
                controller: CONTROLLER_NAME.to_owned(),
                instance: Some(identity.clone()),
            },
            metrics,
            config.domain.clone(),
        );
        if let Some(pinning) = config.images.clone() {
            info!(skip = %pinning.skip, "image tags of new revisions are resolved to digests");
            ctx = ctx.with_image_pinning(pinning);
        }
        let ctx = Arc::new(ctx);
        // Leader-only tasks, each ending when `halt_rx` turns true: the
        // reconciler, and the autoscaler (the only writer of replica counts).
        let scaler = {
            let (client, registry, config) =
                (client.clone(), registry.clone(), config.autoscaler.clone());
            let halt = wait_true(halt_rx.clone());
            async move {
                if let Err(error) = autoscaler::run(client, &registry, config, halt).await {
                    warn!(error = %error, "the autoscaler could not start; replica counts are left as they are");
                }
            }
        };
        let mut leader_tasks: Vec<BoxFuture<'static, ()>> = vec![
            Box::pin(run_controller(ctx, wait_true(halt_rx.clone()))),
            Box::pin(scaler),
        ];
        // Cron schedules: fired by the leader only, each tick claimed in a
        // ConfigMap so a failover never fires one twice.
        if let Some(url) = config.schedule_gateway_url.clone() {
            let (client, registry, ns, halt) = (
                client.clone(),
                registry.clone(),
                config.leader.namespace.clone(),
                halt_rx.clone(),
            );
            // Ticks present the control token, so that they reach
            // cluster-local Functions and those with spec.auth.
            let token = config.autoscaler.control_token.clone();
            leader_tasks.push(Box::pin(async move {
                crate::schedule::run_cluster(client, &ns, (&url, token), &registry, halt).await;
            }));
        }
        futures::future::join_all(leader_tasks).await;
    }

    let stopped = *stop_rx.borrow();
    if !stopped {
        // Lost the Lease: stop the elector and the admin server too.
        signals.abort();
    }
    // The elector and admin server end on `stop`; when the signal task was
    // aborted their senders dropped, which also ends their waits.
    let _ = elector.await;
    match admin.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => warn!(error = %error, "admin server failed"),
        Err(error) => warn!(error = %error, "admin server task failed"),
    }
    if stopped {
        info!("operator stopped");
        Ok(())
    } else {
        Err(RunError::LostLeadership(lease_name))
    }
}
