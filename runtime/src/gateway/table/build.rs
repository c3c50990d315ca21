//! Building a whole table from a list of routes at once, with the owner of
//! every custom domain decided over the whole list ([`domains::claims`]).
//! The gateway changes its table one Function at a time
//! ([`RouteTable::upsert`]); this is the reference those changes are
//! checked against, and the quick way to a table in tests and benchmarks.

use std::collections::HashMap;
use std::sync::Arc;

use flint_api::backend::{FunctionKey, FunctionRoute, RevisionKey};
use flint_api::domains::{self, Claimant, Domain};

use super::edit::sort_longest_first;
use super::{DomainEntry, RouteTable};

impl<S> RouteTable<S> {
    /// Builds a table without gates (see [`RouteTable::build_with`]).
    pub fn build(
        routes: &[FunctionRoute],
        domain: &str,
        state: impl FnMut(&RevisionKey) -> S,
    ) -> Self {
        Self::build_with(routes, domain, state, |_| ())
    }
}

impl<S, G> RouteTable<S, G> {
    /// Builds the table for `routes` under `domain`; `state` gives the live
    /// state of each revision, `gate` each Function's gate. Traffic entries
    /// naming an unknown revision are left out (with a warning), as are tags
    /// on them. A custom domain goes to the Function that claimed it first
    /// ([`domains::claims`]); the others' claims wait in the table, for
    /// when the owner leaves.
    pub fn build_with(
        routes: &[FunctionRoute],
        domain: &str,
        mut state: impl FnMut(&RevisionKey) -> S,
        mut gate: impl FnMut(&FunctionRoute) -> G,
    ) -> Self {
        let mut table = Self::default();
        for route in routes {
            let g = gate(route);
            table.add_claims(route, domain);
            table.insert_entry(route.clone(), domain, &mut state, g);
        }
        let claimants: Vec<Claimant<'_>> = routes
            .iter()
            .filter(|r| !r.access.domains.is_empty())
            .map(|r| Claimant {
                function: FunctionKey::new(&r.namespace, &r.name),
                created: r.access.created.as_deref(),
                domains: &r.access.domains,
            })
            .collect();
        let (owners, _) = domains::claims(&claimants, domain);
        let mut by_host: HashMap<&str, Vec<DomainEntry<S, G>>> = HashMap::new();
        for (Domain { host, prefix }, owner) in owners {
            if let Some(function) = table.function(&owner.namespace, &owner.function) {
                by_host.entry(host).or_default().push(DomainEntry {
                    prefix: prefix.map(Into::into),
                    function: Arc::clone(function),
                });
            }
        }
        for (host, mut owners) in by_host {
            sort_longest_first(&mut owners);
            table.domains.insert(host.into(), owners);
        }
        table
    }
}
