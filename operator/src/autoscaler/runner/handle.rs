//! The handle to a running autoscaler: how other tasks (the Function watch,
//! the status writer, `flint dev`, the gateways' pokes) add, update and
//! remove revisions, set the backlog routes, poke, and read what each
//! revision's keep-alive policy is doing. Apart from the loop because it
//! owns nothing: it only touches the state it shares with the loop, under
//! its locks, and never blocks on the loop (a poke is queued for it).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flint_api::backend::{PokeSink, RevisionKey};
use flint_api::poke::ScalePoke;
use flint_api::sync::lock;
use flint_api::{KeepAliveStatus, ScaleSpec};

use super::super::backlog::BacklogRoute;
use super::super::decide::ScaleState;
use super::super::explain;
use super::super::snapshot::Snapshot;
use super::super::source::FunctionKey;
use super::super::window::Window;
use super::{Command, Shared, Tracked};

/// Adds and removes revisions, and takes the gateway's pokes. Cheap to clone.
#[derive(Clone)]
pub struct AutoscalerHandle {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for AutoscalerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoscalerHandle").finish_non_exhaustive()
    }
}

/// What [`AutoscalerHandle::keep_alive`] reports: the `status.keepAlive`
/// entries of the revisions taken over, and the Functions with a revision
/// not taken over yet (whose persisted entries are still needed).
#[derive(Debug, Clone, Default)]
pub struct KeepAliveReport {
    /// Each adopted revision's entry.
    pub entries: Vec<(RevisionKey, KeepAliveStatus)>,
    /// Functions with at least one revision not adopted yet.
    pub taking_over: HashSet<FunctionKey>,
}

impl AutoscalerHandle {
    /// Starts scaling `key` with `spec`, or updates its spec (keeping its
    /// state and samples).
    pub fn upsert(&self, key: RevisionKey, spec: ScaleSpec) {
        self.upsert_restoring(key, spec, None);
    }

    /// As [`AutoscalerHandle::upsert`]; a revision not tracked yet also
    /// takes up `learned`, what a previous leader persisted for it
    /// (`status.keepAlive[].learned`). A damaged string is ignored: the
    /// revision learns afresh.
    pub fn upsert_restoring(&self, key: RevisionKey, spec: ScaleSpec, learned: Option<&str>) {
        let now = self.shared.now();
        let mut revs = lock(&self.shared.revisions);
        match revs.get_mut(&key) {
            Some(t) => {
                t.window.set_span(spec.stable_window.as_std());
                t.spec = spec;
                t.dormant_since = None;
            }
            None => {
                let restore = learned.and_then(|text| match Snapshot::decode(text) {
                    Ok(snapshot) => Some(Box::new(snapshot)),
                    Err(error) => {
                        tracing::warn!(revision = %key, %error, "persisted keep-alive state unreadable; learning afresh");
                        None
                    }
                });
                let state = ScaleState::new(&spec, now);
                revs.insert(
                    key,
                    Tracked {
                        window: Window::new(spec.stable_window.as_std()),
                        state,
                        spec,
                        written: None,
                        ready: 0,
                        adopted: false,
                        restore,
                        dormant_since: None,
                        gauges: false,
                    },
                );
            }
        }
    }

    /// Stops scaling `key` (its replicas are left as they are).
    pub fn remove(&self, key: &RevisionKey) {
        lock(&self.shared.revisions).remove(key);
    }

    /// The revisions being scaled.
    pub fn revisions(&self) -> Vec<RevisionKey> {
        lock(&self.shared.revisions).keys().cloned().collect()
    }

    /// The revisions the last tick decided (not dormant), which the
    /// metrics source is asked for: a dormant revision needs no zero
    /// sample, and one with traffic shows in the readings anyway.
    pub fn awake(&self) -> Vec<RevisionKey> {
        lock(&self.shared.revisions)
            .iter()
            .filter(|(_, t)| t.dormant_since.is_none())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The last desired count of `key`.
    pub fn desired(&self, key: &RevisionKey) -> Option<u32> {
        let revs = lock(&self.shared.revisions);
        revs.get(key).map(|t| t.state.desired)
    }

    /// Why each adopted revision's last replica is kept, pre-warmed or
    /// released, and what its keep-alive policy has learned, as of
    /// `wall_now`: the entries of its Function's `status.keepAlive`.
    /// Revisions not adopted yet are left out, and their Functions listed
    /// as still being taken over, from the same pass over the revisions.
    pub fn keep_alive(&self, wall_now: SystemTime) -> KeepAliveReport {
        let config = &self.shared.decide;
        let now = self.shared.now();
        let unix = wall_now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let wall = |d: Duration| {
            let ago = now.saturating_sub(d);
            wall_now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH)
        };
        let mut report = KeepAliveReport::default();
        let revs = lock(&self.shared.revisions);
        for (key, t) in revs.iter() {
            if !t.adopted {
                report
                    .taking_over
                    .insert(FunctionKey::new(&key.namespace, &key.function));
                continue;
            }
            let (view, basis) = explain::view(&t.spec, config, &t.state, now);
            let snapshot = t.state.snapshot(&t.spec, config, now, unix);
            let status = KeepAliveStatus {
                revision: key.revision.clone(),
                policy: t.spec.keep_alive,
                message: explain::render(view, basis, wall),
                learned: (snapshot != Snapshot::default()).then(|| snapshot.encode()),
            };
            report.entries.push((key.clone(), status));
        }
        report
    }

    /// Replaces how every Function's asynchronous backlog reaches its
    /// revisions (`async.maxInFlight` and the resolved traffic split).
    /// Functions left out add no backlog demand.
    pub fn set_backlog_routes(&self, routes: HashMap<FunctionKey, BacklogRoute>) {
        lock(&self.shared.backlogs).set_routes(routes);
    }
}

impl PokeSink for AutoscalerHandle {
    fn poke(&self, poke: ScalePoke) {
        // Unbounded: never blocks the request path; the loop drains it.
        let _ = self.shared.commands.send(Command::Poke(poke));
    }
}
