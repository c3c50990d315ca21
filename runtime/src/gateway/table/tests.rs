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

/// Everything a table routes, in a canonical order: hosts with their
/// Function and tag, custom domains with their owners (longest prefix
/// first), Functions by name with their routes, and the waiting claims.
type Snapshot = (
    Vec<(String, String, Option<usize>)>,
    Vec<(String, Vec<(Option<String>, String)>)>,
    Vec<(String, FunctionRoute)>,
    Vec<(String, Vec<(Option<String>, Vec<String>)>)>,
);

fn snapshot<S, G>(t: &RouteTable<S, G>) -> Snapshot {
    let id = |f: &FunctionEntry<S, G>| format!("{}/{}", f.namespace, f.name);
    let mut hosts: Vec<_> = t
        .hosts
        .iter()
        .map(|(h, e)| (h.to_owned(), id(&e.function), e.tag))
        .collect();
    hosts.sort();
    let mut domains: Vec<_> = t
        .domains
        .iter()
        .map(|(h, owners)| {
            let mut owners: Vec<_> = owners
                .iter()
                .map(|d| (d.prefix.as_deref().map(str::to_owned), id(&d.function)))
                .collect();
            // Prefixes of one length cannot both match a path: their order is free.
            owners.sort_by_key(|(p, _)| {
                (
                    std::cmp::Reverse(p.as_ref().map_or(0, String::len)),
                    p.clone(),
                )
            });
            (h.to_owned(), owners)
        })
        .collect();
    domains.sort();
    let mut functions: Vec<_> = t.functions().map(|f| (id(f), f.route().clone())).collect();
    functions.sort_by(|a, b| a.0.cmp(&b.0));
    let mut claims: Vec<_> = t
        .claims
        .iter()
        .map(|(h, c)| {
            let c = c
                .iter()
                .map(|(p, q)| {
                    let q = q.iter().map(|o| o.function.to_string()).collect();
                    (p.as_deref().map(str::to_owned), q)
                })
                .collect();
            (h.to_owned(), c)
        })
        .collect();
    claims.sort();
    (hosts, domains, functions, claims)
}

/// Function `ns<j % 2>/f<j>` in its `variant`: a tag or not, some of the
/// custom domains (one under the platform domain), a creation time or none.
fn variant(j: u8, variant: u8) -> FunctionRoute {
    const DOMAINS: [&str; 5] = [
        "a.example.org",
        "a.example.org/x",
        "a.example.org/x/y",
        "b.example.org/",
        "f0.ns0.example.com",
    ];
    let name = format!("f{j}");
    let mut route = with_domains(&name, "", &[]);
    route.namespace = format!("ns{}", j % 2);
    route.access.domains = DOMAINS
        .iter()
        .enumerate()
        .filter(|(i, _)| variant >> i & 1 == 1)
        .map(|(_, d)| (*d).to_owned())
        .collect();
    route.access.created = match variant >> 5 & 3 {
        0 => None,
        n => Some(format!("2026-01-0{n}T00:00:00Z")),
    };
    if variant >> 7 == 1 {
        route.revisions.push(rev(&format!("{name}-00002")));
        route
            .traffic
            .push(traffic(&format!("{name}-00002"), 0, Some("t")));
    }
    route
}

mod incremental {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Any sequence of one-Function changes leaves the table a whole
        /// build of the resulting routes would make, custom domains
        /// handed over as the first-claimant rule says.
        #[test]
        fn matches_a_whole_build(
            initial in proptest::collection::vec((0u8..8, any::<u8>()), 0..6),
            changes in proptest::collection::vec((0u8..8, any::<u8>(), any::<bool>()), 1..24),
        ) {
            let mut routes: BTreeMap<u8, FunctionRoute> =
                initial.into_iter().map(|(j, v)| (j, variant(j, v))).collect();
            let list: Vec<FunctionRoute> = routes.values().cloned().collect();
            let mut table: RouteTable<()> = RouteTable::build(&list, "example.com", |_| ());
            for (j, v, remove) in changes {
                let before = table.clone();
                if remove {
                    routes.remove(&j);
                    table.remove(&format!("ns{}", j % 2), &format!("f{j}"), "example.com");
                } else {
                    routes.insert(j, variant(j, v));
                    table.upsert(variant(j, v), "example.com", |_| (), ());
                }
                let list: Vec<FunctionRoute> = routes.values().cloned().collect();
                let whole: RouteTable<()> = RouteTable::build(&list, "example.com", |_| ());
                prop_assert_eq!(snapshot(&table), snapshot(&whole));
                prop_assert_eq!(table.len(), whole.len());
                // The snapshot before the change is untouched.
                let again = before.clone();
                prop_assert_eq!(snapshot(&before), snapshot(&again));
            }
        }
    }
}

#[test]
fn one_change_keeps_every_other_entry() {
    let routes: Vec<FunctionRoute> = (0..200u8).map(|j| variant(j, j)).collect();
    let before: RouteTable<()> = RouteTable::build(&routes, "example.com", |_| ());
    let mut after = before.clone();
    after.upsert(variant(7, 0b1000_0001), "example.com", |_| (), ());
    after.remove("ns0", "f8", "example.com");
    for f in before.functions() {
        let now = after.function(&f.namespace, &f.name);
        match f.name.as_str() {
            "f7" => assert!(!Arc::ptr_eq(now.unwrap(), f)),
            "f8" => assert!(now.is_none()),
            _ => assert!(Arc::ptr_eq(now.unwrap(), f), "{}", f.name),
        }
    }
    assert_eq!(before.len(), 200);
    assert_eq!(after.len(), 199);
    // The old snapshot still routes what it routed.
    assert!(before.route("f8.ns0.example.com", "/").is_some());
    assert!(after.route("f8.ns0.example.com", "/").is_none());
    // Most shards are still shared with the old snapshot.
    let shared = (0..200)
        .filter(|j| {
            let host = format!("f{j}.ns{}.example.com", j % 2);
            after.hosts.shares_shard(&before.hosts, &host)
        })
        .count();
    assert!(shared > 180, "{shared}");
}

#[test]
fn a_domain_passes_to_the_next_claimant_when_its_owner_leaves() {
    let routes = vec![
        with_domains("early", "2026-01-01T00:00:00Z", &["api.example.org"]),
        with_domains("late", "2026-02-01T00:00:00Z", &["api.example.org"]),
    ];
    let mut t: RouteTable<()> = RouteTable::build(&routes, "example.com", |_| ());
    let owner = |t: &RouteTable<()>| {
        t.route("api.example.org", "/")
            .map(|r| r.function.name.clone())
    };
    assert_eq!(owner(&t).as_deref(), Some("early"));
    t.remove("ns", "early", "example.com");
    assert_eq!(owner(&t).as_deref(), Some("late"));
    t.upsert(
        with_domains("early", "2026-01-01T00:00:00Z", &["api.example.org"]),
        "example.com",
        |_| (),
        (),
    );
    assert_eq!(owner(&t).as_deref(), Some("early"));
    // The owner gives the domain up: the next claimant has it.
    t.upsert(
        with_domains("early", "2026-01-01T00:00:00Z", &[]),
        "example.com",
        |_| (),
        (),
    );
    assert_eq!(owner(&t).as_deref(), Some("late"));
    t.remove("ns", "late", "example.com");
    assert_eq!(owner(&t), None);
    assert_eq!(t.domains().count(), 0);
}
