//! `flint gateway --nats-url …`: the cluster gateway with asynchronous
//! invocations on NATS JetStream. Every gateway replica accepts and
//! delivers; JetStream shares the work among them and holds each Function
//! to its `maxInFlight`. The Functions' `async` settings come from a
//! Function watch of their own.

use std::sync::Arc;

use flint_api::Function;
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::watch;

use super::address::AddressPolicy;
use super::nats::NatsSettings;
use super::targets::Targets;
use super::{EventsError, WorkerConfig};
use crate::gateway::kube::{ClusterError, ClusterOptions};
use crate::gateway::{Gateway, HttpPokeSink};

/// Why the cluster gateway with events stopped.
#[derive(Debug, thiserror::Error)]
pub enum EventsClusterError {
    /// The gateway part failed.
    #[error(transparent)]
    Gateway(#[from] ClusterError),
    /// NATS could not be reached or set up.
    #[error(transparent)]
    Events(#[from] EventsError),
}

/// Keeps `targets` equal to the Functions in `namespace` (all when `None`).
pub async fn watch_functions(client: kube::Client, namespace: Option<String>, targets: Targets) {
    let api: kube::Api<Function> = match &namespace {
        Some(ns) => kube::Api::namespaced(client, ns),
        None => kube::Api::all(client),
    };
    let (reader, writer) = reflector::store();
    let mut events = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(_) => {
                let functions: Vec<Function> =
                    reader.state().iter().map(|f| (**f).clone()).collect();
                targets.set_functions(&functions);
            }
            Err(err) => {
                tracing::warn!(error = %err, "Function watch (async targets) failed; retrying")
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs the cluster gateway (as `run_cluster` does) plus the async intake,
/// the delivery worker (to this gateway's own listener) and the Function
/// watch that feeds them, until SIGTERM. The queue is on the NATS server of
/// `nats`; result callbacks reach only what `callbacks` allows.
pub async fn run_gateway(
    opts: ClusterOptions,
    nats: NatsSettings,
    callbacks: AddressPolicy,
) -> Result<(), EventsClusterError> {
    let listen = opts.gateway.listen;
    let ip = if listen.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        listen.ip()
    };
    let loopback = format!("http://{}", std::net::SocketAddr::new(ip, listen.port()));
    tracing::info!(allowed = %callbacks.describe_allowed(), cluster = %callbacks.describe_cluster(), "callback address policy");
    let mut config = WorkerConfig::default();
    config.callbacks.addresses = callbacks;
    let events = super::nats(&nats, &loopback, config).await?;
    let poke = Arc::new(HttpPokeSink::new(&opts.autoscaler_url).map_err(ClusterError::from)?);
    let gateway = Gateway::new(opts.gateway, poke).map_err(ClusterError::from)?;
    crate::gateway::kube::cluster::accept_control(&gateway, opts.control_token);
    gateway.set_async_intake(events.intake);
    let client = kube::Client::try_default()
        .await
        .map_err(ClusterError::Client)?;
    let data = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ClusterError::Bind {
            addr: listen,
            source,
        })?;
    let admin = tokio::net::TcpListener::bind(opts.admin_addr)
        .await
        .map_err(|source| ClusterError::Bind {
            addr: opts.admin_addr,
            source,
        })?;
    tracing::info!(%listen, admin = %opts.admin_addr, nats = %nats.url, "starting gateway with async invocations");
    let keyring =
        crate::gateway::kube::cluster::keyring_for(&gateway, opts.tls_default_secret.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = events
        .worker
        .with_memory_budget(gateway.memory_budget().clone())
        .with_gateway_token(gateway.internal_token().clone());
    let worker = tokio::spawn(worker.run(stop_rx));
    let watch_targets = tokio::spawn(watch_functions(
        client.clone(),
        opts.namespace.clone(),
        events.targets,
    ));
    let router = gateway.admin_router();
    let result = tokio::select! {
        r = gateway.serve(data, shutdown_signal()) => r.map_err(ClusterError::from),
        r = axum::serve(admin, router) => r.map_err(ClusterError::Admin),
        r = crate::gateway::kube::run(client, opts.namespace, gateway.clone(), keyring) => r.map_err(ClusterError::from),
    };
    let _ = stop_tx.send(true);
    watch_targets.abort();
    let _ = worker.await;
    Ok(result?)
}
