//! Changing a table one Function at a time: its entry, its hosts (own and
//! tags'), its name entry and its claims on custom domains. A domain goes
//! to its first claimant ([`domains::claims`]' order); when a Function
//! comes, goes or changes its domains only the hosts it claims or claimed
//! are settled again, so the owner that leaves hands the domain to the
//! next claimant exactly as a whole rebuild would.

use std::sync::Arc;

use flint_api::backend::{FunctionKey, FunctionRoute, RevisionKey};
use flint_api::domains::Domain;
use flint_api::names;

use super::split;
use super::{ClaimOrder, DomainEntry, FunctionEntry, HostEntry, RevisionEntry, RouteTable};

/// A Function's entry taken out of the table, with the custom-domain
/// hosts it claimed (to settle again).
type Detached<S, G> = (Arc<FunctionEntry<S, G>>, Vec<Box<str>>);

impl<S, G> RouteTable<S, G> {
    /// Routes `route` (under the platform `domain`), replacing the
    /// Function's entry if it has one; `state` gives the live state of each
    /// of its revisions, `gate` is its gate. Every other Function's entry
    /// stays the same `Arc`. Returns the entry replaced.
    pub fn upsert(
        &mut self,
        route: FunctionRoute,
        domain: &str,
        state: impl FnMut(&RevisionKey) -> S,
        gate: G,
    ) -> Option<Arc<FunctionEntry<S, G>>> {
        let (old, mut hosts) = match self.detach(&route.namespace, &route.name, domain) {
            Some((old, hosts)) => (Some(old), hosts),
            None => (None, Vec::new()),
        };
        hosts.extend(self.add_claims(&route, domain));
        self.insert_entry(route, domain, state, gate);
        self.settle_domains(hosts);
        old
    }

    /// Stops routing the Function `namespace/name`; a custom domain it
    /// owned goes to its next claimant. Returns its entry, if it had one.
    pub fn remove(
        &mut self,
        namespace: &str,
        name: &str,
        domain: &str,
    ) -> Option<Arc<FunctionEntry<S, G>>> {
        let (old, hosts) = self.detach(namespace, name, domain)?;
        self.settle_domains(hosts);
        Some(old)
    }

    /// Builds `route`'s entry and routes its own host, its tags' hosts and
    /// its name to it (custom domains aside).
    pub(super) fn insert_entry(
        &mut self,
        route: FunctionRoute,
        domain: &str,
        state: impl FnMut(&RevisionKey) -> S,
        gate: G,
    ) {
        let (entry, tags) = entry(route, state, gate);
        let function = Arc::new(entry);
        let (name, namespace) = (&function.name, &function.namespace);
        let host = names::function_host(name, namespace, domain).to_ascii_lowercase();
        self.hosts.insert(
            host.into(),
            HostEntry {
                function: Arc::clone(&function),
                tag: None,
            },
        );
        for (tag, i) in tags {
            let host = names::tagged_host(&tag, name, namespace, domain).to_ascii_lowercase();
            self.hosts.insert(
                host.into(),
                HostEntry {
                    function: Arc::clone(&function),
                    tag: Some(i),
                },
            );
        }
        if let Some(same_name) = self.by_name.entry_or_default(name) {
            match same_name.iter_mut().find(|f| f.namespace == *namespace) {
                Some(slot) => *slot = function,
                None => {
                    same_name.push(function);
                    self.len += 1;
                }
            }
        }
    }

    /// Takes the Function's entry out of the hosts, names and claims that
    /// lead to it; returns it with the custom-domain hosts it claimed.
    fn detach(&mut self, namespace: &str, name: &str, domain: &str) -> Option<Detached<S, G>> {
        let old = Arc::clone(self.function(namespace, name)?);
        if let Some(same_name) = self.by_name.get_mut(name) {
            same_name.retain(|f| f.namespace != namespace);
            if same_name.is_empty() {
                self.by_name.remove(name);
            }
            self.len = self.len.saturating_sub(1);
        }
        for host in own_hosts(&old.route, domain) {
            // A host another Function answers at too (a tag host equal to
            // its own) stays with that one.
            if self
                .hosts
                .get(&host)
                .is_some_and(|h| Arc::ptr_eq(&h.function, &old))
            {
                self.hosts.remove(&host);
            }
        }
        let order = claim_order(&old.route);
        let claimed = claimed(&old.route, domain);
        for (host, prefix) in &claimed {
            let emptied = self.claims.get_mut(host).is_some_and(|claims| {
                if let Some(queue) = claims.get_mut(prefix) {
                    queue.remove(&order);
                    if queue.is_empty() {
                        claims.remove(prefix);
                    }
                }
                claims.is_empty()
            });
            if emptied {
                self.claims.remove(host);
            }
        }
        Some((old, claimed.into_iter().map(|(h, _)| h).collect()))
    }

    /// Records `route`'s claims on custom domains; returns their hosts.
    pub(super) fn add_claims(&mut self, route: &FunctionRoute, domain: &str) -> Vec<Box<str>> {
        let order = claim_order(route);
        let claimed = claimed(route, domain);
        for (host, prefix) in &claimed {
            if let Some(claims) = self.claims.entry_or_default(host) {
                claims
                    .entry(prefix.clone())
                    .or_default()
                    .insert(order.clone());
            }
        }
        claimed.into_iter().map(|(h, _)| h).collect()
    }

    /// Gives each custom domain of `hosts` to its first claimant.
    fn settle_domains(&mut self, mut hosts: Vec<Box<str>>) {
        hosts.sort();
        hosts.dedup();
        for host in hosts {
            let mut owners: Vec<DomainEntry<S, G>> = self
                .claims
                .get(&host)
                .into_iter()
                .flatten()
                .filter_map(|(prefix, queue)| {
                    let first = &queue.first()?.function;
                    let function = self.function(&first.namespace, &first.function)?;
                    Some(DomainEntry {
                        prefix: prefix.clone(),
                        function: Arc::clone(function),
                    })
                })
                .collect();
            if owners.is_empty() {
                self.domains.remove(&host);
            } else {
                sort_longest_first(&mut owners);
                self.domains.insert(host, owners);
            }
        }
    }
}

/// Orders a host's owners longest prefix first (the whole host last), the
/// order a lookup tries them in.
pub(super) fn sort_longest_first<S, G>(owners: &mut [DomainEntry<S, G>]) {
    owners.sort_by_key(|d| std::cmp::Reverse(d.prefix.as_ref().map_or(0, |p| p.len())));
}

/// `route`'s entry, and its tags with the index of the revision each names.
/// Traffic entries naming an unknown revision are left out (with a
/// warning), as are tags on them.
fn entry<S, G>(
    route: FunctionRoute,
    mut state: impl FnMut(&RevisionKey) -> S,
    gate: G,
) -> (FunctionEntry<S, G>, Vec<(String, usize)>) {
    let revisions: Vec<RevisionEntry<S>> = route
        .revisions
        .iter()
        .map(|rev| {
            let key = RevisionKey::new(&route.namespace, &route.name, &rev.name);
            let state = state(&key);
            RevisionEntry {
                key,
                route: rev.clone(),
                state,
            }
        })
        .collect();
    let index = |name: &str| route.revisions.iter().position(|r| r.name == name);
    let mut parts = Vec::with_capacity(route.traffic.len());
    let mut tags = Vec::new();
    for target in &route.traffic {
        let Some(i) = index(&target.revision_name) else {
            tracing::warn!(
                namespace = %route.namespace,
                function = %route.name,
                revision = %target.revision_name,
                "traffic names a revision the route does not carry; ignored"
            );
            continue;
        };
        parts.push((i, target.percent));
        if let Some(tag) = &target.tag {
            tags.push((tag.clone(), i));
        }
    }
    let entry = FunctionEntry {
        namespace: route.namespace.clone(),
        name: route.name.clone(),
        revisions,
        gate,
        split: split::shares(parts),
        route,
    };
    (entry, tags)
}

/// The hosts under the platform domain `route`'s Function answers at: its
/// own and its tags', lowercase.
fn own_hosts(route: &FunctionRoute, domain: &str) -> Vec<Box<str>> {
    let own = names::function_host(&route.name, &route.namespace, domain);
    let tags = route
        .traffic
        .iter()
        .filter_map(|t| t.tag.as_deref())
        .map(|tag| names::tagged_host(tag, &route.name, &route.namespace, domain));
    std::iter::once(own)
        .chain(tags)
        .map(|h| h.to_ascii_lowercase().into())
        .collect()
}

/// Where `route`'s Function stands in the queue for the domains it claims.
fn claim_order(route: &FunctionRoute) -> ClaimOrder {
    ClaimOrder {
        unknown: route.access.created.is_none(),
        created: route.access.created.as_deref().map(Into::into),
        function: FunctionKey::new(&route.namespace, &route.name),
    }
}

/// The custom domains `route` claims as (host, prefix), each once; entries
/// that do not parse or lie under the platform `domain` claim nothing.
pub(super) fn claimed(route: &FunctionRoute, domain: &str) -> Vec<(Box<str>, Option<Box<str>>)> {
    let suffix = format!(".{domain}");
    let mut claimed: Vec<(Box<str>, Option<Box<str>>)> = route
        .access
        .domains
        .iter()
        .filter_map(|entry| Domain::parse(entry).ok())
        .filter(|d| d.host != domain && !d.host.ends_with(&suffix))
        .map(|d| (d.host.into(), d.prefix.map(Into::into)))
        .collect();
    claimed.sort();
    claimed.dedup();
    claimed
}
