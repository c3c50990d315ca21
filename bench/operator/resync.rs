//! What an operator restart costs the API server: N Functions, each with
//! one ready revision, are reconciled once to settle them (the first pass
//! after an upgrade stamps every Service and writes every status), then
//! again, as the controller does for every Function when it starts and
//! every `REQUEUE_SETTLED` after. Prints, for N = 1,000 and 10,000, the
//! requests per reconcile of each pass by verb, the wall time of the
//! restart resync, and the ratio of each figure between the two sizes.
//!
//! The API server is in-process (a `tower-test` mock answering from maps
//! held in memory): the figures count the operator's requests and time its
//! own work, not a real API server's latency (see docs/benchmarks.md for
//! the estimate with one). Reconciles run 64 at a time.
//!
//! `cargo bench -p flint-operator --bench resync` (a run takes well under a
//! minute in release; `--profile dev` works too, slower).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flint_api::Function;
use flint_operator::reconcile::hash::spec_hash;
use flint_operator::reconcile::metrics::ReconcileMetrics;
use flint_operator::reconcile::{Context, reconcile};
use futures::StreamExt;
use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};

/// Requests by verb.
#[derive(Default, Clone, Debug)]
struct Counts(BTreeMap<String, u64>);

impl Counts {
    fn total(&self) -> u64 {
        self.0.values().sum()
    }
    fn writes(&self) -> u64 {
        self.0
            .iter()
            .filter(|(verb, _)| verb.as_str() != "GET")
            .map(|(_, n)| n)
            .sum()
    }
}

/// What the fake API server holds: per Function name, its Deployment,
/// Services and the Function itself (with its status).
#[derive(Default)]
struct Cluster {
    deployments: HashMap<String, Value>,
    services: HashMap<String, Vec<Value>>,
    functions: HashMap<String, Value>,
    counts: Counts,
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// The label selector's function name in `query`.
fn selected(query: &str) -> String {
    query
        .split("flint.dev%2Ffunction%3D")
        .nth(1)
        .unwrap_or_default()
        .split('&')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The Function named in a `/services/<revision>` path (`<fn>-<nnnnn>`).
fn function_of(revision: &str) -> String {
    revision
        .rsplit_once('-')
        .map_or(revision, |(f, _)| f)
        .to_owned()
}

impl Cluster {
    fn answer(&mut self, method: &Method, path: &str, query: &str, body: &[u8]) -> Value {
        *self.counts.0.entry(method.to_string()).or_default() += 1;
        let last = path.rsplit('/').next().unwrap_or_default().to_owned();
        match (method, last.as_str()) {
            (&Method::GET, "deployments") => {
                let items = self.deployments.get(&selected(query)).cloned();
                list("DeploymentList", items.into_iter().collect())
            }
            (&Method::GET, "pods") => list("PodList", vec![]),
            (&Method::GET, "services") => {
                let items = self.services.get(&selected(query)).cloned();
                list("ServiceList", items.unwrap_or_default())
            }
            (&Method::PATCH, "status") => {
                let patch: Value = serde_json::from_slice(body).unwrap_or_default();
                let name = path.rsplit('/').nth(1).unwrap_or_default().to_owned();
                let function = self.functions.entry(name).or_default();
                function["status"] = patch["status"].clone();
                function.clone()
            }
            (&Method::PATCH, revision) if path.contains("/services/") => {
                let mut service: Value = serde_json::from_slice(body).unwrap_or_default();
                service["metadata"]["uid"] = json!(format!("svc-{revision}"));
                let stored = self.services.entry(function_of(revision)).or_default();
                stored.retain(|s| s["metadata"]["name"] != revision);
                stored.push(service.clone());
                service
            }
            _ => serde_json::from_slice(body).unwrap_or(json!({})),
        }
    }
}

fn function(name: &str) -> Value {
    json!({
        "apiVersion": "flint.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "generation": 1},
        "spec": {"image": "reg/hello:1"},
        "status": {"revisions": [{"name": format!("{name}-00001"), "ready": false}]}
    })
}

fn deployment(name: &str, hash: &str) -> Value {
    let revision = format!("{name}-00001");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": revision, "namespace": "ns", "uid": format!("d-{name}"),
            "labels": {"flint.dev/function": name, "flint.dev/revision": revision, "flint.dev/generation": "1"},
            "annotations": {"flint.dev/spec-hash": hash},
            "ownerReferences": [{"apiVersion": "flint.dev/v1alpha1", "kind": "Function", "name": name,
                                 "uid": format!("uid-{name}"), "controller": true}]
        },
        "spec": {"replicas": 0, "selector": {"matchLabels": {"flint.dev/revision": revision}}, "template": {}},
        "status": {"replicas": 0}
    })
}

/// Serves `handle` from `cluster` until the client side closes.
async fn serve(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    cluster: Arc<Mutex<Cluster>>,
) {
    while let Some((request, send)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let reply = {
            let mut cluster = cluster.lock().unwrap_or_else(|e| e.into_inner());
            cluster.answer(
                &parts.method,
                parts.uri.path(),
                parts.uri.query().unwrap_or_default(),
                &bytes,
            )
        };
        let body = Body::from(serde_json::to_vec(&reply).unwrap_or_default());
        send.send_response(Response::new(body));
    }
}

/// One pass over every Function; returns (requests by verb, wall time).
async fn pass(
    ctx: &Arc<Context>,
    cluster: &Arc<Mutex<Cluster>>,
    names: &[String],
) -> (Counts, Duration) {
    let functions: Vec<Function> = {
        let mut c = cluster.lock().unwrap_or_else(|e| e.into_inner());
        c.counts = Counts::default();
        names
            .iter()
            .map(|n| serde_json::from_value(c.functions[n].clone()).unwrap())
            .collect()
    };
    let started = Instant::now();
    let failures = futures::stream::iter(functions)
        .map(|f| reconcile(Arc::new(f), ctx.clone()))
        .buffer_unordered(64)
        .filter(|r| futures::future::ready(r.is_err()))
        .count()
        .await;
    let took = started.elapsed();
    assert_eq!(failures, 0, "every reconcile succeeds");
    let counts = cluster
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .counts
        .clone();
    (counts, took)
}

/// The figures of one size: (settling pass, restart pass, restart wall time).
async fn run(n: usize) -> (Counts, Counts, Duration) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "ns");
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    let names: Vec<String> = (0..n).map(|i| format!("fn{i}")).collect();
    {
        let mut c = cluster.lock().unwrap_or_else(|e| e.into_inner());
        for name in &names {
            let f = function(name);
            let spec: Function = serde_json::from_value(f.clone()).unwrap();
            c.deployments
                .insert(name.clone(), deployment(name, &spec_hash(&spec.spec)));
            c.functions.insert(name.clone(), f);
        }
    }
    let server = tokio::spawn(serve(handle, cluster.clone()));
    let reporter = Reporter {
        controller: "flint-operator".into(),
        instance: Some("bench".into()),
    };
    let metrics = ReconcileMetrics::register(&prometheus::Registry::new()).unwrap();
    let ctx = Arc::new(Context::new(
        client,
        reporter,
        metrics,
        "example.com".into(),
    ));
    let (settle, _) = pass(&ctx, &cluster, &names).await;
    let (restart, took) = pass(&ctx, &cluster, &names).await;
    drop(ctx);
    server.abort();
    (settle, restart, took)
}

fn per(counts: &Counts, n: usize) -> String {
    let each: Vec<String> = counts
        .0
        .iter()
        .map(|(verb, k)| format!("{verb} {:.2}", *k as f64 / n as f64))
        .collect();
    format!(
        "{:.2} requests ({}), {:.2} writes",
        counts.total() as f64 / n as f64,
        each.join(", "),
        counts.writes() as f64 / n as f64
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes = [1_000, 10_000];
    let mut figures = Vec::new();
    for n in sizes {
        let (settle, restart, took) = run(n).await;
        println!("N={n}");
        println!("  settling pass, per reconcile: {}", per(&settle, n));
        println!("  restart pass, per reconcile:  {}", per(&restart, n));
        println!(
            "  restart pass: {} requests, {} writes, {:.2} s wall ({:.0} µs per Function)",
            restart.total(),
            restart.writes(),
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / n as f64
        );
        figures.push((restart.total(), restart.writes(), took));
    }
    let (a, b) = (&figures[0], &figures[1]);
    println!(
        "ratio 10,000 / 1,000: requests {:.2}, writes {}, wall {:.2}",
        b.0 as f64 / a.0 as f64,
        if a.1 == 0 {
            "0 / 0".to_owned()
        } else {
            format!("{:.2}", b.1 as f64 / a.1 as f64)
        },
        b.2.as_secs_f64() / a.2.as_secs_f64()
    );
}
