//! Which replicas of a revision take requests: the endpoints given, less
//! those not ready, terminating or held out for a drain, plus starting
//! replicas the gateway probed itself. A replica kept across updates keeps
//! its in-flight count and connections; one leaving with requests on it is
//! remembered until they finish, so a draining backend can wait for them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use flint_api::backend::Endpoint;
use flint_api::sync::lock;

use super::{Cold, RevisionState, Upstream};
use crate::gateway::balancer::Load;
use crate::gateway::pool::Pool;

/// How often the gateway tries a starting replica's port.
pub const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(25);
/// How long the gateway keeps trying a starting replica before leaving it to
/// the kubelet's probe.
const PROBE_FOR: std::time::Duration = std::time::Duration::from_secs(120);

impl RevisionState {
    /// Replaces the replicas: only ready, non-terminating endpoints that are
    /// not held for a drain stay in rotation (a replica leaving stops getting
    /// requests at once); replicas kept keep their in-flight counts and
    /// connections. Waiting requests are woken when replicas appear.
    /// A starting replica (listed, not ready, not terminating) of a revision
    /// that allows it ([`RevisionState::set_probe_starting`]) is probed by
    /// the gateway and joins rotation as soon as its port accepts a
    /// connection.
    pub fn set_endpoints(self: &Arc<Self>, endpoints: &[Endpoint], now: Instant) {
        {
            let mut given = lock(&self.given);
            given.clear();
            given.extend_from_slice(endpoints);
        }
        self.rotate(endpoints, now);
        self.probe_starting_replicas(endpoints);
    }

    /// Whether the gateway probes this revision's starting replicas itself
    /// (its route says the default readiness probe applies).
    pub fn set_probe_starting(&self, on: bool) {
        self.probe_starting.store(on, Ordering::Release);
    }

    fn probe_starting_replicas(self: &Arc<Self>, endpoints: &[Endpoint]) {
        if !self.probe_starting.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for e in endpoints.iter().filter(|e| !e.ready && !e.terminating) {
            let known = lock(&self.probed).contains(&e.id);
            let started = !known && lock(&self.probing).insert(e.id.clone());
            if started {
                runtime.spawn(Arc::clone(self).probe(e.clone()));
            }
        }
    }

    /// Tries `endpoint`'s port until it accepts a connection (then the
    /// replica joins rotation), it leaves the endpoint list, turns ready or
    /// terminating, or [`PROBE_FOR`] passes.
    async fn probe(self: Arc<Self>, endpoint: Endpoint) {
        let deadline = Instant::now() + PROBE_FOR;
        while Instant::now() < deadline {
            let still_starting = lock(&self.given).iter().any(|e| {
                e.id == endpoint.id && e.addr == endpoint.addr && !e.ready && !e.terminating
            });
            if !still_starting {
                break;
            }
            let connect = tokio::net::TcpStream::connect(endpoint.addr);
            if let Ok(Ok(_)) = tokio::time::timeout(PROBE_INTERVAL * 8, connect).await {
                lock(&self.probed).insert(endpoint.id.clone());
                tracing::debug!(revision = %self.key, replica = %endpoint.id, "a starting replica answered the gateway's probe");
                self.rerotate(Instant::now());
                break;
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        lock(&self.probing).remove(&endpoint.id);
    }

    /// Takes the replicas `ids` out of rotation until `until` (or until
    /// [`RevisionState::release`]), whatever their endpoints say meanwhile:
    /// the autoscaler is about to remove them and waits for their requests
    /// to finish ([`RevisionState::in_flight_on`]).
    pub fn hold(&self, ids: &[String], until: Instant, now: Instant) {
        lock(&self.held).extend(ids.iter().map(|id| (id.clone(), until)));
        self.rerotate(now);
    }

    /// Puts held replicas back into rotation (if their endpoints are ready),
    /// and lets holds that ran out lapse.
    pub fn release(&self, ids: &[String], now: Instant) {
        {
            let mut held = lock(&self.held);
            for id in ids {
                held.remove(id);
            }
        }
        self.rerotate(now);
    }

    /// Requests in flight on the replicas `ids`, in rotation or not.
    pub fn in_flight_on(&self, ids: &[String]) -> u32 {
        ids.iter().filter_map(|id| self.in_flight(id)).sum()
    }

    fn rerotate(&self, now: Instant) {
        let given = lock(&self.given).clone();
        self.rotate(&given, now);
    }

    fn rotate(&self, endpoints: &[Endpoint], now: Instant) {
        let probed: HashSet<String> = {
            let mut probed = lock(&self.probed);
            // Forget replicas that left the list.
            probed.retain(|id| endpoints.iter().any(|e| &e.id == id));
            probed.clone()
        };
        let held: HashSet<String> = {
            let mut held = lock(&self.held);
            held.retain(|_, until| *until > now);
            held.keys().cloned().collect()
        };
        let current = self.upstreams.load_full();
        let mut old: HashMap<(&str, std::net::SocketAddr), &Arc<Upstream>> = current
            .iter()
            .map(|u| ((u.endpoint.id.as_str(), u.endpoint.addr), u))
            .collect();
        let concurrency = self.concurrency.load(Ordering::Acquire);
        let next: Vec<Arc<Upstream>> = endpoints
            .iter()
            .filter(|e| {
                (e.ready || probed.contains(&e.id)) && !e.terminating && !held.contains(&e.id)
            })
            .map(|e| match old.remove(&(e.id.as_str(), e.addr)) {
                Some(kept) => Arc::clone(kept),
                None => Arc::new(Upstream {
                    endpoint: e.clone(),
                    slots: self.sharing.slots_for(concurrency, &e.id, now),
                    pool: Pool::new(e.addr),
                }),
            })
            .collect();
        let ready = !next.is_empty();
        // Replicas leaving rotation with requests on them are remembered
        // until those finish, so a draining backend can wait for them.
        {
            let mut draining = lock(&self.draining);
            draining.retain(|u| u.load() > 0);
            draining.extend(old.into_values().filter(|u| u.load() > 0).cloned());
        }
        self.upstreams.store(Arc::new(next));
        if ready {
            // ## Pending => Warm: the first replica is ready; the cold start
            // lasted from the first wait until now.
            if let Cold::Pending { since } = self.set_cold(Cold::Warm) {
                self.metrics
                    .cold_start_ended(now.saturating_duration_since(since));
            }
            self.notify.notify_waiters();
        }
    }
}
