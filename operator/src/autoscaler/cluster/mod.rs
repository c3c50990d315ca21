//! The autoscaler on a cluster: assembles it (the signal chosen by flag,
//! the actuator that drains gateways before a scale-down, the poke
//! endpoint) and keeps it in line with the cluster while it runs: which
//! revisions to scale and how each Function's async backlog reaches them,
//! read from the Functions (`functions.rs`), and which gateways to scrape
//! and drain, read from their Service's EndpointSlices (`gateways.rs`).
//! Runs only on the leader.

use std::net::SocketAddr;

use flint_api::backend::RevisionKey;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher};
use kube::{Api, Client};
use prometheus::Registry;
use tokio::sync::watch;

use super::drain::Drainer;
use super::kube_actuator::{DrainSetup, KubeActuator};
use super::source::prometheus::{PromQlConfig, PromQlSource};
use super::source::{MetricsSource, Pending, Readings, SourceError};
use super::{Autoscaler, AutoscalerConfig, AutoscalerError, poke_router};

mod functions;
mod gateways;

pub use functions::{backlog_route, persisted_learned, revisions_to_scale};
pub use gateways::gateway_urls;

use functions::follow_functions;
use gateways::{Discovered, follow_gateways};

/// Where the scaling signal comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalConfig {
    /// Scrape every ready gateway pod's `/metrics` each second.
    Direct,
    /// Query a Prometheus server that scrapes the gateways.
    Prometheus(PromQlConfig),
}

/// Where the gateway pods are: the ready endpoints of a Service, on their
/// admin port (scraped by the direct source, asked to drain before scale-downs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayDiscovery {
    /// Namespace of the gateway Service.
    pub namespace: String,
    /// Name of the Service whose EndpointSlices list the gateway pods.
    pub service: String,
    /// The gateways' admin port.
    pub port: u16,
}

/// Settings of the cluster autoscaler.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterAutoscalerConfig {
    /// The signal.
    pub signal: SignalConfig,
    /// The gateways.
    pub gateways: GatewayDiscovery,
    /// The control token: presented to the gateways' drain endpoint, and
    /// required of every poke. Without one, scale-downs remove pods without
    /// draining them first (the pods' preStop wait only) and every poke is
    /// refused (scale-from-zero waits for the next decision instead).
    pub control_token: Option<flint_api::drain::ControlToken>,
    /// Where the poke endpoint listens (only while leading).
    pub poke_addr: SocketAddr,
    /// The gateways' per-revision queue size (`--queue-size` of `flint
    /// gateway`): the most waiting requests a poke is believed.
    pub gateway_queue_size: u32,
    /// Price of an idle replica-second for `keepAlive: learned` (see
    /// [`super::keepalive::LearnedConfig::price`]).
    pub keep_alive_price: f64,
}

/// Why the cluster autoscaler could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The autoscaler itself could not be set up.
    #[error(transparent)]
    Autoscaler(#[from] AutoscalerError),
    /// The poke address could not be bound.
    #[error("binding the poke address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Either source, chosen by flag.
enum ClusterSource {
    Direct(Discovered),
    Prometheus(PromQlSource),
}

impl MetricsSource for ClusterSource {
    fn name(&self) -> &'static str {
        match self {
            Self::Direct(s) => s.name(),
            Self::Prometheus(s) => s.name(),
        }
    }

    async fn collect(&mut self, revisions: &[RevisionKey]) -> Result<Readings, SourceError> {
        match self {
            Self::Direct(s) => s.collect(revisions).await,
            Self::Prometheus(s) => s.collect(revisions).await,
        }
    }

    fn take_pending(&mut self) -> Option<Pending> {
        match self {
            Self::Direct(s) => s.take_pending(),
            Self::Prometheus(s) => s.take_pending(),
        }
    }
}

/// Runs the autoscaler until `halt` resolves: keeps its revision set in line
/// with the Functions, its gateway list in line with the EndpointSlices, and
/// serves the poke endpoint.
pub async fn run(
    client: Client,
    registry: &Registry,
    config: ClusterAutoscalerConfig,
    halt: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ClusterError> {
    let (halt_tx, halt_rx) = watch::channel(false);
    let (urls_tx, urls_rx) = watch::channel(Vec::new());
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &config.gateways.namespace);
    let selector = format!("kubernetes.io/service-name={}", config.gateways.service);
    tokio::spawn(until(
        halt_rx.clone(),
        follow_gateways(slices, selector, config.gateways.port, urls_tx),
    ));
    let source = match config.signal {
        SignalConfig::Direct => ClusterSource::Direct(Discovered::new(urls_rx.clone())),
        SignalConfig::Prometheus(cfg) => ClusterSource::Prometheus(PromQlSource::new(cfg)),
    };
    let drain = match config.control_token.clone() {
        Some(token) => Some(DrainSetup {
            drainer: Drainer::new(token),
            gateways: urls_rx,
        }),
        None => {
            tracing::warn!(
                "no control token: scale-downs will not drain replicas first, and every poke is refused"
            );
            None
        }
    };
    let autoscaler = Autoscaler::new(
        KubeActuator::new(client.clone(), drain),
        source,
        AutoscalerConfig {
            max_waiting: config.gateway_queue_size,
            decide: super::DecideConfig {
                learned: super::keepalive::LearnedConfig::at_price(config.keep_alive_price),
                ..super::DecideConfig::default()
            },
            ..AutoscalerConfig::default()
        },
        registry,
    )?;
    let handle = autoscaler.handle();
    let (functions, functions_writer) = reflector::store();
    tokio::spawn(until(
        halt_rx.clone(),
        follow_functions(Api::all(client.clone()), functions_writer, handle.clone()),
    ));
    tokio::spawn(until(
        halt_rx.clone(),
        super::status_writer::run(client, functions, handle.clone()),
    ));

    let listener = tokio::net::TcpListener::bind(config.poke_addr)
        .await
        .map_err(|source| ClusterError::Bind {
            addr: config.poke_addr,
            source,
        })?;
    let mut poke_halt = halt_rx.clone();
    tokio::spawn(async move {
        let router = poke_router(handle, config.control_token);
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = poke_halt.wait_for(|h| *h).await;
        });
        if let Err(error) = serve.await {
            tracing::warn!(%error, "poke endpoint stopped");
        }
    });
    tracing::info!(addr = %config.poke_addr, "autoscaler running; pokes accepted");
    autoscaler.run(halt).await;
    let _ = halt_tx.send(true);
    Ok(())
}

async fn until(mut halt: watch::Receiver<bool>, work: impl Future<Output = ()>) {
    tokio::select! {
        _ = halt.wait_for(|h| *h) => {}
        () = work => {}
    }
}

/// Whether, after `event`, the reflector's store holds what the API server
/// has: after a change, or once a (re)list is complete. During a relist the
/// store still holds the old state (it swaps at the end), so reading it on
/// the relist's own events would miss everything listed — a new leader
/// would see no gateway and no Function until something changed.
fn store_settled<K>(event: Result<watcher::Event<K>, watcher::Error>, what: &str) -> bool {
    match event {
        Err(error) => {
            tracing::warn!(%error, "watching {what} failed; retrying");
            false
        }
        Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => false,
        Ok(watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flint_api::Function;

    #[test]
    fn the_store_is_read_after_a_change_or_a_complete_list_only() {
        // During a (re)list the reflector still holds the previous state:
        // reading it then would miss every listed object.
        let settled = |e: watcher::Event<Function>| store_settled(Ok(e), "Functions");
        let f = || {
            Function::new(
                "f",
                serde_json::from_value(serde_json::json!({"image": "x"})).unwrap(),
            )
        };
        assert!(!settled(watcher::Event::Init));
        assert!(!settled(watcher::Event::InitApply(f())));
        assert!(settled(watcher::Event::InitDone));
        assert!(settled(watcher::Event::Apply(f())));
        assert!(settled(watcher::Event::Delete(f())));
    }
}
