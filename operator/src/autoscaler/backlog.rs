//! The asynchronous backlog as a scaling signal, KEDA-queue-scaler-like.
//!
//! The gateway exports, per Function, `flint_async_pending`: invocations
//! accepted and not yet settled. They are delivered through the normal
//! gateway path, so they land on the revisions the traffic split routes them
//! to, and at most `async.maxInFlight` of them run at once. A revision's share
//! of that work is therefore
//!
//! ```text
//! in_flight = ceil(min(pending, maxInFlight) × percent / 100)
//! replicas  = ceil(in_flight / target)
//! ```
//!
//! where `percent` is the revision's share of the resolved traffic split and
//! `target` the per-replica target `decide()` already uses. Rounding up gives
//! every revision with a share at least one replica while anything is
//! pending: a delivery may land on any of them.
//!
//! Everything here is pure: the runner feeds it the pending counts its source
//! read and the routes its callers set.

use std::collections::HashMap;
use std::time::Duration;

use flint_api::{Function, TrafficStatus};

use flint_api::backend::RevisionKey;

use super::decide::wanted_for_waiting;
use super::source::{FunctionKey, Pending};

/// One revision's view of its Function's asynchronous backlog: the input
/// `decide_with_backlog()` turns into replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Invocations pending for the Function (accepted, not settled).
    pub pending: u64,
    /// The Function's `async.maxInFlight`: most deliveries running at once.
    pub max_in_flight: u32,
    /// Percent of the Function's traffic this revision receives (0 to 100).
    pub percent: u32,
}

impl Backlog {
    /// No backlog: the decision is the one without this signal.
    pub const NONE: Backlog = Backlog {
        pending: 0,
        max_in_flight: 0,
        percent: 0,
    };

    /// Deliveries this revision is expected to run at once:
    /// `ceil(min(pending, maxInFlight) × percent / 100)`; 0 without pending
    /// work or without a traffic share.
    pub fn in_flight(&self) -> u64 {
        let running = self.pending.min(u64::from(self.max_in_flight));
        let percent = u64::from(self.percent.min(100));
        (running * percent).div_ceil(100)
    }

    /// Replicas this share needs at `target` per replica: `ceil(in_flight / target)`.
    pub fn replicas(&self, target: f64) -> u32 {
        // `in_flight` is bounded by `maxInFlight`, a u32.
        let work = u32::try_from(self.in_flight()).unwrap_or(u32::MAX);
        wanted_for_waiting(work, target.max(f64::MIN_POSITIVE))
    }
}

/// How a Function's backlog reaches its revisions: its delivery limit and
/// its resolved traffic split.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BacklogRoute {
    /// The Function's `async.maxInFlight`.
    pub max_in_flight: u32,
    /// `(revision, percent)` of the resolved traffic split. A revision listed
    /// twice (e.g. as the latest and by name) gets the sum of its shares.
    pub traffic: Vec<(String, u32)>,
}

impl BacklogRoute {
    /// A route from a resolved traffic split.
    pub fn from_traffic(max_in_flight: u32, traffic: &[TrafficStatus]) -> Self {
        Self {
            max_in_flight,
            traffic: traffic
                .iter()
                .map(|t| (t.revision_name.clone(), t.percent))
                .collect(),
        }
    }

    /// While no traffic split is resolved, the whole backlog goes to
    /// `revision` (the one the split will route to once it is ready).
    pub fn or_all_to(mut self, revision: Option<&String>) -> Self {
        if self.traffic.is_empty()
            && let Some(revision) = revision
        {
            self.traffic.push((revision.clone(), 100));
        }
        self
    }

    /// The route of a Function on a cluster: `spec.async.maxInFlight` and
    /// `status.traffic`. While no traffic is resolved yet (no revision was
    /// ever ready) the whole backlog goes to the latest ready revision, or
    /// else the latest created one: that is the revision the split will
    /// route to once it is ready, and waking it is what resolves the split.
    /// `None` for a Function without namespace, name or status.
    pub fn of_function(f: &Function) -> Option<(FunctionKey, Self)> {
        let namespace = f.metadata.namespace.clone()?;
        let function = f.metadata.name.clone()?;
        let status = f.status.as_ref()?;
        let max_in_flight = f.spec.async_.max_in_flight;
        let newest = status
            .latest_ready_revision
            .as_ref()
            .or(status.latest_created_revision.as_ref());
        let route = Self::from_traffic(max_in_flight, &status.traffic).or_all_to(newest);
        Some((
            FunctionKey {
                namespace,
                function,
            },
            route,
        ))
    }

    /// The backlog `revision` sees when its Function has `pending` invocations.
    pub fn backlog(&self, pending: u64, revision: &str) -> Backlog {
        let percent = self
            .traffic
            .iter()
            .filter(|(name, _)| name == revision)
            .map(|&(_, p)| p)
            .fold(0u32, u32::saturating_add);
        Backlog {
            pending,
            max_in_flight: self.max_in_flight,
            percent,
        }
    }
}

/// What the runner knows of the backlogs: the routes its callers set and
/// the pending counts of the last scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BacklogBook {
    routes: HashMap<FunctionKey, BacklogRoute>,
    /// The last pending counts, with the time they were read.
    pending: Option<(Duration, Pending)>,
}

impl BacklogBook {
    /// Replaces every route; Functions left out add no backlog demand.
    pub fn set_routes(&mut self, routes: HashMap<FunctionKey, BacklogRoute>) {
        self.routes = routes;
    }

    /// Keeps the pending counts read `at`, and returns what to export: each
    /// Function read, and each routed Function (0 when nothing is pending).
    pub fn record(&mut self, at: Duration, pending: Pending) -> Vec<(FunctionKey, u64)> {
        let mut out: Vec<(FunctionKey, u64)> =
            pending.iter().map(|(k, &n)| (k.clone(), n)).collect();
        out.extend(
            self.routes
                .keys()
                .filter(|k| !pending.contains_key(*k))
                .map(|k| (k.clone(), 0)),
        );
        out.sort();
        self.pending = Some((at, pending));
        out
    }

    /// `revision`'s share of its Function's backlog at `now`: none without a
    /// route, and nothing pending when the last reading is older than
    /// `stale_after` (the decision then holds, as for stale samples).
    pub fn of(&self, revision: &RevisionKey, now: Duration, stale_after: Duration) -> Backlog {
        let function = FunctionKey::of(revision);
        let Some(route) = self.routes.get(&function) else {
            return Backlog::NONE;
        };
        let pending = match &self.pending {
            Some((at, p)) if now.saturating_sub(*at) <= stale_after => {
                p.get(&function).copied().unwrap_or(0)
            }
            _ => 0,
        };
        route.backlog(pending, &revision.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(pending: u64, max_in_flight: u32, percent: u32) -> Backlog {
        Backlog {
            pending,
            max_in_flight,
            percent,
        }
    }

    #[test]
    fn in_flight_is_capped_by_max_in_flight_and_split_rounding_up() {
        // (pending, maxInFlight, percent) → deliveries at once, replicas at target 10.
        let table = [
            (0, 64, 100, 0, 0),
            (1, 64, 100, 1, 1),
            (1000, 64, 100, 64, 7),
            (30, 64, 50, 15, 2),
            (1, 64, 50, 1, 1),
            (1, 64, 1, 1, 1),
            (5, 64, 0, 0, 0),
            (1000, 64, 90, 58, 6),
            (1000, 64, 10, 7, 1),
            (u64::MAX, u32::MAX, 100, u64::from(u32::MAX), 429_496_730),
        ];
        for (pending, mif, pct, in_flight, replicas) in table {
            let b = share(pending, mif, pct);
            assert_eq!(b.in_flight(), in_flight, "{b:?}");
            assert_eq!(b.replicas(10.0), replicas, "{b:?}");
        }
        assert_eq!(Backlog::NONE.replicas(10.0), 0);
        assert_eq!(share(3, 10, 100).replicas(0.0), u32::MAX);
    }

    #[test]
    fn a_revision_gets_the_sum_of_its_traffic_shares() {
        let route = BacklogRoute {
            max_in_flight: 20,
            traffic: vec![("a-2".into(), 60), ("a-1".into(), 30), ("a-2".into(), 10)],
        };
        assert_eq!(route.backlog(100, "a-2"), share(100, 20, 70));
        assert_eq!(route.backlog(100, "a-1"), share(100, 20, 30));
        assert_eq!(route.backlog(100, "a-3"), share(100, 20, 0));
    }

    #[test]
    fn the_book_hands_out_fresh_shares_of_routed_functions_only() {
        let mut book = BacklogBook::default();
        let a = FunctionKey::new("ns", "a");
        let b = FunctionKey::new("ns", "b");
        book.set_routes(HashMap::from([(
            a.clone(),
            BacklogRoute {
                max_in_flight: 10,
                traffic: vec![("a-1".into(), 100)],
            },
        )]));
        let exported = book.record(Duration::from_secs(10), Pending::from([(b.clone(), 4)]));
        assert_eq!(exported, [(a.clone(), 0), (b, 4)]);
        book.record(Duration::from_secs(10), Pending::from([(a, 25)]));
        let rev = RevisionKey::new("ns", "a", "a-1");
        let stale = Duration::from_secs(5);
        assert_eq!(
            book.of(&rev, Duration::from_secs(15), stale),
            share(25, 10, 100)
        );
        assert_eq!(
            book.of(&rev, Duration::from_secs(16), stale),
            share(0, 10, 100)
        );
        let unrouted = RevisionKey::new("ns", "b", "b-1");
        assert_eq!(
            book.of(&unrouted, Duration::from_secs(10), stale),
            Backlog::NONE
        );
    }

    fn function(traffic: &[(&str, u32)], ready: Option<&str>, created: Option<&str>) -> Function {
        let spec: flint_api::FunctionSpec = serde_json::from_value(serde_json::json!({
            "image": "x", "async": {"maxInFlight": 12}
        }))
        .unwrap();
        let mut f = Function::new("a", spec);
        f.metadata.namespace = Some("ns".into());
        f.status = Some(flint_api::FunctionStatus {
            traffic: traffic
                .iter()
                .map(|&(r, p)| TrafficStatus {
                    revision_name: r.into(),
                    percent: p,
                    latest_revision: false,
                    tag: None,
                    url: None,
                })
                .collect(),
            latest_ready_revision: ready.map(Into::into),
            latest_created_revision: created.map(Into::into),
            ..flint_api::FunctionStatus::default()
        });
        f
    }

    #[test]
    fn a_functions_route_follows_its_resolved_traffic_or_its_latest_revision() {
        let key = FunctionKey {
            namespace: "ns".into(),
            function: "a".into(),
        };
        let split = function(&[("a-2", 50), ("a-1", 50)], Some("a-2"), Some("a-3"));
        assert_eq!(
            BacklogRoute::of_function(&split),
            Some((
                key.clone(),
                BacklogRoute {
                    max_in_flight: 12,
                    traffic: vec![("a-2".into(), 50), ("a-1".into(), 50)],
                }
            ))
        );
        let unresolved = function(&[], Some("a-2"), Some("a-3"));
        assert_eq!(
            BacklogRoute::of_function(&unresolved).map(|(_, r)| r.traffic),
            Some(vec![("a-2".into(), 100)])
        );
        let never_ready = function(&[], None, Some("a-1"));
        assert_eq!(
            BacklogRoute::of_function(&never_ready).map(|(_, r)| r.traffic),
            Some(vec![("a-1".into(), 100)])
        );
        let mut no_status = function(&[], None, None);
        no_status.status = None;
        assert_eq!(BacklogRoute::of_function(&no_status), None);
    }
}
