//! `flint gateway`: the gateway on a cluster, fed by the watches, poking the
//! operator's autoscaler over HTTP, with its admin endpoints on a second port.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::watch::{self, WatchError};
use crate::gateway::poke::PokeError;
use crate::gateway::{Gateway, GatewayConfig, GatewayError, HttpPokeSink};

/// Settings of a gateway on a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Data plane settings (domain, queue, buffers, listen address).
    pub gateway: GatewayConfig,
    /// Address of the admin endpoints (/metrics, /healthz, /readyz).
    pub admin_addr: SocketAddr,
    /// Base URL of the operator's autoscaler (poke endpoint host).
    pub autoscaler_url: String,
    /// Watch only this namespace (all namespaces when unset).
    pub namespace: Option<String>,
    /// The operator's control token; without one, drains are refused.
    pub control_token: Option<flint_api::drain::ControlToken>,
    /// The `kubernetes.io/tls` Secret (namespace, name) served for hosts of
    /// Functions with `spec.tls` but no Secret of their own.
    pub tls_default_secret: Option<super::secrets::SecretRef>,
}

/// Why the cluster gateway stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The autoscaler URL is unusable.
    #[error(transparent)]
    Poke(#[from] PokeError),
    /// The gateway failed.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// No Kubernetes client could be configured (in-cluster or kubeconfig).
    #[error("configuring the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The admin server failed.
    #[error("admin server: {0}")]
    Admin(#[source] std::io::Error),
    /// A watch ended.
    #[error(transparent)]
    Watch(#[from] WatchError),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ClusterError> {
    crate::gateway::listener(addr).map_err(|source| ClusterError::Bind { addr, source })
}

/// Completes on SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

/// Lets the operator drain replicas through `gateway` with `token`; says
/// so when there is none.
pub(crate) fn accept_control(gateway: &Gateway, token: Option<flint_api::drain::ControlToken>) {
    match token {
        Some(token) => gateway.set_control_token(token),
        None => tracing::warn!(
            "no control token: the operator cannot drain replicas before removing them"
        ),
    }
}

/// Gives `gateway` a keyring of the Secrets Functions name (and of
/// `default_tls`), for the watches to keep current.
pub(crate) fn keyring_for(
    gateway: &Gateway,
    default_tls: Option<super::secrets::SecretRef>,
) -> Arc<super::secrets::SecretKeyring> {
    let keyring = Arc::new(super::secrets::SecretKeyring::new(default_tls));
    gateway.set_keyring(keyring.clone());
    keyring
}

/// Runs the gateway until SIGTERM (then drains open connections) or until
/// a watch or server fails.
pub async fn run_cluster(opts: ClusterOptions) -> Result<(), ClusterError> {
    let poke = Arc::new(HttpPokeSink::new(&opts.autoscaler_url)?);
    let listen = opts.gateway.listen;
    let gateway = Gateway::new(opts.gateway, poke)?;
    accept_control(&gateway, opts.control_token);
    let keyring = keyring_for(&gateway, opts.tls_default_secret);
    let client = kube::Client::try_default()
        .await
        .map_err(ClusterError::Client)?;
    let data = bind(listen).await?;
    let admin = bind(opts.admin_addr).await?;
    tracing::info!(%listen, admin = %opts.admin_addr, autoscaler = %opts.autoscaler_url, "starting gateway");
    let router = gateway.admin_router();
    tokio::select! {
        r = gateway.serve(data, shutdown_signal()) => r?,
        r = axum::serve(admin, router) => r.map_err(ClusterError::Admin)?,
        r = watch::run(client, opts.namespace, gateway.clone(), keyring) => r?,
    }
    Ok(())
}
