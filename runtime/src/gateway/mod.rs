//! The gateway: the one proxy hop in front of every function, and the
//! activator while a revision is at zero.
//!
//! A [`Gateway`] is fed its routes (one Function at a time,
//! [`Gateway::upsert_route`] and [`Gateway::remove_route`], or a whole list
//! through [`Gateway::set_routes`], which applies only what changed) and each
//! revision's replicas ([`Gateway::set_endpoints`]) by whoever watches them
//! (the Kubernetes watcher in `flint gateway`, the local process backend in
//! `flint dev`), serves the data plane ([`Gateway::serve`]) and exports its
//! metrics on an admin router ([`Gateway::admin_router`]).

mod access;
mod admin;
pub mod auth;
pub mod balancer;
mod body;
pub mod capacity;
mod config;
mod error;
pub mod gate;
mod handler;
pub mod host;
pub mod keyring;
pub mod kube;
mod peers;
pub mod poke;
mod pool;
mod proxy;
mod revision;
mod rewrite;
mod route;
mod routes;
mod server;
pub mod split;
pub mod startup_metrics;
pub mod swap_metrics;
pub mod table;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use flint_api::backend::{Endpoint, PokeSink, RevisionKey};
use flint_api::sync::lock;

pub use body::GatewayBody;
pub use config::{
    AccessSettings, ClientSettings, GatewayConfig, PeerGateways, TrustedProxies,
    TrustedProxiesError,
};
pub use error::{GatewayError, ProxyError};
pub use poke::HttpPokeSink;
pub use revision::{Cold, RevisionState};
pub use route::MAX_URI_BYTES;
pub use server::{LISTEN_BACKLOG, Listener, ListenerKind, MinBodyRate, listener};
pub use table::RouteTable;

use crate::budget::MemoryBudget;
use crate::metrics::GatewayMetrics;

/// The routing table as the gateway holds it: each revision with its live state.
pub type Table = RouteTable<Arc<RevisionState>, gate::Gate>;

/// State shared by every connection and by the handle.
pub(crate) struct Shared {
    config: GatewayConfig,
    table: ArcSwap<Table>,
    /// Held by whoever changes the table, so changes apply one after the
    /// other (readers never take it).
    writer: Mutex<()>,
    revisions: Mutex<HashMap<RevisionKey, Arc<RevisionState>>>,
    metrics: GatewayMetrics,
    /// The last routing-table swap, as its owner reported it.
    swap: swap_metrics::SwapMetrics,
    /// Replica start-ups, as the owner running the replicas reported them.
    startup: startup_metrics::StartupMetrics,
    /// What waiting requests, asynchronous bodies and callbacks hold.
    budget: MemoryBudget,
    poke: Arc<dyn PokeSink>,
    routes_set: AtomicBool,
    intake: std::sync::OnceLock<crate::events::AsyncIntake>,
    control_token: std::sync::OnceLock<flint_api::drain::ControlToken>,
    /// Replicas' slots shared with the other gateways.
    sharing: Arc<capacity::Sharing>,
    /// The gateway set cannot be learnt (its watch failed before the first
    /// answer): the gateway serves without it rather than not at all.
    peers_unavailable: AtomicBool,
    /// The certificates the TLS listeners serve.
    certs: Arc<tls::CertStore>,
    /// Secret material and key-set caches of Functions' gates.
    access: access::AccessState,
    /// The token the platform's callers in this process present to pass
    /// Functions' gates ([`flint_api::names::HEADER_INTERNAL`]).
    internal_token: flint_api::drain::ControlToken,
}

/// A handle on a gateway; cheap to clone, all clones drive the same gateway.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.shared.config)
            .field("functions", &self.shared.table.load().len())
            .finish()
    }
}

impl Gateway {
    /// A gateway with an empty routing table that pokes `poke` when a
    /// request finds its revision without a ready replica.
    pub fn new(config: GatewayConfig, poke: Arc<dyn PokeSink>) -> Result<Self, GatewayError> {
        if config.queue_size == 0 {
            return Err(GatewayError::Config("queue_size must be at least 1"));
        }
        if config.max_buffered_bytes < GatewayConfig::MIN_BUFFERED_BYTES {
            return Err(GatewayError::Config(
                "max_buffered_bytes must be at least 8192",
            ));
        }
        if config.memory_budget_bytes < crate::budget::MIN_MEMORY_BUDGET_BYTES {
            return Err(GatewayError::Config(
                "memory_budget_bytes must be at least 4 MiB (4194304)",
            ));
        }
        let budget = MemoryBudget::new(config.memory_budget_bytes);
        Ok(Self {
            shared: Arc::new(Shared {
                table: ArcSwap::from_pointee(RouteTable::default()),
                writer: Mutex::new(()),
                revisions: Mutex::new(HashMap::new()),
                metrics: GatewayMetrics::new()?,
                swap: swap_metrics::SwapMetrics::new()?,
                startup: startup_metrics::StartupMetrics::new()?,
                budget,
                poke,
                routes_set: AtomicBool::new(false),
                intake: std::sync::OnceLock::new(),
                control_token: std::sync::OnceLock::new(),
                sharing: Arc::new(capacity::Sharing::new(capacity::DEFAULT_SETTLE)),
                peers_unavailable: AtomicBool::new(false),
                certs: Arc::new(tls::CertStore::default()),
                access: access::AccessState::new(&config.access),
                internal_token: flint_api::drain::ControlToken::random(),
                config,
            }),
        })
    }

    /// Takes asynchronous requests (`Prefer: respond-async`,
    /// `/async-function/…`) to `intake` from now on, and appends its metrics
    /// to `/metrics`. The bodies it reads count against this gateway's
    /// memory budget. Only the first call has an effect.
    pub fn set_async_intake(&self, intake: crate::events::AsyncIntake) {
        let intake = intake.with_memory_budget(self.shared.budget.clone());
        let _ = self.shared.intake.set(intake);
    }

    /// The gateway-wide memory budget; give it to the parts that hold
    /// bytes for clients beside the gateway itself (the delivery worker's
    /// callbacks, [`crate::events::DeliveryWorker::with_memory_budget`]).
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.shared.budget
    }

    /// Accepts control requests (drains) carrying `token` from now on, and
    /// presents it with every poke (the autoscaler refuses pokes without
    /// it). Only the first call has an effect; without one, drains are
    /// refused.
    pub fn set_control_token(&self, token: flint_api::drain::ControlToken) {
        self.shared.poke.present(&token);
        let _ = self.shared.control_token.set(token);
    }

    /// The token this process's own callers (the delivery of stored
    /// asynchronous invocations, `flint dev`'s schedules) present in
    /// [`flint_api::names::HEADER_INTERNAL`] so that their requests pass
    /// Functions' gates, which the invocation passed when it was accepted.
    /// The control token is accepted too, for the operator's schedules.
    pub fn internal_token(&self) -> &flint_api::drain::ControlToken {
        &self.shared.internal_token
    }

    /// The control token, if one is set.
    pub fn control_token(&self) -> Option<&flint_api::drain::ControlToken> {
        self.shared.control_token.get()
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.shared.config
    }

    fn revisions(&self) -> std::sync::MutexGuard<'_, HashMap<RevisionKey, Arc<RevisionState>>> {
        lock(&self.shared.revisions)
    }

    fn state_of(
        metrics: &GatewayMetrics,
        sharing: &Arc<capacity::Sharing>,
        revisions: &mut HashMap<RevisionKey, Arc<RevisionState>>,
        key: &RevisionKey,
    ) -> Arc<RevisionState> {
        Arc::clone(revisions.entry(key.clone()).or_insert_with(|| {
            Arc::new(RevisionState::new(
                key.clone(),
                metrics.revision(key),
                Arc::clone(sharing),
            ))
        }))
    }

    /// Replaces the replicas of `revision`. Replicas not ready or terminating
    /// leave rotation at once; new ready replicas release waiting requests.
    pub fn set_endpoints(&self, revision: &RevisionKey, endpoints: Vec<Endpoint>) {
        let state = Self::state_of(
            &self.shared.metrics,
            &self.shared.sharing,
            &mut self.revisions(),
            revision,
        );
        state.set_endpoints(&endpoints, Instant::now());
        tracing::debug!(%revision, ready = state.replicas(), given = endpoints.len(), "endpoints updated");
        if state.replicas() == 0 && state.waiting() == 0 && !self.routed(revision) {
            // A revision that left the table keeps its state only while it
            // has replicas or waiting requests. Decided again under the
            // writer's lock: a table being built may have just taken this
            // state, and the map must keep what the table holds.
            let _writer = lock(&self.shared.writer);
            let mut revisions = self.revisions();
            let forget = revisions
                .get(revision)
                .is_some_and(|s| Arc::ptr_eq(s, &state) && s.replicas() == 0 && s.waiting() == 0)
                && !self.routed(revision);
            if forget {
                revisions.remove(revision);
            }
        }
    }

    /// Whether `revision` is in the current routing table.
    fn routed(&self, revision: &RevisionKey) -> bool {
        self.shared
            .table
            .load()
            .function(&revision.namespace, &revision.function)
            .is_some_and(|f| f.revisions.iter().any(|r| r.key == *revision))
    }

    /// The live state of `revision`, if the gateway knows it.
    pub fn revision(&self, revision: &RevisionKey) -> Option<Arc<RevisionState>> {
        self.revisions().get(revision).cloned()
    }

    /// The current routing table.
    pub fn table(&self) -> Arc<Table> {
        self.shared.table.load_full()
    }

    /// Whether a routing table has been set (the gateway is ready to serve)
    /// and, when the gateway shares replicas' slots with peers, it knows
    /// the gateway set ([`Gateway::peers_known`]).
    pub fn is_ready(&self) -> bool {
        self.routes_known() && self.peers_known()
    }

    /// Records, for `/metrics`, that a table routing `functions` Functions
    /// was swapped in, taking `took` (as its owner measures it: `flint dev`
    /// counts building the table too) and ending now.
    pub fn record_route_swap(&self, functions: usize, took: std::time::Duration) {
        self.shared
            .swap
            .record(functions, took, std::time::SystemTime::now());
    }

    /// Records, for `/metrics`, that a replica of `revision` became ready
    /// `startup` after its process started (`flint dev` runs the replicas).
    pub fn record_replica_startup(&self, revision: &RevisionKey, startup: std::time::Duration) {
        self.shared.startup.record(revision, startup);
    }

    /// Drops `revision`'s start-up from `/metrics` (it was removed).
    pub fn forget_replica_startup(&self, revision: &RevisionKey) {
        self.shared.startup.forget(revision);
    }

    /// Whether a routing table has been set.
    pub fn routes_known(&self) -> bool {
        self.shared.routes_set.load(Ordering::Acquire)
    }

    /// The metrics in Prometheus text format, with every exported
    /// revision's concurrency integral brought up to now. A revision idle
    /// for the metrics' grace is left out (see `metrics::expiry`): its
    /// check is two flag reads, so the cost follows the active revisions.
    pub fn metrics_text(&self) -> Result<String, GatewayError> {
        let now = Instant::now();
        let grace = self.shared.metrics.grace();
        let shown: Vec<Arc<RevisionState>> = self
            .revisions()
            .values()
            .filter(|state| state.metrics.scrape(now, grace))
            .cloned()
            .collect();
        self.shared.metrics.publish_budget(&self.shared.budget);
        self.shared
            .metrics
            .publish_capacity(&self.shared.sharing.counts);
        let mut text = self
            .shared
            .metrics
            .encode_with(shown.iter().map(|state| &state.metrics))?;
        text.push_str(&self.shared.swap.encode()?);
        text.push_str(&self.shared.startup.encode()?);
        if let Some(intake) = self.shared.intake.get() {
            text.push_str(&intake.metrics_text()?);
        }
        Ok(text)
    }
}
