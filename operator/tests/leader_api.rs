//! Leader election against a mocked API server (tower-test): the exact Lease
//! requests of creating, following, taking over, renewing, losing a write
//! race and releasing, and the running loop stepping down when it cannot
//! renew within the renew deadline (on tokio's paused clock, so no real
//! seconds pass).

#[path = "support/mock_serve.rs"]
mod mock_serve;

use std::time::Duration;

use flint_operator::leader::{
    LeaderConfig, LeaderElector, LeaderError, Leadership, LeaseDecision, decide,
};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use mock_serve::{Handle, serve_while};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

type Responder = tower_test::mock::SendResponse<Response<Body>>;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/flint-system/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/flint-system/leases/flint-operator";
/// The URL of a write (create, replace): kube-rs adds an empty query.
const LEASE_WRITE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/flint-system/leases/flint-operator?";

/// "Now" of the single-round scenarios.
const NOW: &str = "2026-01-01T00:01:00Z";
/// `NOW` as a MicroTime serializes.
const NOW_MICRO: &str = "2026-01-01T00:01:00.000000Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn config() -> LeaderConfig {
    LeaderConfig {
        lease_name: "flint-operator".into(),
        namespace: "flint-system".into(),
        identity: "op-a".into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    }
}

/// An elector whose API server is the returned handle.
fn mock() -> (LeaderElector, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        LeaderElector::new(kube::Client::new(svc, "default"), config()),
        handle,
    )
}

/// A Lease as the API server returns it.
fn lease(resource_version: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "flint-operator", "namespace": "flint-system",
                     "uid": "lease-uid", "resourceVersion": resource_version},
        "spec": spec
    })
}

/// An error reply as the API server gives it (a `Status` with the reason
/// the server uses for `code`).
fn status(code: u16) -> (StatusCode, Value) {
    let reason = match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        _ => "InternalError",
    };
    (
        StatusCode::from_u16(code).unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "injected", "reason": reason, "code": code}),
    )
}

/// Takes the next request, checks its method and URL (with query), and
/// returns its JSON body (Null when empty) with the means to answer it.
async fn take(handle: &mut Handle, method: Method, uri: &str) -> (Value, Responder) {
    let (req, send) = handle
        .next_request()
        .await
        .unwrap_or_else(|| panic!("{method} {uri} never came"));
    assert_eq!(
        (req.method(), req.uri().to_string()),
        (&method, uri.to_owned())
    );
    let body = req.into_body().collect_bytes().await.unwrap();
    let sent = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (sent, send)
}

fn answer(send: Responder, status: StatusCode, reply: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(reply).unwrap()))
            .unwrap(),
    );
}

/// Answers the next request, which must be `method uri`, with `reply`;
/// returns the request's body.
async fn expect(
    handle: &mut Handle,
    method: Method,
    uri: &str,
    reply: (StatusCode, Value),
) -> Value {
    let (sent, send) = take(handle, method, uri).await;
    answer(send, reply.0, &reply.1);
    sent
}

fn ok(reply: Value) -> (StatusCode, Value) {
    (StatusCode::OK, reply)
}

/// Runs `call` on an elector whose API server answers `script` (which
/// returns the handle); then checks no other request came.
async fn scenario<F, C, T>(
    script: impl FnOnce(Handle) -> F,
    call: impl FnOnce(LeaderElector) -> C,
) -> T
where
    F: Future<Output = Handle> + Send + 'static,
    C: Future<Output = T>,
{
    let (elector, handle) = mock();
    serve_while(handle, script, call(elector)).await
}

/// Runs one `try_acquire_or_renew` at `NOW` against `script`.
async fn round<F>(script: impl FnOnce(Handle) -> F) -> Result<bool, LeaderError>
where
    F: Future<Output = Handle> + Send + 'static,
{
    scenario(script, |elector| async move {
        elector.try_acquire_or_renew(now()).await
    })
    .await
}

/// The body every write of a Lease held by op-a since `acquired` carries.
fn held(resource_version: Option<&str>, acquired: &str, transitions: i32) -> Value {
    let mut metadata = json!({"name": "flint-operator", "namespace": "flint-system"});
    if let Some(rv) = resource_version {
        metadata["uid"] = json!("lease-uid");
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": metadata,
        "spec": {"holderIdentity": "op-a", "leaseDurationSeconds": 15,
                 "acquireTime": acquired, "renewTime": NOW_MICRO,
                 "leaseTransitions": transitions}
    })
}

// ---- one round --------------------------------------------------------------

#[tokio::test]
async fn creates_the_lease_when_none_exists() {
    let leading = round(|mut h| async move {
        expect(&mut h, Method::GET, LEASE, status(404)).await;
        let sent = expect(
            &mut h,
            Method::POST,
            &format!("{LEASES}?"),
            ok(lease("1", json!({}))),
        )
        .await;
        assert_eq!(sent, held(None, NOW_MICRO, 0));
        h
    })
    .await;
    assert!(leading.unwrap());
}

#[tokio::test]
async fn follows_a_fresh_lease_held_by_another_without_writing() {
    // Renewed 5 s ago with a 15 s duration: 10 s left.
    let leading = round(|mut h| async move {
        let fresh = lease(
            "7",
            json!({"holderIdentity": "op-b", "leaseDurationSeconds": 15,
                   "renewTime": "2026-01-01T00:00:55.000000Z", "leaseTransitions": 2}),
        );
        expect(&mut h, Method::GET, LEASE, ok(fresh)).await;
        h
    })
    .await;
    assert!(!leading.unwrap());
}

/// One round against the Lease `read` (at resourceVersion `version`):
/// the elector must write it back, held by op-a, with exactly `written`.
async fn writes_back(version: &'static str, spec: Value, written: Value) -> bool {
    round(|mut h| async move {
        expect(&mut h, Method::GET, LEASE, ok(lease(version, spec))).await;
        let sent = expect(&mut h, Method::PUT, LEASE_WRITE, ok(lease("99", json!({})))).await;
        assert_eq!(sent, written);
        h
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn takes_over_an_expired_lease_with_the_resource_version_it_read() {
    // Renewed 20 s ago with a 15 s duration: expired 5 s ago.
    let expired = json!({"holderIdentity": "op-b", "leaseDurationSeconds": 15,
                         "acquireTime": "2026-01-01T00:00:00.000000Z",
                         "renewTime": "2026-01-01T00:00:40.000000Z", "leaseTransitions": 3});
    assert!(writes_back("41", expired, held(Some("41"), NOW_MICRO, 4)).await);
}

#[tokio::test]
async fn takes_over_a_released_lease_at_once() {
    // Released a second ago (no holder): taken over although not expired.
    let released = json!({"leaseDurationSeconds": 1, "acquireTime": "2026-01-01T00:00:00.000000Z",
                          "renewTime": "2026-01-01T00:00:59.000000Z", "leaseTransitions": 1});
    assert!(writes_back("50", released, held(Some("50"), NOW_MICRO, 2)).await);
}

#[tokio::test]
async fn renews_its_own_lease_changing_only_the_renew_time() {
    let own = json!({"holderIdentity": "op-a", "leaseDurationSeconds": 15,
                     "acquireTime": "2026-01-01T00:00:00.000000Z",
                     "renewTime": "2026-01-01T00:00:58.000000Z", "leaseTransitions": 2});
    let renewed = held(Some("77"), "2026-01-01T00:00:00.000000Z", 2);
    assert!(writes_back("77", own, renewed).await);
}

#[tokio::test]
async fn a_conflicting_takeover_loses_without_error() {
    let leading = round(|mut h| async move {
        let expired = lease(
            "41",
            json!({"holderIdentity": "op-b", "leaseDurationSeconds": 15,
                   "renewTime": "2026-01-01T00:00:40.000000Z", "leaseTransitions": 3}),
        );
        expect(&mut h, Method::GET, LEASE, ok(expired)).await;
        let sent = expect(&mut h, Method::PUT, LEASE_WRITE, status(409)).await;
        assert_eq!(sent["metadata"]["resourceVersion"], "41");
        h
    })
    .await;
    assert!(!leading.unwrap());
}

#[tokio::test]
async fn a_conflicting_create_loses_without_error() {
    let leading = round(|mut h| async move {
        expect(&mut h, Method::GET, LEASE, status(404)).await;
        expect(&mut h, Method::POST, &format!("{LEASES}?"), status(409)).await;
        h
    })
    .await;
    assert!(!leading.unwrap());
}

#[tokio::test]
async fn other_failures_are_errors_naming_the_step() {
    let read = round(|mut h| async move {
        expect(&mut h, Method::GET, LEASE, status(500)).await;
        h
    })
    .await;
    assert!(
        matches!(&read, Err(LeaderError::Read { name, source: kube::Error::Api(s) })
            if name == "flint-operator" && s.code == 500),
        "{read:?}"
    );
    let write = round(|mut h| async move {
        expect(&mut h, Method::GET, LEASE, status(404)).await;
        expect(&mut h, Method::POST, &format!("{LEASES}?"), status(403)).await;
        h
    })
    .await;
    assert!(
        matches!(&write, Err(LeaderError::Write { name, source: kube::Error::Api(s) })
            if name == "flint-operator" && s.code == 403),
        "{write:?}"
    );
}

// ---- release ------------------------------------------------------------------

/// Runs one `release` against `script`.
async fn release<F>(script: impl FnOnce(Handle) -> F) -> Result<(), LeaderError>
where
    F: Future<Output = Handle> + Send + 'static,
{
    scenario(script, |elector| async move { elector.release().await }).await
}

#[tokio::test]
async fn release_clears_the_holder_so_a_standby_takes_over_at_once() {
    let spec = json!({"holderIdentity": "op-a", "leaseDurationSeconds": 15,
                      "acquireTime": "2026-01-01T00:00:00.000000Z",
                      "renewTime": "2026-01-01T00:00:58.000000Z", "leaseTransitions": 2});
    let read = lease("90", spec);
    let mut want = read.clone();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let seen = sent.clone();
    release(|mut h| async move {
        expect(&mut h, Method::GET, LEASE, ok(read)).await;
        let body = expect(&mut h, Method::PUT, LEASE_WRITE, ok(lease("91", json!({})))).await;
        *seen.lock().unwrap() = body;
        h
    })
    .await
    .unwrap();
    let sent = sent.lock().unwrap().clone();
    // Same object and resourceVersion; no holder, a one-second duration.
    want["spec"]
        .as_object_mut()
        .unwrap()
        .remove("holderIdentity");
    want["spec"]["leaseDurationSeconds"] = json!(1);
    assert_eq!(sent, want);
    // A standby reading it takes it over at once.
    let released: Lease = serde_json::from_value(sent).unwrap();
    assert_eq!(
        decide(released.spec.as_ref(), "op-b", now()),
        LeaseDecision::TakeOver
    );
}

#[tokio::test]
async fn release_leaves_a_lease_held_by_another_alone() {
    release(|mut h| async move {
        let other = lease(
            "7",
            json!({"holderIdentity": "op-b", "leaseDurationSeconds": 15,
                   "renewTime": "2026-01-01T00:00:55.000000Z"}),
        );
        expect(&mut h, Method::GET, LEASE, ok(other)).await;
        h
    })
    .await
    .unwrap();
    release(|mut h| async move {
        expect(&mut h, Method::GET, LEASE, status(404)).await;
        h
    })
    .await
    .unwrap();
}

// ---- the running loop (paused clock) ------------------------------------------

/// The running elector: its leadership, its shutdown switch, and the task.
struct Running {
    leadership: watch::Receiver<Leadership>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Waits until the elector reports `state`.
    async fn until(&mut self, state: Leadership) {
        self.leadership.wait_for(|l| *l == state).await.unwrap();
    }

    /// Shuts the elector down, waits for it to end, and checks it sent the
    /// API server nothing more (`after`: what it did last, for the message).
    async fn stop_quietly(self, h: &mut Handle, after: &str) {
        self.shutdown.send(true).unwrap();
        self.task.await.unwrap();
        assert!(h.next_request().await.is_none(), "a request after {after}");
    }
}

fn start() -> (Running, Handle) {
    let (elector, handle) = mock();
    let (lead_tx, leadership) = watch::channel(Leadership::Unknown);
    let (shutdown, stop_rx) = watch::channel(false);
    let task = tokio::spawn(elector.run(lead_tx, stop_rx));
    (
        Running {
            leadership,
            shutdown,
            task,
        },
        handle,
    )
}

/// Answers the first round: no Lease, then the create, echoed back with a
/// resourceVersion. Returns the created Lease.
async fn serve_create(h: &mut Handle) -> Value {
    expect(h, Method::GET, LEASE, status(404)).await;
    let (sent, send) = take(h, Method::POST, &format!("{LEASES}?")).await;
    assert_eq!(sent["spec"]["holderIdentity"], "op-a");
    assert_eq!(sent["spec"]["leaseTransitions"], 0);
    assert_eq!(sent["spec"]["acquireTime"], sent["spec"]["renewTime"]);
    let mut created = sent.clone();
    created["metadata"]["resourceVersion"] = json!("1");
    answer(send, StatusCode::OK, &created);
    created
}

/// Answers a renewal of `current`; returns the renewed Lease.
async fn serve_renew(h: &mut Handle, current: &Value, rv: &str) -> Value {
    expect(h, Method::GET, LEASE, ok(current.clone())).await;
    let (sent, send) = take(h, Method::PUT, LEASE_WRITE).await;
    assert_eq!(sent["metadata"], current["metadata"]);
    for unchanged in [
        "holderIdentity",
        "leaseDurationSeconds",
        "acquireTime",
        "leaseTransitions",
    ] {
        assert_eq!(
            sent["spec"][unchanged], current["spec"][unchanged],
            "{unchanged}"
        );
    }
    assert!(sent["spec"]["renewTime"].is_string());
    let mut renewed = sent.clone();
    renewed["metadata"]["resourceVersion"] = json!(rv);
    answer(send, StatusCode::OK, &renewed);
    renewed
}

/// Seconds of (paused) tokio time since `t0`.
fn at(t0: Instant) -> u64 {
    t0.elapsed().as_secs()
}

#[tokio::test(start_paused = true)]
async fn run_acquires_renews_and_steps_down_after_the_renew_deadline() {
    let t0 = Instant::now();
    let (mut running, mut h) = start();
    let server = tokio::spawn(async move {
        let mut times = vec![];
        let created = serve_create(&mut h).await;
        times.push(at(t0));
        serve_renew(&mut h, &created, "2").await;
        times.push(at(t0));
        // From here every read fails; the last renewal was at 2 s. At 12 s
        // no time is left before the renew deadline: no request is made.
        for _ in 0..4 {
            expect(&mut h, Method::GET, LEASE, status(500)).await;
            times.push(at(t0));
        }
        (h, times)
    });
    running.until(Leadership::Leading).await;
    assert_eq!(at(t0), 0);
    running
        .leadership
        .wait_for(|l| *l != Leadership::Leading)
        .await
        .unwrap();
    // Stepped down at the first failed round 10 s (renew deadline) after the
    // last renewal; the failed rounds before it kept leading.
    assert_eq!(*running.leadership.borrow(), Leadership::Following);
    assert_eq!(at(t0), 12);
    let (mut h, times) = server.await.unwrap();
    assert_eq!(times, [0, 2, 4, 6, 8, 10]);
    // Shut down while following: no release, no further request.
    running.stop_quietly(&mut h, "stepping down").await;
}

#[tokio::test(start_paused = true)]
async fn run_steps_down_when_a_renewal_hangs_past_the_renew_deadline() {
    let t0 = Instant::now();
    let (mut running, mut h) = start();
    let server = tokio::spawn(async move {
        serve_create(&mut h).await;
        // The next read never gets an answer.
        let (_, hung) = take(&mut h, Method::GET, LEASE).await;
        assert_eq!(at(t0), 2);
        (h, hung)
    });
    running.until(Leadership::Leading).await;
    let stepped_down = tokio::time::timeout(
        Duration::from_secs(60),
        running.leadership.wait_for(|l| *l != Leadership::Leading),
    )
    .await
    .map(|r| r.map(|l| *l));
    assert!(
        stepped_down.is_ok(),
        "still leading at {} s with a renewal hanging since 2 s",
        at(t0)
    );
    assert_eq!(*running.leadership.borrow(), Leadership::Following);
    // The last renewal was at 0 s.
    assert_eq!(at(t0), 10);
    let (mut h, _hung) = server.await.unwrap();
    running.stop_quietly(&mut h, "stepping down").await;
}

#[tokio::test(start_paused = true)]
async fn run_releases_the_lease_on_shutdown_while_leading() {
    let (mut running, mut h) = start();
    let created = serve_create(&mut h).await;
    running.until(Leadership::Leading).await;
    running.shutdown.send(true).unwrap();
    expect(&mut h, Method::GET, LEASE, ok(created.clone())).await;
    let sent = expect(&mut h, Method::PUT, LEASE_WRITE, ok(created.clone())).await;
    let mut want = created;
    want["spec"]
        .as_object_mut()
        .unwrap()
        .remove("holderIdentity");
    want["spec"]["leaseDurationSeconds"] = json!(1);
    assert_eq!(sent, want);
    running.task.await.unwrap();
    assert!(
        h.next_request().await.is_none(),
        "a request after the release"
    );
}

#[tokio::test(start_paused = true)]
async fn run_gives_up_a_hanging_release_after_the_renew_deadline() {
    let t0 = Instant::now();
    let (mut running, mut h) = start();
    serve_create(&mut h).await;
    running.until(Leadership::Leading).await;
    running.shutdown.send(true).unwrap();
    // The release's read never gets an answer.
    let (_, _hung) = take(&mut h, Method::GET, LEASE).await;
    let ended = tokio::time::timeout(Duration::from_secs(60), running.task).await;
    assert!(ended.is_ok(), "still releasing at {} s", at(t0));
    assert_eq!(at(t0), 10);
    assert!(
        h.next_request().await.is_none(),
        "a request after the release"
    );
}
