//! Routing through a real gateway to real apps: hosts, tags, the path form,
//! and the plain answers for unknown functions and unready revisions.

mod gateway_support;

use std::net::SocketAddr;

use flint_api::backend::FunctionRoute;
use flint_api::{Protocol, TrafficStatus};
use gateway_support::*;
use http::StatusCode;

/// Routes Function `ns/<name>` to its revisions `<name>-00001` (replica
/// `p1` at `one`) and `<name>-00002` (replica `p2` at `two`), its traffic
/// split as `split`.
fn serve_two(gw: &Running, name: &str, split: Vec<TrafficStatus>, [one, two]: [SocketAddr; 2]) {
    let (first, second) = (format!("{name}-00001"), format!("{name}-00002"));
    gw.gateway.set_routes(vec![FunctionRoute {
        namespace: "ns".into(),
        name: name.into(),
        revisions: vec![revision(&first, 0, 10), revision(&second, 0, 10)],
        traffic: split,
        access: Default::default(),
    }]);
    gw.gateway
        .set_endpoints(&key(name, &first), vec![ready("p1", one)]);
    gw.gateway
        .set_endpoints(&key(name, &second), vec![ready("p2", two)]);
}

#[tokio::test]
async fn routes_by_host_tag_and_path_form() {
    let one = app("one", Protocol::Http1).await;
    let two = app("two", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let split = vec![
        traffic("hello-00002", 100, None),
        traffic("hello-00001", 0, Some("previous")),
    ];
    serve_two(&gw, "hello", split, [one.addr, two.addr]);

    let (status, _, body) = get(gw.addr, "hello.ns.localhost:8080", "/a?b=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        "two GET /a?b=1 prefix=- xff=127.0.0.1 host=hello.ns.localhost:8080 version=HTTP/1.1"
    );

    let (status, _, body) = get(gw.addr, "previous-hello.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("one GET / "), "{body}");

    let (status, _, body) = get(gw.addr, "127.0.0.1", "/function/ns/hello/x/y?z").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.starts_with("two GET /x/y?z prefix=/function/ns/hello "),
        "{body}"
    );

    let (status, _, body) = get(gw.addr, "127.0.0.1", "/function/ns/hello").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.starts_with("two GET / prefix=/function/ns/hello "),
        "{body}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_host_is_404_naming_it() {
    let gw = gateway(config()).await;
    gw.gateway.set_routes(vec![]);
    let (status, _, body) = get(gw.addr, "nope.ns.localhost", "/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        "no function is served at host \"nope.ns.localhost\" and path \"/x\"\n"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn function_without_ready_revision_is_503() {
    let gw = gateway(config()).await;
    gw.gateway.set_routes(vec![FunctionRoute {
        namespace: "ns".into(),
        name: "new".into(),
        revisions: vec![revision("new-00001", 0, 10)],
        traffic: vec![],
        access: Default::default(),
    }]);
    let (status, headers, body) = get(gw.addr, "new.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(body, "function ns/new has no ready revision yet\n");
    gw.shutdown().await;
}

#[tokio::test]
async fn failed_revision_answers_503_with_its_message() {
    let gw = gateway(config()).await;
    let mut rev = revision("bad-00001", 0, 10);
    rev.failure = Some("ImagePullBackOff: image registry.example/bad:1 not found".into());
    gw.gateway.set_routes(vec![single("bad", rev)]);
    let (status, _, body) = get(gw.addr, "bad.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        "revision bad-00001 failed: ImagePullBackOff: image registry.example/bad:1 not found\n"
    );
    assert!(
        gw.pokes.taken().is_empty(),
        "a failed revision is not poked"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn traffic_split_sends_each_revision_its_share() {
    let one = app("one", Protocol::Http1).await;
    let two = app("two", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let split = vec![
        traffic("split-00001", 50, None),
        traffic("split-00002", 50, None),
    ];
    serve_two(&gw, "split", split, [one.addr, two.addr]);
    for _ in 0..200 {
        let (status, _, _) = get(gw.addr, "split.ns.localhost", "/").await;
        assert_eq!(status, StatusCode::OK);
    }
    let a = one.stats.served.load(std::sync::atomic::Ordering::SeqCst);
    let b = two.stats.served.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(a + b, 200);
    // 50/50 over 200 draws: both get traffic (the chance of a side getting
    // none is 2^-199); exact proportions are checked by the split unit tests.
    assert!(a > 0 && b > 0, "{a} {b}");
    gw.shutdown().await;
}

#[tokio::test]
async fn routes_are_replaced_whole() {
    let one = app("one", Protocol::Http1).await;
    let gw = gateway(config()).await;
    assert!(!gw.gateway.is_ready());
    let a = gw.serve_single("a", revision("a-00001", 0, 10), vec![ready("p", one.addr)]);
    assert!(gw.gateway.is_ready());
    assert_eq!(get(gw.addr, "a.ns.localhost", "/").await.0, StatusCode::OK);
    gw.gateway
        .set_routes(vec![single("b", revision("b-00001", 0, 10))]);
    assert_eq!(
        get(gw.addr, "a.ns.localhost", "/").await.0,
        StatusCode::NOT_FOUND
    );
    // Revision a-00001 still has a replica, so its state is kept.
    assert!(gw.gateway.revision(&a).is_some());
    gw.shutdown().await;
}

#[tokio::test]
async fn one_change_leaves_the_other_functions_and_their_revisions_in_place() {
    let one = app("one", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let a = gw.serve_single("a", revision("a-00001", 0, 10), vec![ready("p", one.addr)]);
    gw.gateway
        .upsert_route(single("b", revision("b-00001", 0, 10)));
    let table = gw.gateway.table();
    let a_entry = std::sync::Arc::clone(table.function("ns", "a").unwrap());
    let a_state = gw.gateway.revision(&a).unwrap();

    // b gets a new revision: a keeps its entry and its revision's state.
    gw.gateway
        .upsert_route(single("b", revision("b-00002", 0, 10)));
    let after = gw.gateway.table();
    assert!(std::sync::Arc::ptr_eq(
        after.function("ns", "a").unwrap(),
        &a_entry
    ));
    assert!(std::sync::Arc::ptr_eq(
        &gw.gateway.revision(&a).unwrap(),
        &a_state
    ));
    assert_eq!(after.len(), 2);
    // b's first revision left with no replica: forgotten; its second is known.
    assert!(gw.gateway.revision(&key("b", "b-00001")).is_none());
    assert!(gw.gateway.revision(&key("b", "b-00002")).is_some());
    assert_eq!(get(gw.addr, "a.ns.localhost", "/").await.0, StatusCode::OK);

    // The whole list with only b changed back: a still untouched.
    let a_route = after.function("ns", "a").unwrap().route().clone();
    gw.gateway
        .set_routes(vec![a_route, single("b", revision("b-00001", 0, 10))]);
    let again = gw.gateway.table();
    assert!(std::sync::Arc::ptr_eq(
        again.function("ns", "a").unwrap(),
        &a_entry
    ));

    gw.gateway.remove_route("ns", "b");
    assert_eq!(gw.gateway.table().len(), 1);
    assert_eq!(
        get(gw.addr, "b.ns.localhost", "/").await.0,
        StatusCode::NOT_FOUND
    );
    assert!(std::sync::Arc::ptr_eq(
        &gw.gateway.revision(&a).unwrap(),
        &a_state
    ));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_revision_that_left_is_forgotten_when_its_last_replica_goes() {
    let one = app("one", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let a = gw.serve_single("a", revision("a-00001", 0, 10), vec![ready("p", one.addr)]);
    gw.gateway.remove_route("ns", "a");
    // Still a replica: kept.
    assert!(gw.gateway.revision(&a).is_some());
    gw.gateway.set_endpoints(&a, vec![]);
    assert!(gw.gateway.revision(&a).is_none());
    gw.shutdown().await;
}
