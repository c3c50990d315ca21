//! The autoscaler inside `flint dev`: the operator's autoscaler, unchanged,
//! writing replica counts through the local backend and reading the signal
//! from the in-process gateway's `/metrics` (the direct source), including
//! the pending asynchronous invocations of the embedded queue, which it
//! shares over each Function's traffic split.
//!
//! The gateway and the autoscaler share this process, so pokes travel over a
//! channel and never over HTTP: `flint dev` serves no poke endpoint, and no
//! other process can poke it. They are capped at the gateway's queue size
//! like a cluster's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use flint_api::backend::{FunctionRoute, PokeSink, RevisionKey};
use flint_api::poke::ScalePoke;
use flint_api::sync::lock;
use flint_api::{AsyncSpec, Function, ScaleSpec};
use flint_operator::autoscaler::source::FunctionKey;
use flint_operator::autoscaler::source::direct::DirectSource;
use flint_operator::autoscaler::{Autoscaler, AutoscalerConfig, AutoscalerHandle, BacklogRoute};
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
    /// Each Function's `async.maxInFlight`, for the backlog routes.
    max_in_flight: Mutex<HashMap<FunctionKey, u32>>,
}

impl Scaler {
    /// Starts the autoscaler over `backend`, scraping `metrics_url`, taking
    /// pokes from `pokes`, each counted for at most `queue_size` (the
    /// gateway's per-revision queue) waiting requests.
    pub fn start(
        backend: LocalBackend,
        metrics_url: String,
        mut pokes: mpsc::UnboundedReceiver<ScalePoke>,
        queue_size: u32,
    ) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let source = DirectSource::new(vec![metrics_url], SCRAPE_TIMEOUT);
        let config = AutoscalerConfig {
            max_waiting: queue_size,
            ..AutoscalerConfig::default()
        };
        let autoscaler = Autoscaler::new(backend, source, config, &registry)
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
            max_in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// The manifests changed: remembers each Function's `async.maxInFlight`
    /// for the next [`Scaler::set_routes`].
    pub fn set_functions<'a>(&self, functions: impl IntoIterator<Item = &'a Function>) {
        let limits = functions
            .into_iter()
            .filter_map(|f| {
                let ns = f.metadata.namespace.clone()?;
                let name = f.metadata.name.clone()?;
                Some((FunctionKey::new(ns, name), f.spec.async_.max_in_flight))
            })
            .collect();
        *lock(&self.max_in_flight) = limits;
    }

    /// The gateway's routing table changed: each Function's async backlog
    /// is shared over its resolved traffic split, as the gateway will route
    /// the deliveries. Before any revision was ready (no split yet) it goes
    /// to the newest revision (listed last), as on a cluster.
    pub fn set_routes(&self, routes: &[FunctionRoute]) {
        let limits = lock(&self.max_in_flight);
        let default = AsyncSpec::default().max_in_flight;
        let backlog = routes
            .iter()
            .map(|r| {
                let key = FunctionKey::new(r.namespace.clone(), r.name.clone());
                let limit = limits.get(&key).copied().unwrap_or(default);
                let newest = r.revisions.last().map(|rev| &rev.name);
                (
                    key,
                    BacklogRoute::from_traffic(limit, &r.traffic).or_all_to(newest),
                )
            })
            .collect();
        self.handle.set_backlog_routes(backlog);
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

    /// Why each revision's last replica is kept, pre-warmed or released,
    /// in words (the autoscaler's keep-alive explanation).
    pub fn keep_alive(&self) -> std::collections::HashMap<RevisionKey, String> {
        self.handle
            .keep_alive(std::time::SystemTime::now())
            .entries
            .into_iter()
            .map(|(key, status)| (key, status.message))
            .collect()
    }

    /// `GET /metrics/autoscaler`: the autoscaler's own metrics.
    pub fn router(&self) -> axum::Router {
        let registry = self.registry.clone();
        axum::Router::new().route(
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
    }
}
