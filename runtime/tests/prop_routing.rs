//! Property tests of host and path routing and of the traffic split: any
//! host, path or route set is handled without a panic, every routed
//! Function is found by its host and its path form, and draws fall on the
//! revisions in exact proportion to their percents.

use flint_api::backend::{FunctionRoute, RevisionRoute};
use flint_api::{Protocol, TrafficStatus, names};
use flint_runtime::gateway::host::{MAX_HOST_LEN, function_path, lowercase, strip_port};
use flint_runtime::gateway::split::{pick, shares, total};
use flint_runtime::gateway::table::RouteTable;
use proptest::prelude::*;

const DOMAIN: &str = "example.test";

fn revision(name: String) -> RevisionRoute {
    RevisionRoute {
        name,
        concurrency: 0,
        timeout_seconds: 30,
        protocol: Protocol::Http1,
        failure: None,
        probe_starting: false,
    }
}

/// A route with `n` revisions and traffic entries that may name unknown
/// revisions, carry any percent (sums need not be 100) and tags.
fn route() -> impl Strategy<Value = FunctionRoute> {
    (
        "[a-z][a-z0-9-]{0,12}",
        "[a-z][a-z0-9-]{0,8}",
        1usize..4,
        prop::collection::vec(
            (0usize..5, 0u32..=150, prop::option::of("[a-z]{1,6}")),
            0..5,
        ),
    )
        .prop_map(|(name, namespace, n, targets)| {
            let revisions: Vec<_> = (1..=n)
                .map(|i| revision(format!("{name}-{i:05}")))
                .collect();
            let traffic = targets
                .into_iter()
                .map(|(i, percent, tag)| TrafficStatus {
                    revision_name: format!("{name}-{:05}", i + 1),
                    percent,
                    latest_revision: false,
                    tag,
                    url: None,
                })
                .collect();
            FunctionRoute {
                namespace,
                name,
                revisions,
                traffic,
                access: Default::default(),
            }
        })
}

proptest! {
    #[test]
    fn host_helpers_never_panic(host in any::<String>(), path in any::<String>()) {
        let stripped = strip_port(&host);
        prop_assert!(host.starts_with(stripped));
        let mut buf = [0u8; MAX_HOST_LEN];
        if let Some(lower) = lowercase(&host, &mut buf) {
            prop_assert_eq!(lower, host.to_ascii_lowercase());
        }
        if let Some(fp) = function_path(&path) {
            prop_assert!(path.starts_with(fp.prefix));
            prop_assert!(!fp.namespace.is_empty() && !fp.function.is_empty());
            prop_assert!(fp.rest.starts_with('/'));
        }
    }

    #[test]
    fn the_path_form_splits_back_into_its_parts(
        ns in "[a-z0-9-]{1,10}",
        function in "[a-z0-9-]{1,10}",
        rest in "(/[a-zA-Z0-9._~%-]{0,8}){0,3}",
    ) {
        let path = format!("/function/{ns}/{function}{rest}");
        let fp = function_path(&path).unwrap();
        prop_assert_eq!(fp.namespace, ns.as_str());
        prop_assert_eq!(fp.function, function.as_str());
        prop_assert_eq!(fp.prefix, format!("/function/{ns}/{function}"));
        prop_assert_eq!(fp.rest, if rest.is_empty() { "/" } else { rest.as_str() });
    }

    #[test]
    fn any_table_routes_any_request_without_panic_and_finds_every_function(
        routes in prop::collection::vec(route(), 0..6),
        host in any::<String>(),
        path in any::<String>(),
        r in any::<u32>(),
    ) {
        let table = RouteTable::build(&routes, DOMAIN, |_| ());
        if let Some(routed) = table.route(&host, &path) {
            let _ = routed.revision(r);
        }
        for route in &routes {
            let host = names::function_host(&route.name, &route.namespace, DOMAIN);
            let upper = format!("{}:8080", host.to_ascii_uppercase());
            for h in [host.as_str(), upper.as_str()] {
                let routed = table.route(h, "/").unwrap();
                // Names may repeat across generated routes: the last one wins.
                prop_assert_eq!(&routed.function.name, &route.name);
                if let Some(rev) = routed.revision(r) {
                    prop_assert!(route.revisions.iter().any(|x| x.name == rev.route.name));
                }
            }
            let path = format!("/function/{}/{}/x", route.namespace, route.name);
            let routed = table.route("unknown.host", &path).unwrap();
            prop_assert_eq!(routed.path.unwrap().rest, "/x");
        }
    }

    #[test]
    fn draws_fall_on_revisions_in_proportion_to_their_percents(
        percents in prop::collection::vec(0u32..=100, 0..6),
    ) {
        let s = shares(percents.iter().copied().enumerate());
        let sum: u32 = percents.iter().sum();
        prop_assert_eq!(total(&s), sum);
        let mut counts = vec![0u32; percents.len()];
        for r in 0..sum {
            counts[pick(&s, r).unwrap()] += 1;
        }
        prop_assert_eq!(counts, percents);
        prop_assert_eq!(pick(&s, sum), None);
    }
}
