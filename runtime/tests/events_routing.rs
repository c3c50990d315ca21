//! Asynchronous invocations are addressed per Function: the same id sent
//! to two Functions is two invocations, each delivered (embedded store and
//! a real nats-server); and the intake routes as the synchronous router
//! does, Host first.

mod events_support;

use std::time::Duration;

use bytes::Bytes;
use events_support::*;
use flint_runtime::events::policy::Backoff;
use flint_runtime::events::{self, WorkerConfig};
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::sync::watch;
use tokio::task::JoinHandle;

fn fast() -> WorkerConfig {
    WorkerConfig {
        backoff: Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
        },
        fetch_wait: Duration::from_millis(100),
        ..WorkerConfig::default()
    }
}

/// POSTs to `path` on the gateway with `headers`, expecting a 202.
async fn submit_to(client: &HttpClient, gw: &RunningGateway, path: &str, headers: &[(&str, &str)]) {
    let mut req = Request::post(format!("{}{path}", gw.url()));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from_static(b"job"))).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "{path} {headers:?}");
}

fn handled(function: &Function, id: &str) -> u32 {
    function
        .seen
        .handled
        .lock()
        .unwrap()
        .get(id)
        .copied()
        .unwrap_or(0)
}

async fn stop_worker(stop: watch::Sender<bool>, worker: JoinHandle<()>) {
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .unwrap()
        .unwrap();
}

/// Sends id `shared-1` to Functions `a` and `b` (and to `a` again, a
/// duplicate), and expects each to handle it exactly once.
async fn same_id_to_both(gw: &RunningGateway, a: &Function, b: &Function) {
    let client = client();
    let id = [("x-flint-invocation-id", "shared-1")];
    submit_to(&client, gw, "/async-function/default/a/job", &id).await;
    submit_to(&client, gw, "/async-function/default/b/job", &id).await;
    submit_to(&client, gw, "/async-function/default/a/job", &id).await;
    // A later id to `a`, delivered after the resubmission would have been.
    let later = [("x-flint-invocation-id", "later-1")];
    submit_to(&client, gw, "/async-function/default/a/job", &later).await;
    assert!(
        wait_until(Duration::from_secs(30), || handled(a, "shared-1") > 0
            && handled(b, "shared-1") > 0
            && handled(a, "later-1") > 0)
        .await,
        "a: {:?}, b: {:?}",
        a.seen.handled.lock().unwrap(),
        b.seen.handled.lock().unwrap()
    );
    assert_eq!(handled(a, "shared-1"), 1, "a handled it once");
    assert_eq!(handled(b, "shared-1"), 1, "b handled it once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_the_same_id_to_two_functions_is_delivered_to_both() {
    let dir = TempDir::new("events-ids");
    let (a, b) = (function().await, function().await);
    let gw = gateway_with(&[("a", a.addr), ("b", b.addr)]).await;
    let local = events::local_with(&dir.0, &gw.url(), fast()).unwrap();
    set_targets(&local.targets, &["a", "b"], 20, 4);
    attach(&gw.gateway, local.intake);
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(local.worker.run(stopped));
    same_id_to_both(&gw, &a, &b).await;
    stop_worker(stop, worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_the_same_id_to_two_functions_is_delivered_to_both() {
    assert!(
        nats_available(),
        "nats-server is not installed (apt-get install -y nats-server)"
    );
    let dir = TempDir::new("events-ids-nats");
    let nats = NatsServer::start(&dir.0);
    let (a, b) = (function().await, function().await);
    let gw = gateway_with(&[("a", a.addr), ("b", b.addr)]).await;
    let cluster = events::nats(&nats.settings(), &gw.url(), fast())
        .await
        .unwrap();
    set_targets(&cluster.targets, &["a", "b"], 20, 4);
    attach(&gw.gateway, cluster.intake);
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(cluster.worker.run(stopped));
    same_id_to_both(&gw, &a, &b).await;
    stop_worker(stop, worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_request_goes_where_the_host_routes_it() {
    let dir = TempDir::new("events-host");
    let (a, b) = (function().await, function().await);
    let gw = gateway_with(&[("a", a.addr), ("b", b.addr)]).await;
    let local = events::local_with(&dir.0, &gw.url(), fast()).unwrap();
    set_targets(&local.targets, &["a", "b"], 20, 4);
    attach(&gw.gateway, local.intake);
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(local.worker.run(stopped));
    let client = client();
    // Host names `a`, the path names `b`: the Host wins, as it does for a
    // synchronous request.
    submit_to(
        &client,
        &gw,
        "/function/default/b/job",
        &[
            ("host", "a.default.localhost"),
            ("prefer", "respond-async"),
            ("x-flint-invocation-id", "by-host"),
        ],
    )
    .await;
    submit_to(
        &client,
        &gw,
        "/async-function/default/b/job",
        &[("x-flint-invocation-id", "by-path")],
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(30), || handled(&a, "by-host") > 0
            && handled(&b, "by-path") > 0)
        .await
    );
    assert_eq!(handled(&b, "by-host"), 0, "b never got a's invocation");
    assert_eq!(handled(&a, "by-path"), 0);
    stop_worker(stop, worker).await;
}

/// Every API-key source holds the one key `k-1`.
struct OneKey;

impl flint_runtime::gateway::keyring::Keyring for OneKey {
    fn values(
        &self,
        _: &flint_runtime::events::FunctionKey,
        _: &flint_api::function::KeySource,
    ) -> Result<Vec<Vec<u8>>, flint_runtime::gateway::keyring::KeyringError> {
        Ok(vec![b"k-1".to_vec()])
    }
    fn file(
        &self,
        _: &flint_runtime::events::FunctionKey,
        path: &str,
    ) -> Result<Vec<u8>, flint_runtime::gateway::keyring::KeyringError> {
        Err(flint_runtime::gateway::keyring::KeyringError::Unsupported(
            path.into(),
        ))
    }
    fn tls(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<
        flint_runtime::gateway::keyring::CertPem,
        flint_runtime::gateway::keyring::KeyringError,
    > {
        Err(
            flint_runtime::gateway::keyring::KeyringError::SecretNotFound {
                namespace: ns.into(),
                name: name.into(),
            },
        )
    }
    fn default_tls(
        &self,
        _: &[String],
    ) -> Option<
        Result<
            flint_runtime::gateway::keyring::CertPem,
            flint_runtime::gateway::keyring::KeyringError,
        >,
    > {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_request_passes_the_gate_a_synchronous_one_would() {
    use flint_api::backend::{FunctionAccess, FunctionRoute, RevisionRoute};
    use flint_api::function::{ApiKeyAuth, AuthSpec, KeySource, Visibility};
    let dir = TempDir::new("events-gate");
    let (a, b) = (function().await, function().await);
    let gw = gateway_with(&[("a", a.addr), ("b", b.addr)]).await;
    let local = events::local_with(&dir.0, &gw.url(), fast()).unwrap();
    set_targets(&local.targets, &["a", "b"], 20, 4);
    attach(&gw.gateway, local.intake);
    gw.gateway.set_keyring(std::sync::Arc::new(OneKey));
    let route = |name: &str, access: FunctionAccess| FunctionRoute {
        namespace: NS.into(),
        name: name.into(),
        revisions: vec![RevisionRoute {
            name: format!("{name}-00001"),
            concurrency: CONCURRENCY,
            timeout_seconds: 10,
            protocol: flint_api::Protocol::Http1,
            failure: None,
            probe_starting: false,
        }],
        traffic: vec![flint_api::TrafficStatus {
            revision_name: format!("{name}-00001"),
            percent: 100,
            tag: None,
            latest_revision: true,
            url: None,
        }],
        access,
    };
    let keys = AuthSpec {
        api_keys: Some(ApiKeyAuth {
            keys: KeySource {
                secret_name: Some("keys".into()),
                ..KeySource::default()
            },
            header: None,
        }),
        jwt: None,
    };
    gw.gateway.set_routes(vec![
        route(
            "a",
            FunctionAccess {
                auth: Some(keys),
                ..FunctionAccess::default()
            },
        ),
        route(
            "b",
            FunctionAccess {
                visibility: Some(Visibility::ClusterLocal),
                ..FunctionAccess::default()
            },
        ),
    ]);
    let (stop, stopped) = watch::channel(false);
    // Deliveries present the gateway's internal token: an invocation let
    // through at intake is not refused on its way to the function.
    let worker = local
        .worker
        .with_gateway_token(gw.gateway.internal_token().clone());
    let worker = tokio::spawn(worker.run(stopped));
    let client = client();
    let post = |path: &str, headers: &[(&str, &str)]| {
        let mut req = Request::post(format!("{}{path}", gw.url()));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        client.request(req.body(Full::new(Bytes::from_static(b"job"))).unwrap())
    };
    let id = ("x-flint-invocation-id", "no-key");
    let refused = post("/async-function/default/a/job", &[id]).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().contains_key("www-authenticate"));
    let hidden = post(
        "/async-function/default/b/job",
        &[("x-flint-invocation-id", "hidden")],
    )
    .await
    .unwrap();
    assert_eq!(
        hidden.status(),
        StatusCode::NOT_FOUND,
        "cluster-local on the public listener"
    );
    let by_prefer = post(
        "/",
        &[
            ("host", "a.default.localhost"),
            ("prefer", "respond-async"),
            ("x-flint-invocation-id", "prefer"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(by_prefer.status(), StatusCode::UNAUTHORIZED);
    let forged = post(
        "/async-function/default/a/job",
        &[
            ("x-flint-internal", "guess"),
            ("x-flint-invocation-id", "forged"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        forged.status(),
        StatusCode::UNAUTHORIZED,
        "a wrong internal token is no token"
    );
    submit_to(
        &client,
        &gw,
        "/async-function/default/a/job",
        &[
            ("authorization", "Bearer k-1"),
            ("x-flint-invocation-id", "with-key"),
        ],
    )
    .await;
    assert!(wait_until(Duration::from_secs(30), || handled(&a, "with-key") > 0).await);
    assert_eq!(
        handled(&a, "no-key")
            + handled(&a, "prefer")
            + handled(&a, "forged")
            + handled(&b, "hidden"),
        0
    );
    let text = metrics(&gw.gateway);
    assert_eq!(
        sample(
            &text,
            "flint_auth_failures_total{function=\"a\",namespace=\"default\",reason=\"missing_credentials\"}"
        ),
        3.0,
        "{text}"
    );
    stop_worker(stop, worker).await;
}
