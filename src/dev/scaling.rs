//! The autoscaler inside `flint dev`: the operator's autoscaler, unchanged,
//! writing replica counts through the local backend and reading the signal
//! from the in-process gateway's `/metrics` (the direct source).

use std::time::Duration;

use anyhow::Context;
use flint_api::ScaleSpec;
use flint_api::backend::{PokeSink, RevisionKey};
use flint_api::poke::ScalePoke;
use flint_operator::autoscaler::source::direct::DirectSource;
use flint_operator::autoscaler::{Autoscaler, AutoscalerConfig, AutoscalerHandle, poke_router};
use flint_runtime::local::LocalBackend;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::sync::{mpsc, watch};

/// How long one scrape of the gateway's metrics may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

/// The gateway's poke sink before the autoscaler exists: the gateway must be
/// built first (the local backend publishes endpoints to it, and the
/// autoscaler writes through the local backend), so pokes go through a channel.
pub struct ChannelPoke(mpsc::UnboundedSender<ScalePoke>);

impl PokeSink for ChannelPoke {
    fn poke(&self, poke: ScalePoke) {
        let _ = self.0.send(poke);
    }
}

/// A poke sink for the gateway and the receiving end for [`Scaler::start`].
pub fn poke_channel() -> (ChannelPoke, mpsc::UnboundedReceiver<ScalePoke>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (ChannelPoke(tx), rx)
}

/// The running autoscaler.
pub struct Scaler {
    handle: AutoscalerHandle,
    registry: Registry,
    stop: watch::Sender<bool>,
}

impl Scaler {
    /// Starts the autoscaler over `backend`, scraping `metrics_url`, taking pokes from `pokes`.
    pub fn start(
        backend: LocalBackend,
        metrics_url: String,
        mut pokes: mpsc::UnboundedReceiver<ScalePoke>,
    ) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let source = DirectSource::new(vec![metrics_url], SCRAPE_TIMEOUT);
        let autoscaler = Autoscaler::new(backend, source, AutoscalerConfig::default(), &registry)
            .context("starting the autoscaler")?;
        let handle = autoscaler.handle();
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(autoscaler.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        let forward = handle.clone();
        tokio::spawn(async move {
            while let Some(poke) = pokes.recv().await {
                forward.poke(poke);
            }
        });
        Ok(Self {
            handle,
            registry,
            stop,
        })
    }

    /// Starts scaling a new revision, which starts at `initial` replicas.
    pub fn track(&self, key: RevisionKey, mut scale: ScaleSpec, initial: u32) {
        scale.initial = initial;
        self.handle.upsert(key, scale);
    }

    /// The Function's scaling knobs changed.
    pub fn update(&self, key: &RevisionKey, scale: ScaleSpec) {
        self.handle.upsert(key.clone(), scale);
    }

    /// Stops scaling a revision that is going away.
    pub fn forget(&self, key: &RevisionKey) {
        self.handle.remove(key);
    }

    /// Stops the autoscaler loop.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// `GET /metrics/autoscaler` (the autoscaler's own metrics) and the poke endpoint.
    pub fn router(&self) -> axum::Router {
        let registry = self.registry.clone();
        axum::Router::new()
            .route(
                "/metrics/autoscaler",
                axum::routing::get(move || {
                    let registry = registry.clone();
                    async move {
                        let mut out = Vec::new();
                        match TextEncoder::new().encode(&registry.gather(), &mut out) {
                            Ok(()) => (
                                axum::http::StatusCode::OK,
                                String::from_utf8_lossy(&out).into_owned(),
                            ),
                            Err(e) => (
                                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                                format!("{e}\n"),
                            ),
                        }
                    }
                }),
            )
            .merge(poke_router(self.handle.clone()))
    }
}
