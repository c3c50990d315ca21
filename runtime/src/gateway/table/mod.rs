//! The routing table: every Function's hosts (its own, its tags' and the
//! custom domains it owns), revisions, traffic split and gate. A table is
//! an immutable snapshot that the gateway swaps in whole, so a lookup takes
//! no lock and allocates nothing; the next snapshot is a cheap clone of the
//! last with one Function's entries changed ([`RouteTable::upsert`],
//! [`RouteTable::remove`]), its maps copy-on-write by shard
//! ([`sharded`]), so a change costs the same with 10 or 10,000 Functions.

mod build;
mod edit;
mod sharded;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use flint_api::backend::{FunctionKey, FunctionRoute, RevisionKey, RevisionRoute};
use flint_api::domains::Domain;

use super::host::{self, FunctionPath, MAX_HOST_LEN};
use super::split::{self, Share};

/// One revision a Function may route to, with `S`, the gateway's live state
/// of it (endpoints, queue).
#[derive(Debug)]
pub struct RevisionEntry<S> {
    /// The revision's key (also its metric labels).
    pub key: RevisionKey,
    /// Its settings: concurrency, timeout, protocol, failure.
    pub route: RevisionRoute,
    /// The gateway's live state of the revision.
    pub state: S,
}

/// One Function's revisions, split and gate (`G`: what a request must pass
/// before it reaches a revision; the gateway's is visibility and auth).
#[derive(Debug)]
pub struct FunctionEntry<S, G = ()> {
    /// Namespace of the Function.
    pub namespace: String,
    /// Name of the Function.
    pub name: String,
    /// Revisions that may receive traffic.
    pub revisions: Vec<RevisionEntry<S>>,
    /// What a request must pass first.
    pub gate: G,
    split: Vec<Share>,
    /// The route the entry was built from.
    route: FunctionRoute,
}

impl<S, G> FunctionEntry<S, G> {
    /// The revision that draw `r` selects; `r` is taken modulo the split's total.
    /// `None` when no revision carries traffic.
    pub fn pick(&self, r: u32) -> Option<&RevisionEntry<S>> {
        let total = split::total(&self.split);
        if total == 0 {
            return None;
        }
        split::pick(&self.split, r % total).and_then(|i| self.revisions.get(i))
    }

    /// The route this entry was built from (what a later change is
    /// compared with).
    pub fn route(&self) -> &FunctionRoute {
        &self.route
    }
}

#[derive(Debug)]
pub(crate) struct HostEntry<S, G> {
    function: Arc<FunctionEntry<S, G>>,
    /// Index of the tagged revision, for `<tag>-<fn>.<ns>.<domain>` hosts.
    tag: Option<usize>,
}

impl<S, G> Clone for HostEntry<S, G> {
    fn clone(&self) -> Self {
        Self {
            function: Arc::clone(&self.function),
            tag: self.tag,
        }
    }
}

/// A custom domain's owner: the whole host, or the paths under a prefix.
#[derive(Debug)]
pub(crate) struct DomainEntry<S, G> {
    /// Path prefix without a trailing '/'; `None` for the whole host.
    prefix: Option<Box<str>>,
    function: Arc<FunctionEntry<S, G>>,
}

impl<S, G> Clone for DomainEntry<S, G> {
    fn clone(&self) -> Self {
        Self {
            prefix: self.prefix.clone(),
            function: Arc::clone(&self.function),
        }
    }
}

/// Where a claimant stands in the queue for a custom domain: created
/// first wins, a Function not yet created last, then the smaller
/// namespace/name (the order of [`flint_api::domains::claims`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ClaimOrder {
    unknown: bool,
    created: Option<Box<str>>,
    function: FunctionKey,
}

/// Every claim on one host's custom domains: by path prefix (`None`: the
/// whole host), the claimants in order, the owner first.
pub(crate) type HostClaims = BTreeMap<Option<Box<str>>, BTreeSet<ClaimOrder>>;

/// Where a request goes, as found in the table.
#[derive(Debug)]
pub struct Routed<'t, 'r, S, G = ()> {
    /// The Function.
    pub function: &'t Arc<FunctionEntry<S, G>>,
    /// The tagged revision, when the host names a tag.
    pub tagged: Option<&'t RevisionEntry<S>>,
    /// Set for the path form: the prefix to strip.
    pub path: Option<FunctionPath<'r>>,
}

impl<'t, S, G> Routed<'t, '_, S, G> {
    /// The revision for this request: the tagged one, or the split's pick for `r`.
    pub fn revision(&self, r: u32) -> Option<&'t RevisionEntry<S>> {
        self.tagged.or_else(|| self.function.pick(r))
    }
}

/// Every route the gateway serves. Cloning one is cheap (its maps share
/// their shards until a clone changes one), which is how the next
/// snapshot is made.
pub struct RouteTable<S, G = ()> {
    hosts: sharded::Sharded<HostEntry<S, G>>,
    /// Custom domains by host, each host's prefixes longest first (the
    /// whole-host owner last).
    domains: sharded::Sharded<Vec<DomainEntry<S, G>>>,
    /// Functions by name; a name's Functions in different namespaces
    /// share the entry.
    by_name: sharded::Sharded<Vec<Arc<FunctionEntry<S, G>>>>,
    /// Every Function's claims on custom domains, owners and waiting
    /// claimants alike, by host: what hands a domain to the next claimant
    /// when its owner leaves.
    claims: sharded::Sharded<HostClaims>,
    len: usize,
}

impl<S, G> Clone for RouteTable<S, G> {
    fn clone(&self) -> Self {
        Self {
            hosts: self.hosts.clone(),
            domains: self.domains.clone(),
            by_name: self.by_name.clone(),
            claims: self.claims.clone(),
            len: self.len,
        }
    }
}

impl<S: std::fmt::Debug, G: std::fmt::Debug> std::fmt::Debug for RouteTable<S, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("functions", &self.len)
            .field("hosts", &self.hosts)
            .field("domains", &self.domains)
            .finish()
    }
}

impl<S, G> Default for RouteTable<S, G> {
    fn default() -> Self {
        Self {
            hosts: sharded::Sharded::default(),
            domains: sharded::Sharded::default(),
            by_name: sharded::Sharded::default(),
            claims: sharded::Sharded::default(),
            len: 0,
        }
    }
}

impl<S, G> RouteTable<S, G> {
    /// Finds the route of a request: by its Function's own host (or a
    /// tag's), then by a custom domain (the longest prefix that matches the
    /// path), then by the path form.
    pub fn route<'t, 'r>(&'t self, host: &str, path: &'r str) -> Option<Routed<'t, 'r, S, G>> {
        let mut buf = [0u8; MAX_HOST_LEN];
        let name = host::lowercase(host::route_name(host), &mut buf);
        if let Some(entry) = name.and_then(|h| self.hosts.get(h)) {
            return Some(Routed {
                function: &entry.function,
                tagged: entry.tag.and_then(|i| entry.function.revisions.get(i)),
                path: None,
            });
        }
        let by_domain = name.and_then(|h| self.domains.get(h)).and_then(|owners| {
            owners
                .iter()
                .find(|d| prefix_matches(d.prefix.as_deref(), path))
        });
        if let Some(entry) = by_domain {
            return Some(Routed {
                function: &entry.function,
                tagged: None,
                path: None,
            });
        }
        let fpath = host::function_path(path)?;
        let function = self.function(fpath.namespace, fpath.function)?;
        Some(Routed {
            function,
            tagged: None,
            path: Some(fpath),
        })
    }

    /// The Function `namespace/name`, if routed.
    pub fn function(&self, namespace: &str, name: &str) -> Option<&Arc<FunctionEntry<S, G>>> {
        self.by_name
            .get(name)?
            .iter()
            .find(|f| f.namespace == namespace)
    }

    /// Every Function in the table.
    pub fn functions(&self) -> impl Iterator<Item = &Arc<FunctionEntry<S, G>>> {
        self.by_name.values().flatten()
    }

    /// Every custom domain routed, with its owner: `(host, prefix, Function)`.
    pub fn domains(&self) -> impl Iterator<Item = (&str, Option<&str>, &Arc<FunctionEntry<S, G>>)> {
        self.domains.iter().flat_map(|(host, owners)| {
            owners
                .iter()
                .map(move |d| (host, d.prefix.as_deref(), &d.function))
        })
    }

    /// Every revision entry in the table.
    pub fn revisions(&self) -> impl Iterator<Item = &RevisionEntry<S>> {
        self.functions().flat_map(|f| f.revisions.iter())
    }

    /// Number of Functions routed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no Function is routed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `path` falls under `prefix` segment-wise (see
/// [`Domain::matches_path`]); no prefix takes every path.
fn prefix_matches(prefix: Option<&str>, path: &str) -> bool {
    Domain { host: "", prefix }.matches_path(path)
}

#[cfg(test)]
mod tests;
