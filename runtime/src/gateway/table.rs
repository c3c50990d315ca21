//! The routing table: every Function's hosts (its own, its tags' and the
//! custom domains it owns), revisions, traffic split and gate, built once
//! per update and swapped in whole, so a lookup takes no lock and allocates
//! nothing.

use std::collections::HashMap;
use std::sync::Arc;

use flint_api::backend::{FunctionKey, FunctionRoute, RevisionKey, RevisionRoute};
use flint_api::domains::{self, Claimant, Domain};
use flint_api::names;

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
}

#[derive(Debug)]
struct HostEntry<S, G> {
    function: Arc<FunctionEntry<S, G>>,
    /// Index of the tagged revision, for `<tag>-<fn>.<ns>.<domain>` hosts.
    tag: Option<usize>,
}

/// A custom domain's owner: the whole host, or the paths under a prefix.
#[derive(Debug)]
struct DomainEntry<S, G> {
    /// Path prefix without a trailing '/'; `None` for the whole host.
    prefix: Option<Box<str>>,
    function: Arc<FunctionEntry<S, G>>,
}

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

/// The Functions of one namespace, by name.
type Namespace<S, G> = HashMap<Box<str>, Arc<FunctionEntry<S, G>>>;

/// Every route the gateway serves.
#[derive(Debug)]
pub struct RouteTable<S, G = ()> {
    hosts: HashMap<Box<str>, HostEntry<S, G>>,
    /// Custom domains by host, each host's prefixes longest first (the
    /// whole-host owner last).
    domains: HashMap<Box<str>, Vec<DomainEntry<S, G>>>,
    by_name: HashMap<Box<str>, Namespace<S, G>>,
}

impl<S, G> Default for RouteTable<S, G> {
    fn default() -> Self {
        Self {
            hosts: HashMap::new(),
            domains: HashMap::new(),
            by_name: HashMap::new(),
        }
    }
}

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
    /// ([`domains::claims`]); the others' claims are left out.
    pub fn build_with(
        routes: &[FunctionRoute],
        domain: &str,
        mut state: impl FnMut(&RevisionKey) -> S,
        mut gate: impl FnMut(&FunctionRoute) -> G,
    ) -> Self {
        let mut table = Self::default();
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
        for route in routes {
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
            let function = Arc::new(FunctionEntry {
                namespace: route.namespace.clone(),
                name: route.name.clone(),
                revisions,
                gate: gate(route),
                split: split::shares(parts),
            });
            let key = FunctionKey::new(&route.namespace, &route.name);
            for entry in &route.access.domains {
                let Ok(claimed) = Domain::parse(entry) else {
                    continue;
                };
                if owners.get(&claimed) == Some(&key) {
                    table
                        .domains
                        .entry(claimed.host.into())
                        .or_default()
                        .push(DomainEntry {
                            prefix: claimed.prefix.map(Into::into),
                            function: Arc::clone(&function),
                        });
                }
            }
            let host = names::function_host(&route.name, &route.namespace, domain);
            table.hosts.insert(
                host.to_ascii_lowercase().into(),
                HostEntry {
                    function: Arc::clone(&function),
                    tag: None,
                },
            );
            for (tag, i) in tags {
                let host = names::tagged_host(&tag, &route.name, &route.namespace, domain);
                table.hosts.insert(
                    host.to_ascii_lowercase().into(),
                    HostEntry {
                        function: Arc::clone(&function),
                        tag: Some(i),
                    },
                );
            }
            table
                .by_name
                .entry(route.namespace.as_str().into())
                .or_default()
                .insert(route.name.as_str().into(), function);
        }
        for owners in table.domains.values_mut() {
            owners.sort_by_key(|d| std::cmp::Reverse(d.prefix.as_ref().map_or(0, |p| p.len())));
        }
        table
    }

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
        let function = self.by_name.get(fpath.namespace)?.get(fpath.function)?;
        Some(Routed {
            function,
            tagged: None,
            path: Some(fpath),
        })
    }

    /// The Function `namespace/name`, if routed.
    pub fn function(&self, namespace: &str, name: &str) -> Option<&Arc<FunctionEntry<S, G>>> {
        self.by_name.get(namespace)?.get(name)
    }

    /// Every Function in the table.
    pub fn functions(&self) -> impl Iterator<Item = &Arc<FunctionEntry<S, G>>> {
        self.by_name.values().flat_map(|fns| fns.values())
    }

    /// Every custom domain routed, with its owner: `(host, prefix, Function)`.
    pub fn domains(&self) -> impl Iterator<Item = (&str, Option<&str>, &Arc<FunctionEntry<S, G>>)> {
        self.domains.iter().flat_map(|(host, owners)| {
            owners
                .iter()
                .map(move |d| (&**host, d.prefix.as_deref(), &d.function))
        })
    }

    /// Every revision entry in the table.
    pub fn revisions(&self) -> impl Iterator<Item = &RevisionEntry<S>> {
        self.by_name
            .values()
            .flat_map(|fns| fns.values())
            .flat_map(|f| f.revisions.iter())
    }

    /// Number of Functions routed.
    pub fn len(&self) -> usize {
        self.by_name.values().map(HashMap::len).sum()
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
mod tests {
    use super::*;
    use flint_api::{Protocol, TrafficStatus};

    pub(crate) fn rev(name: &str) -> RevisionRoute {
        RevisionRoute {
            name: name.into(),
            concurrency: 0,
            timeout_seconds: 300,
            protocol: Protocol::Http1,
            failure: None,
            probe_starting: false,
        }
    }

    fn traffic(rev: &str, percent: u32, tag: Option<&str>) -> TrafficStatus {
        TrafficStatus {
            revision_name: rev.into(),
            percent,
            latest_revision: false,
            tag: tag.map(Into::into),
            url: None,
        }
    }

    fn table() -> RouteTable<()> {
        let routes = vec![FunctionRoute {
            namespace: "default".into(),
            name: "hello".into(),
            revisions: vec![rev("hello-00001"), rev("hello-00002")],
            traffic: vec![
                traffic("hello-00002", 90, None),
                traffic("hello-00001", 10, Some("previous")),
                traffic("hello-00009", 0, Some("ghost")),
            ],
            access: Default::default(),
        }];
        RouteTable::build(&routes, "localhost", |_| ())
    }

    #[test]
    fn routes_by_host_tag_and_path() {
        let t = table();
        // (host, path, draw, expected revision, expected stripped path)
        let cases = [
            (
                "hello.default.localhost",
                "/x",
                0,
                Some("hello-00002"),
                None,
            ),
            (
                "hello.default.localhost:8080",
                "/x",
                95,
                Some("hello-00001"),
                None,
            ),
            (
                "HELLO.Default.localhost",
                "/x",
                50,
                Some("hello-00002"),
                None,
            ),
            (
                "previous-hello.default.localhost",
                "/x",
                0,
                Some("hello-00001"),
                None,
            ),
            (
                "127.0.0.1:8080",
                "/function/default/hello/a/b",
                0,
                Some("hello-00002"),
                Some("/a/b"),
            ),
            ("ghost-hello.default.localhost", "/", 0, None, None),
            ("other.default.localhost", "/", 0, None, None),
            ("127.0.0.1", "/function/default/nope/a", 0, None, None),
        ];
        for (host, path, r, want, rest) in cases {
            let routed = t.route(host, path);
            let got = routed
                .as_ref()
                .and_then(|x| x.revision(r))
                .map(|e| e.key.revision.as_str());
            assert_eq!(got, want, "{host}{path}");
            let got_rest = routed.as_ref().and_then(|x| x.path).map(|p| p.rest);
            assert_eq!(got_rest, rest, "{host}{path}");
        }
    }

    #[test]
    fn function_without_traffic_routes_but_picks_nothing() {
        let routes = vec![FunctionRoute {
            namespace: "ns".into(),
            name: "f".into(),
            revisions: vec![rev("f-00001")],
            traffic: vec![],
            access: Default::default(),
        }];
        let t: RouteTable<()> = RouteTable::build(&routes, "example.com", |_| ());
        let routed = t.route("f.ns.example.com", "/").unwrap();
        assert!(routed.revision(0).is_none());
        assert_eq!(t.len(), 1);
        assert_eq!(t.revisions().count(), 1);
    }

    fn with_domains(name: &str, created: &str, domains: &[&str]) -> FunctionRoute {
        FunctionRoute {
            namespace: "ns".into(),
            name: name.into(),
            revisions: vec![rev(&format!("{name}-00001"))],
            traffic: vec![traffic(&format!("{name}-00001"), 100, None)],
            access: flint_api::backend::FunctionAccess {
                domains: domains.iter().map(|d| (*d).to_owned()).collect(),
                created: Some(created.to_owned()),
                ..Default::default()
            },
        }
    }

    #[test]
    fn custom_domains_go_to_their_first_claimant_by_longest_prefix() {
        let routes = vec![
            // Listed first, created later: loses api.example.org.
            with_domains(
                "late",
                "2026-02-01T00:00:00Z",
                &["api.example.org", "example.org/late"],
            ),
            with_domains(
                "early",
                "2026-01-01T00:00:00Z",
                &["api.example.org", "example.org"],
            ),
            with_domains("orders", "2026-03-01T00:00:00Z", &["example.org/orders"]),
            // Under the platform domain: never routed.
            with_domains("greedy", "2025-01-01T00:00:00Z", &["early.ns.example.com"]),
        ];
        let t: RouteTable<()> = RouteTable::build(&routes, "example.com", |_| ());
        let owner = |host: &str, path: &str| t.route(host, path).map(|r| r.function.name.clone());
        let cases = [
            ("api.example.org", "/", Some("early")),
            ("API.example.org:443", "/x", Some("early")),
            ("example.org", "/", Some("early")),
            ("example.org", "/orders", Some("orders")),
            ("example.org", "/orders/7", Some("orders")),
            ("example.org", "/ordersx", Some("early")),
            ("example.org", "/late/a", Some("late")),
            ("early.ns.example.com", "/", Some("early")),
            ("other.example.org", "/", None),
        ];
        for (host, path, want) in cases {
            assert_eq!(owner(host, path).as_deref(), want, "{host}{path}");
        }
        assert_eq!(t.domains().count(), 4);
    }
}
