use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::events::embedded::EmbeddedQueue;
use crate::events::targets::Target;

fn intake(dir: &std::path::Path) -> (AsyncIntake, EmbeddedQueue) {
    let store = EmbeddedQueue::open(dir).unwrap();
    let targets = Targets::default();
    let target = Target {
        max_retries: 1,
        max_age: Duration::from_secs(60),
        max_in_flight: 1,
        timeout: Duration::from_secs(1),
    };
    targets.set(HashMap::from([
        (FunctionId::new("default", "hello"), target),
        (FunctionId::new("team", "my-fn"), target),
    ]));
    let metrics = EventMetrics::new().unwrap();
    let queue: Arc<dyn Queue> = Arc::new(store.clone());
    (
        AsyncIntake::new(queue, targets, metrics, "example.com").with_max_body(16),
        store,
    )
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
    for (uri, host, prefer, wants, addressed) in [
        (
            "/async-function/default/hello/x?a=1",
            "gw",
            None,
            true,
            Some(("default", "hello", "/function/default/hello/x?a=1", None)),
        ),
        (
            "/async-function/default/hello",
            "gw",
            None,
            true,
            Some(("default", "hello", "/function/default/hello", None)),
        ),
        (
            "/function/default/hello/x",
            "gw",
            Some("respond-async"),
            true,
            Some(("default", "hello", "/function/default/hello/x", None)),
        ),
        (
            "/function/default/hello/x",
            "gw",
            Some("wait=10, respond-async"),
            true,
            Some(("default", "hello", "/function/default/hello/x", None)),
        ),
        (
            "/function/default/hello/x",
            "gw",
            None,
            false,
            Some(("default", "hello", "/function/default/hello/x", None)),
        ),
        (
            "/p",
            "hello.default.example.com:8080",
            Some("respond-async"),
            true,
            Some((
                "default",
                "hello",
                "/p",
                Some("hello.default.example.com:8080"),
            )),
        ),
        (
            "/p",
            "canary-my-fn.team.example.com",
            Some("respond-async"),
            true,
            Some(("team", "my-fn", "/p", Some("canary-my-fn.team.example.com"))),
        ),
        (
            "/p",
            "other.default.example.com",
            Some("respond-async"),
            true,
            None,
        ),
        (
            "/p",
            "hello.default.elsewhere.org",
            Some("respond-async"),
            true,
            None,
        ),
    ] {
        let r = req(uri, host, prefer);
        assert_eq!(intake.wants(&r), wants, "{uri} {host}");
        let want = addressed.map(|(ns, f, u, h)| Addressed {
            target: FunctionId::new(ns, f),
            uri: u.to_owned(),
            host: h.map(str::to_owned),
        });
        assert_eq!(intake.address(&r), want, "{uri} {host}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn answers() {
    let d = dir("answers");
    let (intake, store) = intake(&d);
    let ok = intake
        .accept(req("/async-function/default/hello/x", "gw", None))
        .await;
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
    assert_eq!(intake.accept(again).await.status(), StatusCode::ACCEPTED);
    let mut dup = req("/async-function/default/hello/x", "gw", None);
    dup.headers_mut()
        .insert(INVOCATION_ID_HEADER, HeaderValue::from_static("client-1"));
    assert_eq!(intake.accept(dup).await.status(), StatusCode::ACCEPTED);
    let depth = store.depth().await.unwrap();
    assert_eq!(depth.len(), 1);
    assert_eq!(depth[0].1.pending, 2, "the resubmission was a duplicate");

    let unknown = intake
        .accept(req("/async-function/default/nope/x", "gw", None))
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let mut bad_id = req("/async-function/default/hello/x", "gw", None);
    bad_id
        .headers_mut()
        .insert(INVOCATION_ID_HEADER, HeaderValue::from_static("has space"));
    assert_eq!(
        intake.accept(bad_id).await.status(),
        StatusCode::BAD_REQUEST
    );
    let mut bad_cb = req("/async-function/default/hello/x", "gw", None);
    bad_cb
        .headers_mut()
        .insert(CALLBACK_HEADER, HeaderValue::from_static("not a url"));
    assert_eq!(
        intake.accept(bad_cb).await.status(),
        StatusCode::BAD_REQUEST
    );
    let big = Request::post("/async-function/default/hello/x")
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 17])))
        .unwrap();
    assert_eq!(
        intake.accept(big).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let _ = std::fs::remove_dir_all(&d);
}
