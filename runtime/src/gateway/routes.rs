//! Changing the gateway's routes: one Function at a time
//! ([`Gateway::upsert_route`], [`Gateway::remove_route`]) or a whole list
//! compared with the routes in force ([`Gateway::set_routes`]), so that
//! the cost of a change follows what changed, not how many Functions
//! there are. Each change makes the next table snapshot from the last
//! (a cheap clone sharing every untouched entry), builds the gates of the
//! changed Functions only, forgets only their revisions that left, and
//! rebuilds the certificates only when a change can alter them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use flint_api::backend::{FunctionRoute, RevisionKey};
use flint_api::sync::lock;

use super::{Gateway, Table, access, gate};

/// One change to the routes.
#[derive(Debug)]
enum Change {
    /// Route the Function as given (new or changed).
    Upsert(Box<FunctionRoute>),
    /// Stop routing the Function `(namespace, name)`.
    Remove(String, String),
}

/// What applying changes asks of the gateway afterwards.
#[derive(Debug, Default)]
struct Aftermath {
    /// Revisions that left the table: forgotten unless they still have
    /// replicas or waiting requests.
    left: Vec<RevisionKey>,
    /// The certificates served may differ (a Function with `spec.tls`
    /// changed, or a custom domain changed hands).
    certificates: bool,
}

impl Gateway {
    /// Sets the routes to `routes`, applying only the difference with the
    /// routes in force: Functions absent from `routes` leave, new or
    /// changed ones are routed anew, the others keep their entries (and
    /// gates) untouched. Requests in progress keep the table they started
    /// with. Revisions that left the table and have no replica and no
    /// waiting request are forgotten.
    pub fn set_routes(&self, routes: Vec<FunctionRoute>) {
        let _writer = lock(&self.shared.writer);
        let current = self.shared.table.load_full();
        // Each Function's last route in the list (the last of two wins,
        // as in a whole build), by index, so the diff copies no name.
        let mut last: HashMap<(&str, &str), usize> = HashMap::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            last.insert((r.namespace.as_str(), r.name.as_str()), i);
        }
        let mut changes: Vec<Change> = current
            .functions()
            .filter(|f| !last.contains_key(&(f.namespace.as_str(), f.name.as_str())))
            .map(|f| Change::Remove(f.namespace.clone(), f.name.clone()))
            .collect();
        let mut changed = vec![false; routes.len()];
        for (i, r) in routes.iter().enumerate() {
            let is_last = last.get(&(r.namespace.as_str(), r.name.as_str())) == Some(&i);
            let same = current
                .function(&r.namespace, &r.name)
                .is_some_and(|f| f.route() == r);
            changed[i] = is_last && !same;
        }
        drop(last);
        changes.extend(
            routes
                .into_iter()
                .zip(changed)
                .filter_map(|(route, changed)| changed.then(|| Change::Upsert(Box::new(route)))),
        );
        self.apply(&current, changes);
    }

    /// Routes `route`'s Function (new, or replacing its route); every other
    /// Function's entry stays as it is.
    pub fn upsert_route(&self, route: FunctionRoute) {
        let _writer = lock(&self.shared.writer);
        let current = self.shared.table.load_full();
        self.apply(&current, vec![Change::Upsert(Box::new(route))]);
    }

    /// Stops routing the Function `namespace/name`; a custom domain it
    /// owned goes to its next claimant.
    pub fn remove_route(&self, namespace: &str, name: &str) {
        let _writer = lock(&self.shared.writer);
        let current = self.shared.table.load_full();
        self.apply(
            &current,
            vec![Change::Remove(namespace.to_owned(), name.to_owned())],
        );
    }

    /// Rebuilds the gates of the Functions whose gates read secret material
    /// (those with `spec.auth`) from the keyring's current material, and
    /// the certificates served. A gate whose rule comes out the same keeps
    /// its entry. Requests in progress keep the gates they started with.
    pub fn refresh_access(&self) {
        if !self.routes_known() {
            return;
        }
        let _writer = lock(&self.shared.writer);
        let current = self.shared.table.load_full();
        let keyring = self.shared.access.keyring();
        let (settings, registry) = (&self.shared.config.access, &self.shared.access.registry);
        let changes: Vec<Change> = current
            .functions()
            .filter(|f| f.route().access.auth.is_some())
            .filter(|f| {
                let gate = gate::Gate::build(
                    f.route(),
                    settings,
                    keyring.as_ref(),
                    registry,
                    Some(&f.gate),
                );
                !gate.same_rule(&f.gate)
            })
            .map(|f| Change::Upsert(Box::new(f.route().clone())))
            .collect();
        let mut next = (*current).clone();
        let after = self.edit(&mut next, changes);
        self.finish(next, after.left, true);
    }

    /// Applies `changes` to `current` and swaps the result in.
    fn apply(&self, current: &Table, changes: Vec<Change>) {
        if changes.is_empty() && self.routes_known() {
            return;
        }
        // The first table also sets the default certificate.
        let first = !self.routes_known();
        let mut next = current.clone();
        let after = self.edit(&mut next, changes);
        self.finish(next, after.left, after.certificates || first);
    }

    /// Makes the changes in `next`, building the changed Functions' gates
    /// and revision states.
    fn edit(&self, next: &mut Table, changes: Vec<Change>) -> Aftermath {
        let keyring = self.shared.access.keyring();
        let (metrics, sharing) = (&self.shared.metrics, &self.shared.sharing);
        let (settings, registry) = (&self.shared.config.access, &self.shared.access.registry);
        let domain = self.shared.config.domain.as_str();
        let mut revisions = self.revisions();
        let mut after = Aftermath::default();
        for change in changes {
            match change {
                Change::Upsert(route) => {
                    let old = next.function(&route.namespace, &route.name).cloned();
                    after.certificates |=
                        affects_certificates(old.as_ref().map(|f| f.route()), Some(&route));
                    let was = old.as_ref().map(|f| &f.gate);
                    let gate = gate::Gate::build(&route, settings, keyring.as_ref(), registry, was);
                    let (namespace, name) = (route.namespace.clone(), route.name.clone());
                    next.upsert(
                        *route,
                        domain,
                        |key| Self::state_of(metrics, sharing, &mut revisions, key),
                        gate,
                    );
                    if let Some(old) = old {
                        after
                            .left
                            .extend(old.revisions.iter().map(|r| r.key.clone()));
                    }
                    if let Some(entry) = next.function(&namespace, &name) {
                        for rev in &entry.revisions {
                            rev.state.set_failure(rev.route.failure.clone());
                            rev.state.set_probe_starting(rev.route.probe_starting);
                            if rev.state.set_concurrency(rev.route.concurrency) {
                                self.settle_later(vec![Arc::clone(&rev.state)], sharing.bump());
                            }
                        }
                    }
                }
                Change::Remove(namespace, name) => {
                    if let Some(old) = next.remove(&namespace, &name, domain) {
                        after.certificates |= affects_certificates(Some(old.route()), None);
                        after
                            .left
                            .extend(old.revisions.iter().map(|r| r.key.clone()));
                    }
                }
            }
        }
        after
    }

    /// Forgets the revisions of `left` that are no longer routed (and have
    /// no replica and no waiting request), rebuilds the certificates if
    /// asked, and swaps `next` in.
    fn finish(&self, next: Table, left: Vec<RevisionKey>, certificates: bool) {
        {
            let mut revisions = self.revisions();
            for key in left {
                let routed = next
                    .function(&key.namespace, &key.function)
                    .is_some_and(|f| f.revisions.iter().any(|r| r.key == key));
                let idle = revisions
                    .get(&key)
                    .is_some_and(|s| s.replicas() == 0 && s.waiting() == 0);
                if !routed && idle {
                    revisions.remove(&key);
                }
            }
            tracing::debug!(
                functions = next.len(),
                revisions = revisions.len(),
                "routing table updated"
            );
        }
        if certificates {
            let keyring = self.shared.access.keyring();
            let with_tls = next
                .functions()
                .map(|f| f.route())
                .filter(|r| r.access.tls.is_some());
            let certs = access::certificates(
                &next,
                with_tls,
                &self.shared.config.domain,
                keyring.as_ref(),
                &self.shared.access.parsed,
            );
            self.shared.certs.set(certs);
        }
        self.shared.table.store(Arc::new(next));
        self.shared.routes_set.store(true, Ordering::Release);
    }
}

/// Whether changing a Function's route from `old` to `new` (either absent:
/// it came or left) can change the certificates served: it has `spec.tls`,
/// or its custom domains changed (one may pass to a Function with TLS).
fn affects_certificates(old: Option<&FunctionRoute>, new: Option<&FunctionRoute>) -> bool {
    let tls = |r: Option<&FunctionRoute>| r.is_some_and(|r| r.access.tls.is_some());
    let domains =
        |r: Option<&FunctionRoute>| r.map(|r| r.access.domains.clone()).unwrap_or_default();
    tls(old) || tls(new) || domains(old) != domains(new)
}
