use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};

use super::answer::refusal;
use super::*;
use crate::events::embedded::EmbeddedQueue;
use crate::events::invocation::{CALLBACK_HEADER, FunctionKey, INVOCATION_ID_HEADER, new_id};
use crate::events::targets::Target;
use crate::gateway::RouteTable;
use flint_api::backend::{FunctionRoute, RevisionRoute};
use flint_api::{Protocol, TrafficStatus};

fn target() -> Target {
    Target {
        max_retries: 1,
        max_age: Duration::from_secs(60),
        max_in_flight: 1,
        timeout: Duration::from_secs(1),
        store_credentials: false,
    }
}

fn intake(dir: &std::path::Path) -> (AsyncIntake, EmbeddedQueue) {
    let store = EmbeddedQueue::open(dir).unwrap();
    let targets = Targets::default();
    targets.set(HashMap::from([
        (FunctionKey::new("default", "hello"), target()),
        (FunctionKey::new("team", "my-fn"), target()),
        (FunctionKey::new("ns", "a"), target()),
        (FunctionKey::new("other", "fn"), target()),
        (
            FunctionKey::new("default", "with-creds"),
            Target {
                store_credentials: true,
                ..target()
            },
        ),
    ]));
    let metrics = EventMetrics::new().unwrap();
    (
        AsyncIntake::new(Arc::new(store.clone()), targets, metrics).with_max_body(16),
        store,
    )
}

/// The gateway's routing table: the Functions of [`intake`]'s targets plus
/// `default/sync-only` (routed, but not an async target), under `example.com`.
fn table() -> RouteTable<()> {
    let route = |ns: &str, name: &str, tag: Option<&str>| {
        let revision = format!("{name}-00001");
        FunctionRoute {
            namespace: ns.into(),
            name: name.into(),
            revisions: vec![RevisionRoute {
                name: revision.clone(),
                concurrency: 0,
                timeout_seconds: 1,
                protocol: Protocol::Http1,
                failure: None,
                probe_starting: false,
            }],
            traffic: vec![TrafficStatus {
                revision_name: revision,
                percent: 100,
                tag: tag.map(Into::into),
                latest_revision: true,
                url: None,
            }],
            access: Default::default(),
        }
    };
    let routes = [
        route("default", "hello", None),
        route("team", "my-fn", Some("canary")),
        route("ns", "a", None),
        route("other", "fn", None),
        route("default", "sync-only", None),
        route("default", "with-creds", None),
    ];
    RouteTable::build(&routes, "example.com", |_| ())
}

/// Where the synchronous router sends a request: `namespace/function`.
fn sync_route(table: &RouteTable<()>, host: &str, path: &str) -> Option<FunctionKey> {
    table
        .route(host, path)
        .map(|r| FunctionKey::new(&r.function.namespace, &r.function.name))
}

fn req(uri: &str, host: &str, prefer: Option<&str>) -> Request<http_body_util::Full<Bytes>> {
    let mut b = Request::post(uri).header("host", host);
    if let Some(p) = prefer {
        b = b.header("prefer", p);
    }
    b.body(http_body_util::Full::new(Bytes::from_static(b"hi")))
        .unwrap()
}

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("flint-intake-{name}-{}", new_id(0)))
}

#[test]
fn which_requests_are_taken_and_where_they_go() {
    let d = dir("address");
    let (intake, _store) = intake(&d);
    let table = table();
    let stored = |ns: &str, f: &str, uri: &str, host: Option<&str>| {
        Some(Routing::Store(Addressed {
            target: FunctionKey::new(ns, f),
            uri: uri.to_owned(),
            host: host.map(str::to_owned),
        }))
    };
    let path_a = "/function/other/fn/x";
    let async_a = "/async-function/other/fn/x";
    // (path, host, Prefer, what the intake makes of it; None = not wanted)
    let cases = [
        (
            "/async-function/default/hello/x?a=1",
            "gw",
            None,
            stored("default", "hello", "/function/default/hello/x?a=1", None),
        ),
        (
            "/async-function/default/hello",
            "gw",
            None,
            stored("default", "hello", "/function/default/hello", None),
        ),
        (
            "/function/default/hello/x",
            "gw",
            Some("respond-async"),
            stored("default", "hello", "/function/default/hello/x", None),
        ),
        (
            "/function/default/hello/x",
            "gw",
            Some("wait=10, respond-async"),
            stored("default", "hello", "/function/default/hello/x", None),
        ),
        ("/function/default/hello/x", "gw", None, None),
        (
            "/p",
            "hello.default.example.com:8080",
            Some("respond-async"),
            stored(
                "default",
                "hello",
                "/p",
                Some("hello.default.example.com:8080"),
            ),
        ),
        (
            "/p",
            "canary-my-fn.team.example.com",
            Some("respond-async"),
            stored("team", "my-fn", "/p", Some("canary-my-fn.team.example.com")),
        ),
        (
            "/p",
            "other.default.example.com",
            Some("respond-async"),
            Some(Routing::Unknown),
        ),
        (
            "/p",
            "nope-my-fn.team.example.com",
            Some("respond-async"),
            Some(Routing::Unknown),
        ),
        (
            "/p",
            "hello.default.elsewhere.org",
            Some("respond-async"),
            Some(Routing::Unknown),
        ),
        // A Host naming a Function wins over the path, as it does for
        // synchronous requests: `a` gets the path as its own.
        (
            path_a,
            "a.ns.example.com",
            Some("respond-async"),
            stored("ns", "a", path_a, Some("a.ns.example.com")),
        ),
        (
            async_a,
            "a.ns.example.com",
            Some("respond-async"),
            stored("ns", "a", async_a, Some("a.ns.example.com")),
        ),
        // ... and `/async-function/…` under it is an ordinary path of `a`,
        // proxied like any synchronous request.
        (async_a, "a.ns.example.com", None, Some(Routing::Proxy)),
        (
            async_a,
            "gw",
            None,
            stored("other", "fn", "/function/other/fn/x", None),
        ),
    ];
    for (uri, host, prefer, want) in cases {
        let r = req(uri, host, prefer);
        assert_eq!(intake.wants(&r), want.is_some(), "{uri} {host}");
        let Some(want) = want else { continue };
        let got = intake.route(&r, &table);
        assert_eq!(got, want, "{uri} {host}");
        if let Routing::Store(a) = got {
            // The one routing rule: a synchronous request with the same Host
            // and path (its `/function/…` twin for `/async-function/…` ones)
            // goes to the same Function, and so does the delivery.
            let sync_path = uri.replacen("/async-function/", "/function/", 1);
            let sync_path = if host == "gw" {
                sync_path.as_str()
            } else {
                uri
            };
            let sync_path = sync_path.split('?').next().unwrap();
            assert_eq!(
                sync_route(&table, host, sync_path).as_ref(),
                Some(&a.target),
                "sync {uri} {host}"
            );
            let delivered = a.uri.split('?').next().unwrap();
            let delivery_host = a.host.as_deref().unwrap_or("127.0.0.1:8080");
            assert_eq!(
                sync_route(&table, delivery_host, delivered).as_ref(),
                Some(&a.target),
                "delivery {uri} {host}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn answers() {
    let d = dir("answers");
    let (intake, store) = intake(&d);
    let table = table();
    let accept = |r: Request<http_body_util::Full<Bytes>>| {
        let routing = intake.route(&r, &table);
        intake.accept(r, routing)
    };
    let ok = accept(req("/async-function/default/hello/x", "gw", None)).await;
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    let id = ok.headers()[INVOCATION_ID_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(ok.body(), &Bytes::from(format!("{{\"id\":\"{id}\"}}\n")));

    let mut again = req("/async-function/default/hello/x", "gw", None);
    again
        .headers_mut()
        .insert(INVOCATION_ID_HEADER, HeaderValue::from_static("client-1"));
    assert_eq!(accept(again).await.status(), StatusCode::ACCEPTED);
    let mut dup = req("/async-function/default/hello/x", "gw", None);
    dup.headers_mut()
        .insert(INVOCATION_ID_HEADER, HeaderValue::from_static("client-1"));
    assert_eq!(accept(dup).await.status(), StatusCode::ACCEPTED);
    let depth = store.depth().await.unwrap();
    assert_eq!(depth.len(), 1);
    assert_eq!(depth[0].1.pending, 2, "the resubmission was a duplicate");

    let unknown = accept(req("/async-function/default/nope/x", "gw", None)).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let not_async = accept(req("/async-function/default/sync-only/x", "gw", None)).await;
    assert_eq!(not_async.status(), StatusCode::NOT_FOUND);
    assert!(
        String::from_utf8_lossy(not_async.body()).contains("does not accept async invocations")
    );
    let mut bad_id = req("/async-function/default/hello/x", "gw", None);
    bad_id
        .headers_mut()
        .insert(INVOCATION_ID_HEADER, HeaderValue::from_static("has space"));
    assert_eq!(accept(bad_id).await.status(), StatusCode::BAD_REQUEST);
    let mut bad_cb = req("/async-function/default/hello/x", "gw", None);
    bad_cb
        .headers_mut()
        .insert(CALLBACK_HEADER, HeaderValue::from_static("not a url"));
    assert_eq!(accept(bad_cb).await.status(), StatusCode::BAD_REQUEST);
    let big = Request::post("/async-function/default/hello/x")
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 17])))
        .unwrap();
    assert_eq!(accept(big).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn credentials_are_stored_only_when_the_function_opts_in() {
    let d = dir("credentials");
    let (intake, store) = intake(&d);
    let table = table();
    for function in ["hello", "with-creds"] {
        let r = Request::post(format!("/async-function/default/{function}/x"))
            .header("authorization", "Bearer secret")
            .header("cookie", "session=secret")
            .header("proxy-authorization", "Basic secret")
            .header("x-trace", "t-1")
            .body(http_body_util::Full::new(Bytes::from_static(b"hi")))
            .unwrap();
        let routing = intake.route(&r, &table);
        assert_eq!(
            intake.accept(r, routing).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let limits = crate::events::queue::FetchLimits {
        max: 10,
        max_in_flight: 10,
        wait: Duration::from_millis(10),
        lease: Duration::from_secs(60),
    };
    let stored = |function: &'static str| {
        let store = store.clone();
        async move {
            let f = FunctionKey::new("default", function);
            let batch = store.fetch(&f, limits).await.unwrap();
            assert_eq!(batch.len(), 1, "{function}");
            let mut names: Vec<String> = batch[0]
                .invocation
                .headers
                .iter()
                .map(|(n, _)| n.clone())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(stored("hello").await, ["x-trace"], "dropped by default");
    assert_eq!(
        stored("with-creds").await,
        ["authorization", "cookie", "x-trace"],
        "kept when the Function opts in; Proxy-Authorization never"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_queue_that_does_not_take_a_request_is_answered_503_saying_why() {
    let full = refusal(&QueueError::Full {
        stream: "FLINT_ASYNC",
        max_bytes: 1024,
    });
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        full.headers()[header::RETRY_AFTER],
        FULL_RETRY_AFTER_SECONDS.to_string()
    );
    let body = String::from_utf8_lossy(full.body());
    assert!(
        body.contains("full") && body.contains("FLINT_ASYNC") && body.contains("1024 bytes"),
        "{body}"
    );
    let away = refusal(&QueueError::Closed);
    assert_eq!(away.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(away.headers()[header::RETRY_AFTER], "1");
    assert!(String::from_utf8_lossy(away.body()).contains("unavailable"));
}

#[tokio::test]
async fn a_body_the_memory_budget_cannot_hold_is_answered_503_and_not_stored() {
    use crate::budget::{MemoryBudget, Use};
    let d = dir("budget");
    let (intake, store) = intake(&d);
    let budget = MemoryBudget::new(64 * 1024);
    let intake = intake.with_memory_budget(budget.clone());
    let table = table();
    let accept = |r: Request<http_body_util::Full<Bytes>>| {
        let routing = intake.route(&r, &table);
        intake.accept(r, routing)
    };
    // Waiting requests elsewhere hold nearly all of it.
    let others = budget.charge(Use::WaitingRequest, 60 * 1024).unwrap();
    let refused = accept(req("/async-function/default/hello/x", "gw", None)).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    let body = String::from_utf8_lossy(refused.body());
    assert!(
        body.contains("memory budget of 65536 bytes") && body.contains("nothing was accepted"),
        "{body}"
    );
    assert!(store.depth().await.unwrap().is_empty(), "nothing stored");
    assert_eq!(budget.refused(Use::AsyncBody), 1);
    let text = intake.metrics_text().unwrap();
    assert!(
        text.contains("flint_async_refused_total{function=\"hello\",namespace=\"default\",reason=\"memory_budget\"} 1"),
        "{text}"
    );
    // With room again it is accepted, and gives the room back once stored.
    drop(others);
    let ok = accept(req("/async-function/default/hello/x", "gw", None)).await;
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    assert_eq!(budget.held(), 0);
    let _ = std::fs::remove_dir_all(&d);
}
