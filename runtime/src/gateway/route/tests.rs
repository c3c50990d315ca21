//! Routing without sockets: requests built in memory against a table built
//! from routes, one test per rule.

use std::sync::Arc;

use flint_api::backend::{FunctionRoute, RevisionKey, RevisionRoute};
use flint_api::{Protocol, TrafficStatus};
use http::{Request, Version};

use super::*;
use crate::gateway::capacity::{DEFAULT_SETTLE, Sharing};
use crate::gateway::table::RouteTable;
use crate::metrics::GatewayMetrics;

fn rev(name: &str, concurrency: u32, failure: Option<&str>) -> RevisionRoute {
    RevisionRoute {
        name: name.into(),
        concurrency,
        timeout_seconds: 30,
        protocol: Protocol::Http1,
        failure: failure.map(Into::into),
        probe_starting: false,
    }
}

fn traffic(revision: &str, percent: u32, tag: Option<&str>) -> TrafficStatus {
    TrafficStatus {
        revision_name: revision.into(),
        percent,
        latest_revision: false,
        tag: tag.map(Into::into),
        url: None,
    }
}

/// `hello` splits 90/10 between its revisions 2 and 1 (tagged `previous`);
/// `grpc` speaks h2c and failed; `idle` has no traffic.
fn table() -> Table {
    let routes = vec![
        FunctionRoute {
            namespace: "default".into(),
            name: "hello".into(),
            revisions: vec![rev("hello-00001", 1, None), rev("hello-00002", 8, None)],
            traffic: vec![
                traffic("hello-00002", 90, None),
                traffic("hello-00001", 10, Some("previous")),
            ],
            access: Default::default(),
        },
        FunctionRoute {
            namespace: "default".into(),
            name: "grpc".into(),
            revisions: vec![RevisionRoute {
                protocol: Protocol::H2c,
                ..rev("grpc-00001", 0, Some("image not found"))
            }],
            traffic: vec![traffic("grpc-00001", 100, None)],
            access: Default::default(),
        },
        FunctionRoute {
            namespace: "default".into(),
            name: "idle".into(),
            revisions: vec![rev("idle-00001", 0, None)],
            traffic: vec![],
            access: Default::default(),
        },
    ];
    let metrics = GatewayMetrics::new().unwrap();
    let sharing = Arc::new(Sharing::new(DEFAULT_SETTLE));
    RouteTable::build_with(
        &routes,
        "localhost",
        |key: &RevisionKey| {
            Arc::new(RevisionState::new(
                key.clone(),
                metrics.revision(key),
                Arc::clone(&sharing),
            ))
        },
        |_| Gate::default(),
    )
}

fn get(uri: &str, host: &str) -> Request<()> {
    Request::builder()
        .uri(uri)
        .header("host", host)
        .body(())
        .unwrap()
}

fn revision(target: &Target) -> &str {
    &target.state.key.revision
}

#[test]
fn an_unknown_host_is_a_404_naming_the_host() {
    let err = route(
        &table(),
        &get("/a", "Nope.default.localhost:8080"),
        ListenerKind::Public,
    )
    .unwrap_err();
    assert_eq!(err.status().as_u16(), 404);
    assert!(
        matches!(&err, ProxyError::UnknownFunction { host, path }
            if host == "Nope.default.localhost:8080" && path == "/a"),
        "{err:?}"
    );
    let body = err.to_string();
    assert!(body.contains("\"Nope.default.localhost:8080\""), "{body}");
}

#[test]
fn a_known_host_gets_its_revision_and_everything_the_proxy_step_needs() {
    let t = table();
    let target = route_with(
        &t,
        &get("/a?b=1", "hello.default.localhost"),
        ListenerKind::Public,
        || 0,
    )
    .unwrap();
    assert_eq!(revision(&target), "hello-00002");
    assert_eq!(
        target.settings,
        Settings {
            concurrency: 8,
            timeout_seconds: 30,
            protocol: Protocol::Http1,
        }
    );
    assert_eq!(target.failure, None);
    assert_eq!(
        target.hop,
        Hop {
            host: HeaderValue::from_static("hello.default.localhost"),
            prefix_len: None,
            upgrade: false,
        }
    );
    // The target holds the table's own live state, not a copy.
    let entry = t
        .revisions()
        .find(|e| e.key.revision == "hello-00002")
        .unwrap();
    assert!(Arc::ptr_eq(&target.state, &entry.state));
}

#[test]
fn the_split_gives_each_revision_its_percentage() {
    let t = table();
    let req = get("/", "hello.default.localhost");
    // Every draw of 0..100 once: exactly the percentages.
    let mut old = 0;
    for r in 0..100 {
        if revision(&route_with(&t, &req, ListenerKind::Public, || r).unwrap()) == "hello-00001" {
            old += 1;
        }
    }
    assert_eq!(old, 10);
    // Random draws: close to them (the bound is 14 standard deviations).
    let draws = 20_000;
    let old = (0..draws)
        .filter(|_| revision(&route(&t, &req, ListenerKind::Public).unwrap()) == "hello-00001")
        .count();
    assert!((1_400..=2_600).contains(&old), "{old} of {draws}");
}

#[test]
fn a_tag_host_routes_to_its_revision_whatever_the_draw() {
    let t = table();
    for r in [0, 50, 99] {
        let req = get("/", "previous-hello.default.localhost");
        let target = route_with(&t, &req, ListenerKind::Public, || r).unwrap();
        assert_eq!(revision(&target), "hello-00001");
        assert_eq!(target.settings.concurrency, 1);
    }
}

#[test]
fn hosts_route_with_a_port_in_any_case_and_are_forwarded_as_sent() {
    let t = table();
    // (host header, forwarded host)
    let cases = [
        (
            "HELLO.Default.localhost:8080",
            "HELLO.Default.localhost:8080",
        ),
        (
            "hello.default.localhost:8080",
            "hello.default.localhost:8080",
        ),
        ("hello.default.localhost.", "hello.default.localhost"),
        ("Hello.Default.Localhost.:80", "Hello.Default.Localhost:80"),
    ];
    for (host, forwarded) in cases {
        let target = route_with(&t, &get("/", host), ListenerKind::Public, || 0).unwrap();
        assert_eq!(revision(&target), "hello-00002", "{host}");
        assert_eq!(target.hop.host, forwarded, "{host}");
    }
}

#[test]
fn the_uri_authority_wins_over_the_host_header() {
    let t = table();
    let absolute = get(
        "http://hello.default.localhost/a",
        "other.default.localhost",
    );
    let target = route_with(&t, &absolute, ListenerKind::Public, || 0).unwrap();
    assert_eq!(revision(&target), "hello-00002");
    assert_eq!(target.hop.host, "hello.default.localhost");
    let h2 = Request::builder()
        .version(Version::HTTP_2)
        .uri("http://grpc.default.localhost:8080/pkg.Svc/Call")
        .body(())
        .unwrap();
    let target = route_with(&t, &h2, ListenerKind::Public, || 0).unwrap();
    assert_eq!(revision(&target), "grpc-00001");
    assert_eq!(target.hop.host, "grpc.default.localhost:8080");
}

#[test]
fn the_path_form_sets_the_prefix_to_strip() {
    let t = table();
    let req = get("/function/default/hello/a/b?x=1", "127.0.0.1:8080");
    let target = route_with(&t, &req, ListenerKind::Public, || 95).unwrap();
    assert_eq!(revision(&target), "hello-00001");
    assert_eq!(target.hop.prefix_len, Some("/function/default/hello".len()));
    assert_eq!(target.hop.host, "127.0.0.1:8080");
}

#[test]
fn the_revision_settings_and_failure_travel_with_the_target() {
    let target = route_with(
        &table(),
        &get("/", "grpc.default.localhost"),
        ListenerKind::Public,
        || 0,
    )
    .unwrap();
    assert_eq!(target.settings.protocol, Protocol::H2c);
    assert_eq!(target.failure.as_deref(), Some("image not found"));
}

#[test]
fn upgrades_are_noticed_while_routing() {
    let req = Request::builder()
        .uri("/ws")
        .header("host", "hello.default.localhost")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(())
        .unwrap();
    assert!(
        route_with(&table(), &req, ListenerKind::Public, || 0)
            .unwrap()
            .hop
            .upgrade
    );
}

#[test]
fn requests_are_refused_before_any_lookup_as_before() {
    let t = table();
    let long = format!("/{}", "a".repeat(MAX_URI_BYTES));
    let no_host = Request::builder().uri("/").body(()).unwrap();
    let two_hosts = Request::builder()
        .uri("/")
        .header("host", "hello.default.localhost")
        .header("host", "grpc.default.localhost")
        .body(())
        .unwrap();
    let http10 = Request::builder()
        .version(Version::HTTP_10)
        .uri("/function/default/hello/")
        .body(())
        .unwrap();
    // (request, status or None when routed)
    let cases = [
        (get(&long, "hello.default.localhost"), Some(414)),
        (get(&long[..MAX_URI_BYTES], "hello.default.localhost"), None),
        (no_host, Some(400)),
        (two_hosts, Some(400)),
        (http10, None),
        (get("/", "idle.default.localhost"), Some(503)),
    ];
    for (req, want) in cases {
        let got = route_with(&t, &req, ListenerKind::Public, || 0)
            .err()
            .map(|e| e.status().as_u16());
        assert_eq!(got, want, "{} {:?}", req.uri(), req.headers());
        assert_eq!(check(&req).is_err(), want.is_some_and(|s| s != 503));
    }
}

#[test]
fn uri_length_counts_the_target_as_sent() {
    let cases = [
        ("/", 1),
        ("/a/b?x=1", 8),
        ("http://h.ns.localhost/a", 23),
        ("http://h.ns.localhost", 22),
        ("h.ns.localhost:80", 17),
    ];
    for (uri, want) in cases {
        let uri: http::Uri = uri.parse().unwrap();
        assert_eq!(uri_length(&uri), want, "{uri}");
    }
}
