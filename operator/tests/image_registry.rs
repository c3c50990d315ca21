//! Tag-to-digest resolution against a real registry: Debian's
//! `docker-registry` (the CNCF distribution registry) on 127.0.0.1 with a
//! temporary storage directory, and images built FROM scratch and pushed by
//! the project's own `scripts/image` (buildah). Nothing leaves the machine.
//!
//! The point of pinning: a revision cut from `hello:v1` runs the digest the
//! tag named then; pushing the tag again changes what a new resolution
//! finds, never what the existing revision runs.

// Only the happy path's helpers are used here; the failures are in
// reconcile_image.rs.
#[allow(dead_code)]
#[path = "support/api_server.rs"]
mod api_server;
#[path = "support/mock_serve.rs"]
mod mock_serve;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use api_server::{BY_FN, Exchange, NS, SSA, exchange, mocked_client};
use flint_api::Function;
use flint_operator::image::{RegistryList, Resolver};
use flint_operator::reconcile::hash::spec_hash;
use flint_operator::reconcile::metrics::ReconcileMetrics;
use flint_operator::reconcile::pin::ImagePinning;
use flint_operator::reconcile::{Context, reconcile};
use http::Method;
use kube::runtime::events::Reporter;
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use serde_json::{Value, json};

/// A `docker-registry` on a free loopback port, stopped and its storage
/// removed on drop.
struct Registry {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Registry {
    /// A registry anyone may pull from and push to.
    fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry that asks for `user:password` (HTTP basic, an htpasswd
    /// file with a bcrypt hash made by Python's crypt module).
    fn start_private(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password)))
    }

    fn start_with(login: Option<(&str, &str)>) -> Self {
        assert!(
            Command::new("docker-registry")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "docker-registry is not installed (apt-get install -y docker-registry; scripts/test installs it)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("flint-registry-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: flint-test\n",
            dir.join("data").display()
        );
        if let Some((user, password)) = login {
            let htpasswd = dir.join("htpasswd");
            let out = Command::new("python3")
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    "import crypt, sys; print(sys.argv[1] + ':' + crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                    user,
                    password,
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "hashing the password: {out:?}");
            std::fs::write(&htpasswd, &out.stdout).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: flint-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, yaml).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Self { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(&registry.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {}",
                registry.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Runs `scripts/image ARGS...`, failing the test with its output if it fails.
fn image_script(args: &[&str]) {
    image_script_as(None, args);
}

/// Runs `scripts/image ARGS...` logging in to registries as `creds`
/// (`user:password`), failing the test with its output if it fails.
fn image_script_as(creds: Option<&str>, args: &[&str]) {
    let mut command = Command::new(repo_root().join("scripts/image"));
    command.args(args).env_remove("FLINT_REGISTRY_CREDS");
    if let Some(creds) = creds {
        command.env("FLINT_REGISTRY_CREDS", creds);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "scripts/image {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds a tiny image holding `text` and pushes it to `dest`; returns the
/// digest the push reports.
fn push_marker(text: &str, dest: &str, scratch: &Path) -> String {
    let local = format!("localhost/flint-test/marker-{}:latest", std::process::id());
    image_script(&["marker", &local, text]);
    push_marker_image(&local, dest, scratch)
}

/// Pushes the built image `local` to `dest`; returns the digest the push reports.
fn push_marker_image(local: &str, dest: &str, scratch: &Path) -> String {
    let digest_file = scratch.join("digest");
    image_script(&["push", local, dest, digest_file.to_str().unwrap()]);
    std::fs::read_to_string(digest_file)
        .unwrap()
        .trim()
        .to_owned()
}

fn resolver(registry: &Registry) -> Resolver {
    Resolver::new(
        RegistryList::new([registry.addr.as_str()]),
        Duration::from_secs(5),
    )
}

async fn resolve(registry: &Registry, image: &str) -> String {
    let reference = Reference::try_from(image).unwrap();
    resolver(registry)
        .digest(&reference, &RegistryAuth::Anonymous)
        .await
        .unwrap()
}

// ---- the reconciler, against a mocked API server and the real registry ----

fn function(spec: Value, generation: i64) -> Function {
    serde_json::from_value(json!({
        "apiVersion": "flint.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello", "namespace": "ns", "uid": "uid-1", "generation": generation},
        "spec": spec,
    }))
    .unwrap()
}

fn context(registry: &Registry, client: kube::Client) -> Arc<Context> {
    let reporter = Reporter {
        controller: "flint-operator".into(),
        instance: Some("test".into()),
    };
    let metrics = ReconcileMetrics::register(&prometheus::Registry::new()).unwrap();
    Arc::new(
        Context::new(client, reporter, metrics, "example.com".into()).with_image_pinning(
            ImagePinning {
                skip: RegistryList::default_skip(),
                resolver: resolver(registry),
            },
        ),
    )
}

/// Revision `name` as the API server lists it, cut from `spec`, running `image`.
fn deployment(name: &str, spec: &Value, image: &str) -> Value {
    let hash = spec_hash(&function(spec.clone(), 1).spec);
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": "ns",
            "labels": {"flint.dev/function": "hello", "flint.dev/revision": name, "flint.dev/generation": "1"},
            "annotations": {"flint.dev/spec-hash": hash},
            "ownerReferences": [{"apiVersion": "flint.dev/v1alpha1", "kind": "Function", "name": "hello", "uid": "uid-1", "controller": true}]
        },
        "spec": {"replicas": 1, "selector": {"matchLabels": {"flint.dev/revision": name}},
                 "template": {"spec": {"containers": [{"name": "app", "image": image}]}}},
        "status": {"availableReplicas": 1, "readyReplicas": 1, "replicas": 1}
    })
}

fn script(deployments: Vec<Value>, rest: Vec<Exchange>) -> Vec<Exchange> {
    let list = |kind: &str, v: &str, items: Vec<Value>| json!({"apiVersion": v, "kind": kind, "metadata": {}, "items": items});
    let mut out = vec![
        exchange(
            Method::GET,
            format!("/apis/apps/v1{NS}/deployments{BY_FN}"),
            None,
            list("DeploymentList", "apps/v1", deployments),
        ),
        exchange(
            Method::GET,
            format!("/api/v1{NS}/pods{BY_FN}"),
            None,
            list("PodList", "v1", vec![]),
        ),
        exchange(
            Method::GET,
            format!("/api/v1{NS}/services{BY_FN}"),
            None,
            list("ServiceList", "v1", vec![]),
        ),
    ];
    out.extend(rest);
    out
}

/// The Function's ServiceAccount `name`, read for its imagePullSecrets, naming `secrets`.
fn get_account(name: &str, secrets: &[&str]) -> Exchange {
    let refs: Vec<Value> = secrets.iter().map(|s| json!({"name": s})).collect();
    exchange(
        Method::GET,
        format!("/api/v1{NS}/serviceaccounts/{name}"),
        None,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name, "namespace": "ns"}, "imagePullSecrets": refs}),
    )
}

fn apply_deployment(name: &str, image: &str) -> Exchange {
    exchange(
        Method::PATCH,
        format!("/apis/apps/v1{NS}/deployments/{name}{SSA}"),
        Some(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}),
        ),
        Value::Null,
    )
}

fn apply_service(name: &str) -> Exchange {
    exchange(
        Method::PATCH,
        format!("/api/v1{NS}/services/{name}{SSA}"),
        Some(json!({"metadata": {"name": name}})),
        Value::Null,
    )
}

fn apply_status(images: Value) -> Exchange {
    exchange(
        Method::PATCH,
        format!("/apis/flint.dev/v1alpha1/namespaces/ns/functions/hello/status{SSA}"),
        Some(json!({"status": {"images": images}})),
        serde_json::to_value(function(json!({"image": "x"}), 1)).unwrap(),
    )
}

fn event(reason: &str) -> Exchange {
    exchange(
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/ns/events?",
        Some(json!({"reason": reason})),
        Value::Null,
    )
}

async fn reconcile_once(registry: &Registry, f: Function, script: Vec<Exchange>) {
    let (client, verifier) = mocked_client();
    let ctx = context(registry, client);
    // The context (and its client) outlives the check: a dropped client
    // would look like one more request to the verifier.
    let result = verifier
        .check(script, reconcile(Arc::new(f), ctx.clone()))
        .await;
    assert!(result.is_ok(), "{result:?}");
    drop(ctx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_tag_is_pinned_and_a_re_push_leaves_the_revision_alone() {
    let registry = Registry::start();
    let addr = registry.addr.clone();
    let tag = format!("{addr}/team/hello:v1");

    // Push A; a new revision resolves the tag to A's digest and runs it.
    let pushed_a = push_marker("content A", &tag, &registry.dir);
    let a = resolve(&registry, &tag).await;
    assert_eq!(a, pushed_a, "the resolved digest is the one pushed");
    let pinned_a = format!("{addr}/team/hello@{a}");
    let v1 = json!({"image": tag});
    reconcile_once(
        &registry,
        function(v1.clone(), 1),
        script(
            vec![],
            vec![
                get_account("default", &[]),
                apply_deployment("hello-00001", &pinned_a),
                apply_service("hello-00001"),
                apply_status(json!([{"revision": "hello-00001", "image": pinned_a}])),
                event("RevisionCreated"),
            ],
        ),
    )
    .await;

    // Push B under the same tag: a new resolution finds B ...
    let pushed_b = push_marker("content B", &tag, &registry.dir);
    assert_ne!(pushed_b, a, "different content, different digest");
    let b = resolve(&registry, &tag).await;
    assert_eq!(b, pushed_b);

    // ... but the existing revision is not resolved again: no Deployment is
    // applied, and it still reports (and runs) A.
    let existing = deployment("hello-00001", &v1, &pinned_a);
    reconcile_once(
        &registry,
        function(v1.clone(), 1),
        script(
            vec![existing.clone()],
            vec![
                apply_service("hello-00001"),
                apply_status(json!([{"revision": "hello-00001", "image": pinned_a}])),
                event("RevisionReady"),
            ],
        ),
    )
    .await;

    // A new revision (another setting changed) is cut with B, the old keeps A.
    let pinned_b = format!("{addr}/team/hello@{b}");
    let v2 = json!({"image": tag, "env": [{"name": "GREETING", "value": "hi"}]});
    reconcile_once(
        &registry,
        function(v2, 2),
        script(
            vec![existing],
            vec![
                get_account("default", &[]),
                apply_deployment("hello-00002", &pinned_b),
                apply_service("hello-00001"),
                apply_service("hello-00002"),
                apply_status(json!([
                    {"revision": "hello-00002", "image": pinned_b},
                    {"revision": "hello-00001", "image": pinned_a},
                ])),
                event("RevisionCreated"),
                event("RevisionReady"),
            ],
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_platform_tag_is_pinned_to_its_index() {
    // The tag names an image index (one image per platform): the revision
    // is pinned to the index, not to one platform's image, so every node
    // still pulls its own.
    let registry = Registry::start();
    let pid = std::process::id();
    let (amd, arm, list) = (
        format!("localhost/flint-test/amd-{pid}:latest"),
        format!("localhost/flint-test/arm-{pid}:latest"),
        format!("localhost/flint-test/index-{pid}:latest"),
    );
    image_script(&["marker", &amd, "amd64 build"]);
    image_script(&["marker", &arm, "arm64 build"]);
    image_script(&["index", &list, &amd, &arm]);
    let tag = format!("{}/team/multi:v1", registry.addr);
    let digest_file = registry.dir.join("index-digest");
    image_script(&["push-index", &list, &tag, digest_file.to_str().unwrap()]);
    let index = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_owned();

    let resolved = resolve(&registry, &tag).await;
    assert_eq!(resolved, index, "the index's digest, not a platform's");
    // Each platform's manifest has a digest of its own, which is not it.
    for (i, platform) in [&amd, &arm].into_iter().enumerate() {
        let one = format!("{}/team/single-{i}:v1", registry.addr);
        let pushed = push_marker_image(platform, &one, &registry.dir);
        assert_ne!(pushed, resolved);
    }
}

/// A `kubernetes.io/dockerconfigjson` Secret `name` logging in to `registry`.
fn pull_secret(name: &str, registry: &str, user: &str, password: &str) -> Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let config = json!({"auths": {registry: {"auth": b64(&format!("{user}:{password}"))}}});
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
           "metadata": {"name": name, "namespace": "ns"},
           "data": {".dockerconfigjson": b64(&config.to_string())}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_registry_is_asked_with_the_functions_pull_secret() {
    let registry = Registry::start_private("alice", "s3cret");
    let addr = registry.addr.clone();
    let tag = format!("{addr}/team/private:v1");
    let local = format!("localhost/flint-test/private-{}:latest", std::process::id());
    image_script(&["marker", &local, "private content"]);
    let digest_file = registry.dir.join("digest");
    image_script_as(
        Some("alice:s3cret"),
        &["push", &local, &tag, digest_file.to_str().unwrap()],
    );
    let pushed = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_owned();

    // Anonymous: refused, and the error names the registry and the image.
    let reference = Reference::try_from(tag.as_str()).unwrap();
    let refused = resolver(&registry)
        .digest(&reference, &RegistryAuth::Anonymous)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(&addr) && refused.contains("team/private:v1"),
        "{refused}"
    );

    // With the Secret the Function names: the revision is cut, pinned.
    let spec = json!({"image": tag, "imagePullSecrets": [{"name": "regcred"}]});
    let pinned = format!("{addr}/team/private@{pushed}");
    let get_secret = |secret: Value| {
        exchange(
            Method::GET,
            format!("/api/v1{NS}/secrets/regcred"),
            None,
            secret,
        )
    };
    reconcile_once(
        &registry,
        function(spec.clone(), 1),
        script(
            vec![],
            vec![
                get_secret(pull_secret("regcred", &addr, "alice", "s3cret")),
                get_account("default", &[]),
                apply_deployment("hello-00001", &pinned),
                apply_service("hello-00001"),
                apply_status(json!([{"revision": "hello-00001", "image": pinned}])),
                event("RevisionCreated"),
            ],
        ),
    )
    .await;

    // A wrong password: no revision, and the status says why.
    let (client, verifier) = mocked_client();
    let ctx = context(&registry, client);
    let result = verifier
        .check(
            script(
                vec![],
                vec![
                    get_secret(pull_secret("regcred", &addr, "alice", "wrong")),
                    get_account("default", &[]),
                    exchange(
                        Method::PATCH,
                        format!(
                            "/apis/flint.dev/v1alpha1/namespaces/ns/functions/hello/status{SSA}"
                        ),
                        Some(json!({"status": {"conditions": [
                            {"type": "Ready", "reason": "ImageResolutionFailed"},
                            {"type": "ConfigurationsReady", "reason": "ImageResolutionFailed"},
                            {"type": "RoutesReady"},
                        ]}})),
                        serde_json::to_value(function(json!({"image": "x"}), 1)).unwrap(),
                    ),
                    event("ImageResolutionFailed"),
                ],
            ),
            reconcile(Arc::new(function(spec, 1)), ctx.clone()),
        )
        .await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains(&addr), "{error}");
    drop(ctx);

    // The Secret named by the Function's ServiceAccount, not by the
    // Function: used too (Kubernetes adds it to the pods').
    let spec = json!({"image": tag, "serviceAccountName": "builder"});
    reconcile_once(
        &registry,
        function(spec, 1),
        script(
            vec![],
            vec![
                get_account("builder", &["regcred"]),
                get_secret(pull_secret("regcred", &addr, "alice", "s3cret")),
                apply_deployment("hello-00001", &pinned),
                apply_service("hello-00001"),
                apply_status(json!([{"revision": "hello-00001", "image": pinned}])),
                event("RevisionCreated"),
            ],
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_is_a_registry_error_naming_the_image() {
    let registry = Registry::start();
    let image = format!("{}/team/absent:v9", registry.addr);
    let reference = Reference::try_from(image.as_str()).unwrap();
    let error = resolver(&registry)
        .digest(&reference, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&registry.addr), "{text}");
    assert!(text.contains("team/absent:v9"), "{text}");
}
