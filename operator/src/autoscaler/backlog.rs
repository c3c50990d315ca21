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

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use flint_api::TrafficStatus;

use flint_api::backend::RevisionKey;

pub use super::decide::Backlog;
use super::source::{FunctionKey, Pending};

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

/// How long a Function's backlog stays exported at 0 after its last
/// reading with something pending: the gateway's grace for idle series
/// (five minutes), so every scraper sees it drop to 0 before it goes.
pub const BACKLOG_SERIES_GRACE: Duration = Duration::from_secs(300);

/// What the runner knows of the backlogs: the routes its callers set and
/// the pending counts of the last scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BacklogBook {
    routes: HashMap<FunctionKey, BacklogRoute>,
    /// The last pending counts, with the time they were read.
    pending: Option<(Duration, Pending)>,
    /// The Functions whose backlog is exported, with when each last had
    /// something pending.
    shown: HashMap<FunctionKey, Duration>,
}

/// The export of one reading: the series to set, and those to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BacklogSeries {
    /// Functions with something pending, at their count, and those that
    /// had some within [`BACKLOG_SERIES_GRACE`], at 0; by key.
    pub set: Vec<(FunctionKey, u64)>,
    /// Functions with nothing pending for longer than the grace.
    pub gone: Vec<FunctionKey>,
}

impl BacklogBook {
    /// Replaces every route; Functions left out add no backlog demand.
    pub fn set_routes(&mut self, routes: HashMap<FunctionKey, BacklogRoute>) {
        self.routes = routes;
    }

    /// Keeps the pending counts read `at`, and returns what to export:
    /// each Function read with something pending, and for the grace after
    /// that each at 0. A Function that never had a backlog exports
    /// nothing, so ten thousand idle Functions cost nothing per reading.
    pub fn record(&mut self, at: Duration, pending: Pending) -> BacklogSeries {
        let mut series = BacklogSeries::default();
        for (key, _) in pending.iter().filter(|&(_, &n)| n > 0) {
            self.shown.insert(key.clone(), at);
        }
        self.shown.retain(|key, last| {
            let n = pending.get(key).copied().unwrap_or(0);
            let keep = n > 0 || at.saturating_sub(*last) < BACKLOG_SERIES_GRACE;
            if keep {
                series.set.push((key.clone(), n));
            } else {
                series.gone.push(key.clone());
            }
            keep
        });
        series.set.sort();
        series.gone.sort();
        self.pending = Some((at, pending));
        series
    }

    /// The Functions with a route and pending work as of `now` (readings no
    /// older than `stale_after`), by namespace: looked up by `&str`
    /// without allocating, once per revision in a tick that skips the
    /// dormant ones.
    pub fn busy(&self, now: Duration, stale_after: Duration) -> HashMap<String, HashSet<String>> {
        let mut busy: HashMap<String, HashSet<String>> = HashMap::new();
        if let Some((at, p)) = &self.pending
            && now.saturating_sub(*at) <= stale_after
        {
            for (key, _) in p
                .iter()
                .filter(|&(key, &n)| n > 0 && self.routes.contains_key(key))
            {
                busy.entry(key.namespace.clone())
                    .or_default()
                    .insert(key.function.clone());
            }
        }
        busy
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
    fn a_backlog_is_exported_while_pending_then_at_zero_for_the_grace_then_not() {
        let mut book = BacklogBook::default();
        let a = FunctionKey::new("ns", "a");
        let b = FunctionKey::new("ns", "b");
        let idle = FunctionKey::new("ns", "idle");
        let secs = Duration::from_secs;
        // A Function read at 0 that never had a backlog exports nothing.
        let s = book.record(secs(0), Pending::from([(a.clone(), 3), (idle.clone(), 0)]));
        assert_eq!(s.set, [(a.clone(), 3)]);
        let s = book.record(secs(1), Pending::from([(b.clone(), 1)]));
        assert_eq!(s.set, [(a.clone(), 0), (b.clone(), 1)]);
        assert!(s.gone.is_empty());
        // Just inside the grace after a's last backlog: still at 0.
        let s = book.record(secs(299), Pending::new());
        assert_eq!(s.set, [(a.clone(), 0), (b.clone(), 0)]);
        // a's grace is over, b's is not.
        let s = book.record(secs(300), Pending::new());
        assert_eq!(s.set, [(b.clone(), 0)]);
        assert_eq!(s.gone, std::slice::from_ref(&a));
        let s = book.record(secs(301), Pending::new());
        assert!(s.set.is_empty());
        assert_eq!(s.gone, [b]);
        // Gone once: not removed again.
        assert_eq!(
            book.record(secs(302), Pending::new()),
            BacklogSeries::default()
        );
        // A new backlog brings it back.
        let s = book.record(secs(400), Pending::from([(a.clone(), 7)]));
        assert_eq!(s.set, [(a, 7)]);
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
        assert_eq!(exported.set, [(b.clone(), 4)]);
        assert!(exported.gone.is_empty());
        book.record(Duration::from_secs(10), Pending::from([(a.clone(), 25)]));
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
}
