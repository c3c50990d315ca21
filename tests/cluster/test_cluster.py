"""Flint on a real Kubernetes (scripts/cluster): the chart installs with its
own accounts, the API server enforces the CRD, a Function scales from zero
and back, an example with a sidecar runs hardened, rollouts and scale-downs
lose no request, a new leader takes over, cluster-local Functions, API keys,
custom domains and TLS are enforced by the gateway,
and uninstalling leaves nothing behind.

The tests run in file order and share one installation (installed by the
first, removed by the last). Run them with scripts/cluster-e2e.
"""

import base64
import http.client
import json
import re
import secrets
import socket
import ssl
import subprocess
import time

import yaml

from kube import (
    GATEWAY,
    ROOT,
    CommandFailed,
    Load,
    helm,
    is_ready,
    kjson,
    kubectl,
    request,
    running_pods,
    wait_until,
)

NS = "flint-system"
FN_NS = "flint-e2e"
DOMAIN = "flint.test"
RELEASE = "flint"
VALUES = ROOT / "tests" / "cluster" / "values.yaml"
RUST_IMAGE = "localhost/flint-examples/hello-rust:dev"


def host(function, namespace=FN_NS):
    return f"{function}.{namespace}.{DOMAIN}"


def example(name, **scale):
    """An example's Function manifest with the locally built image, in the
    test namespace, with `scale` settings merged in."""
    doc = yaml.safe_load((ROOT / "examples" / name / "function.yaml").read_text())
    doc["metadata"]["namespace"] = FN_NS
    doc["spec"]["image"] = f"localhost/flint-examples/{name}:dev"
    if name == "hello-rust":
        # Its `command` is how `flint dev` builds and runs it (cargo run);
        # in the image, the entrypoint is the built binary.
        doc["spec"].pop("command", None)
    doc["spec"].setdefault("scale", {}).update(scale)
    return doc


def function(name, **spec):
    doc = {
        "apiVersion": "flint.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": FN_NS},
        "spec": {"image": RUST_IMAGE, "port": 8080, **spec},
    }
    return doc


def apply(doc):
    kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def revision_pods(revision):
    return running_pods(FN_NS, f"flint.dev/revision={revision}")


def ready_pods(revision):
    return [p for p in revision_pods(revision) if is_ready(p)]


def status(name):
    return kjson("-n", FN_NS, "get", "function", name).get("status", {})


def routed(name):
    """The Function's status names a revision taking traffic."""
    s = status(name)
    return s.get("traffic") and s.get("latestCreatedRevision")


def events(name):
    items = kjson("-n", FN_NS, "get", "events", "--field-selector", f"involvedObject.name={name}")
    return [(e.get("reason"), e.get("message") or e.get("note")) for e in items["items"]]


def lease_holder():
    lease = kjson("-n", NS, "get", "lease", f"{RELEASE}-operator")
    return lease["spec"].get("holderIdentity")


# ---------------------------------------------------------------- install


def test_chart_installs_with_its_own_accounts_and_one_leader():
    kubectl("create", "namespace", FN_NS)
    helm(
        "install", RELEASE, str(ROOT / "charts" / "flint"), "--namespace", NS,
        "--create-namespace", "-f", str(VALUES), "--wait", "--timeout", "180s",
    )
    for component, sa in (("operator", f"{RELEASE}-operator"), ("gateway", f"{RELEASE}-gateway")):
        items = running_pods(NS, f"app.kubernetes.io/component={component}")
        assert len(items) == 2, f"{component}: {len(items)} pods"
        for pod in items:
            assert is_ready(pod), f"{pod['metadata']['name']} not Ready"
            assert pod["spec"]["serviceAccountName"] == sa
            ctx = pod["spec"]["containers"][0]["securityContext"]
            assert ctx.get("runAsNonRoot") or pod["spec"]["securityContext"].get("runAsNonRoot")
    operators = {p["metadata"]["name"] for p in running_pods(NS, "app.kubernetes.io/component=operator")}
    holder = wait_until("an operator to hold the Lease", lease_holder, 60)
    assert holder in operators, f"Lease held by {holder}, not one of {operators}"
    # Least privilege, as the real authorizer sees it.
    gw = f"system:serviceaccount:{NS}:{RELEASE}-gateway"
    op = f"system:serviceaccount:{NS}:{RELEASE}-operator"
    can = lambda who, *what: kubectl("auth", "can-i", "--as", who, *what, check=False).strip()
    assert can(gw, "watch", "functions.flint.dev", "-A") == "yes"
    assert can(gw, "patch", "functions.flint.dev", "-A") == "no"
    # Secrets: read and watched (API keys and certificates the Functions
    # name), never written.
    for verb in ("get", "list", "watch"):
        assert can(gw, verb, "secrets", "-A") == "yes", verb
    for verb in ("create", "patch", "delete"):
        assert can(gw, verb, "secrets", "-A") == "no", verb
    assert can(op, "patch", "deployments.apps/scale", "-n", FN_NS) == "yes"
    assert can(op, "create", "pods", "-n", FN_NS) == "no"
    # Secrets and ServiceAccounts: only read by name, for the imagePullSecrets
    # a Function or its ServiceAccount names, to resolve a new revision's
    # image tag; never listed or watched.
    for kind in ("secrets", "serviceaccounts"):
        assert can(op, "get", kind, "-n", FN_NS) == "yes"
        assert can(op, "list", kind, "-n", FN_NS) == "no"
        assert can(op, "watch", kind, "-n", FN_NS) == "no"


def test_crd_printer_columns_explain_and_refusals_naming_the_field():
    crd = kjson("get", "crd", "functions.flint.dev")
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conds.get("Established") == "True", conds
    header = kubectl("get", "fn", "-A").splitlines()
    assert header == [] or True  # no Functions yet: kubectl prints nothing to stdout
    apply(function("columns", scale={"initial": 0}))
    header = kubectl("-n", FN_NS, "get", "fn").splitlines()[0].split()
    assert header == ["NAME", "URL", "READY", "REPLICAS", "LATEST", "AGE"], header
    explain = kubectl("explain", "function.spec.scale")
    for field in ("min", "max", "target", "scaleToZeroGracePeriod", "keepAlive"):
        assert re.search(rf"^\s+{field}\s", explain, re.M), f"explain lacks {field}:\n{explain}"
    kubectl("-n", FN_NS, "delete", "fn", "columns", "--wait=true")

    cases = yaml.safe_load((ROOT / "api" / "tests" / "invalid_specs.yaml").read_text())
    assert len(cases) >= 20
    for case in cases:
        spec = {"image": RUST_IMAGE, **yaml.safe_load(case["spec"])}
        doc = {
            "apiVersion": "flint.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "invalid", "namespace": FN_NS},
            "spec": spec,
        }
        try:
            kubectl("create", "-f", "-", input=yaml.safe_dump(doc))
        except CommandFailed as err:
            at = case.get("apiPath", case["path"])
            assert "is invalid" in err.stderr, err.stderr
            if at:
                assert f"{at}:" in err.stderr, f"{case['spec']!r}: refusal does not name {at}: {err.stderr}"
        else:
            kubectl("-n", FN_NS, "delete", "fn", "invalid", "--wait=true")
            raise AssertionError(f"the API server accepted {case['spec']!r}")
    assert kjson("-n", FN_NS, "get", "fn")["items"] == []


# ---------------------------------------------------------------- scaling


def test_an_unresolvable_image_tag_cuts_no_revision_and_says_why():
    """Tag-to-digest resolution on the cluster: an image in a skipped registry
    (localhost, the images `ctr import` loaded) runs as written; a tag that
    cannot be resolved (a registry that does not exist) cuts no revision, the
    previous one keeps its traffic, and the status and an Event say why."""
    apply(function("pinning", scale={"initial": 0}))
    wait_until("pinning to be routed", lambda: routed("pinning"), 60)
    s = status("pinning")
    rev = s["latestCreatedRevision"]
    assert s.get("images") == [{"revision": rev, "image": RUST_IMAGE}], s.get("images")

    apply(function("pinning", image="registry.invalid/flint/absent:v1", scale={"initial": 0}))

    def held():
        conds = {c["type"]: c for c in status("pinning").get("conditions", [])}
        c = conds.get("ConfigurationsReady", {})
        return c if c.get("reason") == "ImageResolutionFailed" else None

    cond = wait_until("the ImageResolutionFailed condition", held, 60)
    assert "registry.invalid" in cond["message"], cond
    s = status("pinning")
    assert s["latestCreatedRevision"] == rev, s
    assert [t["revisionName"] for t in s["traffic"]] == [rev], s["traffic"]
    deployments = kjson("-n", FN_NS, "get", "deployments", "-l", "flint.dev/function=pinning")
    assert [d["metadata"]["name"] for d in deployments["items"]] == [rev]
    wait_until(
        "the ImageResolutionFailed Event",
        lambda: "ImageResolutionFailed" in [r for r, _ in events("pinning")],
        30,
    )
    kubectl("-n", FN_NS, "delete", "fn", "pinning", "--wait=true")


def test_example_scales_from_zero_serves_and_returns_to_zero():
    doc = example("hello-rust", initial=0, min=0, stableWindow="6s", scaleToZeroGracePeriod="5s")
    apply(doc)
    wait_until("hello-rust to be routed", lambda: routed("hello-rust"), 60)
    rev = status("hello-rust")["latestCreatedRevision"]
    assert revision_pods(rev) == []
    start = time.monotonic()
    reply = request(host("hello-rust"), "/from-zero")
    cold = time.monotonic() - start
    assert reply.status == 200, reply
    assert "from Flint! (rust, path /from-zero)" in reply.body
    print(f"cold start through the gateway: {cold:.3f}s")
    # The gateway routes to a replica as soon as its port answers, which can
    # be before the kubelet's probe marks the pod Ready.
    wait_until("a Ready pod", lambda: len(ready_pods(rev)) >= 1, 30)
    # Idle: back to no pods after the stable window and the grace period.
    wait_until("hello-rust to scale to zero", lambda: revision_pods(rev) == [], 90, interval=1)
    s = status("hello-rust")
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Ready"]["status"] == "True", conds
    assert s["latestReadyRevision"] == rev
    reasons = [r for r, _ in events("hello-rust")]
    assert "RevisionCreated" in reasons and "RevisionReady" in reasons, reasons
    # A request after the way back to zero wakes it again.
    assert request(host("hello-rust")).status == 200


def test_sidecar_example_runs_with_its_security_context_and_probes():
    """examples/sidecar-python: the sidecar runs next to the function and
    ships the access log it writes to their shared emptyDir; both
    containers carry the example's hardened security context on top of
    Flint's defaults, and the function container its own probes."""
    doc = example("sidecar-python", min=1, initial=1)
    for sidecar in doc["spec"]["sidecars"]:
        sidecar["image"] = doc["spec"]["image"]
    apply(doc)
    wait_until("sidecar-python to be routed", lambda: routed("sidecar-python"), 60)
    rev = status("sidecar-python")["latestCreatedRevision"]
    wait_until("a Ready sidecar-python pod", lambda: ready_pods(rev), 180, interval=1)
    reply = request(host("sidecar-python"), "/shipped")
    assert reply.status == 200, reply
    assert "python with a sidecar, path /shipped" in reply.body, reply
    pod = ready_pods(rev)[0]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert "shipper" in containers and len(containers) == 2, list(containers)
    statuses = pod["status"]["containerStatuses"]
    assert all(c["ready"] for c in statuses), statuses
    for name, c in containers.items():
        sc = c["securityContext"]
        assert sc.get("runAsNonRoot") is True, (name, sc)
        assert sc.get("readOnlyRootFilesystem") is True, (name, sc)
        assert sc.get("allowPrivilegeEscalation") is False, (name, sc)
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], (name, sc)
    assert pod["spec"]["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    app = next(c for n, c in containers.items() if n != "shipper")
    assert app["readinessProbe"]["httpGet"]["path"] == "/healthz", app
    assert app["livenessProbe"]["httpGet"]["path"] == "/healthz", app
    assert pod["metadata"]["labels"].get("example.flint.dev/kind") == "sidecar"
    name = pod["metadata"]["name"]
    wait_until(
        "the shipper to ship the request's access-log line",
        lambda: '"path": "/shipped"' in kubectl("-n", FN_NS, "logs", name, "-c", "shipper"),
        30,
        interval=1,
    )
    kubectl("-n", FN_NS, "delete", "fn", "sidecar-python", "--wait=true")
    wait_until("sidecar-python's pods gone", lambda: revision_pods(rev) == [], 120, interval=1)


def test_rollout_under_steady_load_fails_no_request():
    apply(function("rollout", env=[{"name": "GREETING", "value": "one"}], scale={"min": 1, "initial": 1}))
    wait_until("rollout revision 1 ready", lambda: status("rollout").get("latestReadyRevision"), 90)
    load = Load(host("rollout"), workers=4).start()
    try:
        time.sleep(3)
        apply(function("rollout", env=[{"name": "GREETING", "value": "two"}], scale={"min": 1, "initial": 1}))
        wait_until("the new revision to serve", lambda: load.bodies.get("two", 0) > 50, 120)
        time.sleep(3)
    finally:
        load.stop()
    assert status("rollout")["latestReadyRevision"].endswith("-00002")
    assert load.bodies.get("one", 0) > 0 and load.bodies.get("two", 0) > 0, load.bodies
    assert load.failures == [], f"{len(load.failures)} of {load.ok + len(load.failures)} failed: {load.failures[:5]}"


def test_scale_down_under_load_with_long_requests_fails_no_request():
    apply(
        function(
            "drain",
            timeoutSeconds=60,
            scale={"min": 0, "max": 4, "initial": 0, "target": 1, "targetUtilization": 100,
                   "stableWindow": "6s", "scaleToZeroGracePeriod": "5s"},
        )
    )
    wait_until("drain to be routed", lambda: routed("drain"), 60)
    rev = status("drain")["latestCreatedRevision"]
    # Three clients with 8 s requests need three replicas...
    heavy = Load(host("drain"), path="/?sleep_ms=8000", workers=3, timeout=70).start()
    light = None
    try:
        wait_until("three replicas", lambda: len(ready_pods(rev)) >= 3, 90, interval=1)
        # ...then two of them stop while one goes on: the autoscaler removes
        # replicas that may still be serving an 8 s request.
        light = Load(host("drain"), path="/?sleep_ms=6000", workers=1, timeout=70).start()
        heavy.stop()
        wait_until("scale-down to one replica", lambda: len(revision_pods(rev)) <= 1, 90, interval=1)
        time.sleep(8)
    finally:
        heavy.stop()
        if light:
            light.stop()
    failures = heavy.failures + light.failures
    assert heavy.ok >= 3 and light.ok >= 1, (heavy.ok, light.ok)
    assert failures == [], f"{len(failures)} failed: {failures[:5]}"
    # The replicas left only after every gateway had drained them.
    logs = "".join(kubectl("-n", NS, "logs", p["metadata"]["name"])
                   for p in running_pods(NS, "app.kubernetes.io/component=gateway"))
    assert "drain answered revision=flint-e2e/drain-00001" in logs, logs[-2000:]


def keep_alive_entry(name, revision):
    return next((e for e in status(name).get("keepAlive", []) if e["revision"] == revision), None)


def test_leader_failover_scaling_goes_on():
    rev = status("hello-rust")["latestCreatedRevision"]
    wait_until("hello-rust at zero", lambda: revision_pods(rev) == [], 90, interval=1)
    # The leader says in the status why the revision has no replica, and
    # persists when its last request ended.
    entry = wait_until("status.keepAlive of the revision at zero",
                       lambda: (e := keep_alive_entry("hello-rust", rev)) and "released" in e["message"] and e, 30)
    assert entry["policy"] == "fixed" and entry["message"].startswith("fixed"), entry
    assert entry.get("learned"), entry
    before = lease_holder()
    kubectl("-n", NS, "delete", "pod", before, "--wait=false")
    after = wait_until("another operator to take the Lease",
                       lambda: (h := lease_holder()) and h != before and h, 60)
    assert after != before
    # The new leader takes the revision over at zero: several decisions
    # later it has woken nothing (no `initial` hold for an old revision),
    # and it explains the revision as the old leader did.
    time.sleep(12)
    assert revision_pods(rev) == [], "the new leader woke a revision at zero"
    # (Without what the old leader persisted it would know of no request.)
    message = keep_alive_entry("hello-rust", rev)["message"]
    assert message.startswith("fixed") and "released at" in message, message
    # Scaling goes on under the new leader: from zero and back.
    assert request(host("hello-rust"), "/after-failover").status == 200
    # The gateway routes to a replica as soon as its port answers, which can
    # be before the kubelet's probe marks the pod Ready.
    wait_until("a Ready pod", lambda: len(ready_pods(rev)) >= 1, 30)
    wait_until("hello-rust back at zero", lambda: revision_pods(rev) == [], 90, interval=1)


# ---------------------------------------------------------------- access


def service_ip(name, namespace=NS):
    return kjson("-n", namespace, "get", "service", name)["spec"]["clusterIP"]


def condition(name, type_):
    return next((c for c in status(name).get("conditions", []) if c["type"] == type_), {})


def deployment_replicas(revision):
    return kjson("-n", FN_NS, "get", "deployment", revision)["spec"].get("replicas")


def delete_functions(*names):
    kubectl("-n", FN_NS, "delete", "fn", *names, "--wait=true", timeout=120)


def test_cluster_local_function_answers_only_on_the_internal_service():
    """spec.visibility: cluster-local: the in-cluster Service
    (<release>-gateway-internal, port 80) serves it; the public Service
    answers 404 as for a Function that does not exist, by host and by path."""
    apply(function("private", visibility="cluster-local", scale={"initial": 0}))
    wait_until("private to be routed", lambda: routed("private"), 60)
    internal = f"{service_ip(f'{RELEASE}-gateway-internal')}:80"
    reply = request(host("private"), "/inside", address=internal)
    assert reply.status == 200, reply
    assert "from Flint! (rust, path /inside)" in reply.body, reply
    # Both gateway replicas (the Service picks one per connection) know it...
    for _ in range(6):
        assert request(host("private"), address=internal).status == 200
    # ...and neither shows it on the public Service.
    unknown = request(host("no-such-function"))
    assert unknown.status == 404, unknown
    for _ in range(6):
        reply = request(host("private"), "/outside")
        assert reply.status == 404, reply
        assert "from Flint!" not in reply.body, reply
        reply = request("anything.example", f"/function/{FN_NS}/private/outside")
        assert reply.status == 404, reply
        assert "from Flint!" not in reply.body, reply
    delete_functions("private")


def test_api_keys_refuse_without_waking_and_follow_the_secret():
    """spec.auth.apiKeys from a Secret: no key or a wrong one gets 401 with
    WWW-Authenticate and leaves the Function at zero; a key of the Secret is
    served; a rotated Secret applies within seconds, with no restart and no
    new revision."""
    old_key, new_key = secrets.token_hex(32), secrets.token_hex(32)
    kubectl("-n", FN_NS, "create", "secret", "generic", "keyed-keys", f"--from-literal=ci={old_key}")
    apply(function(
        "keyed",
        auth={"apiKeys": {"keys": {"secretName": "keyed-keys"}}},
        scale={"min": 0, "initial": 0, "stableWindow": "6s", "scaleToZeroGracePeriod": "5s"},
    ))
    wait_until("keyed to be routed", lambda: routed("keyed"), 60)
    rev = status("keyed")["latestCreatedRevision"]
    wait_until("keyed's Deployment at 0", lambda: deployment_replicas(rev) == 0, 30)
    bearer = lambda key: {"Authorization": f"Bearer {key}"}
    for headers in ({}, bearer("wrong"), bearer(new_key)):
        for _ in range(4):
            reply = request(host("keyed"), headers=headers)
            assert reply.status == 401, (headers, reply)
            assert reply.headers.get("www-authenticate", "").startswith('Bearer realm="flint"'), reply
            assert "from Flint!" not in reply.body, reply
    # No credential: a bare challenge (RFC 6750 3.1); a wrong one: invalid_token.
    missing = request(host("keyed"))
    assert "missing credentials" in missing.body, missing
    assert "error=" not in missing.headers["www-authenticate"], missing
    wrong = request(host("keyed"), headers=bearer("wrong"))
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"], wrong
    # Refused requests woke nothing.
    time.sleep(4)
    assert deployment_replicas(rev) == 0
    assert revision_pods(rev) == []
    reply = request(host("keyed"), "/with-key", headers=bearer(old_key))
    assert reply.status == 200, reply
    assert "from Flint! (rust, path /with-key)" in reply.body, reply

    # Rotation: the new key in, the old one out, in one change.
    patch = {"data": {"ci": None, "next": base64.b64encode(new_key.encode()).decode()}}
    kubectl("-n", FN_NS, "patch", "secret", "keyed-keys", "--type=merge", "-p", json.dumps(patch))
    rotated_at = time.monotonic()

    def rotated():
        # Several requests each way, so that both gateway replicas answer.
        return all(request(host("keyed"), headers=bearer(old_key)).status == 401 for _ in range(4)) and all(
            request(host("keyed"), headers=bearer(new_key)).status == 200 for _ in range(4)
        )

    wait_until("the rotated key to apply on every gateway", rotated, 10)
    print(f"API key rotation applied in {time.monotonic() - rotated_at:.1f}s")
    s = status("keyed")
    assert s["latestCreatedRevision"] == rev, s
    deployments = kjson("-n", FN_NS, "get", "deployments", "-l", "flint.dev/function=keyed")
    assert [d["metadata"]["name"] for d in deployments["items"]] == [rev]
    delete_functions("keyed")
    kubectl("-n", FN_NS, "delete", "secret", "keyed-keys")


def test_a_contested_domain_goes_to_the_first_claimant_then_to_the_next():
    """spec.domains: the Function created later does not get a domain the
    earlier one claims (DomainsReady False, DomainConflict naming the owner),
    whatever their names; when the owner goes, it does."""
    shared = "shared.example.test"
    # The owner's name sorts after the other's: creation time decides.
    apply(function("domains-z", domains=[shared], env=[{"name": "GREETING", "value": "owner"}],
                   scale={"initial": 0}))
    wait_until("domains-z to be routed", lambda: routed("domains-z"), 60)
    time.sleep(1.1)  # creation timestamps have a resolution of one second
    apply(function("domains-a", domains=[shared], env=[{"name": "GREETING", "value": "next"}],
                   scale={"initial": 0}))
    wait_until("domains-a to be routed", lambda: routed("domains-a"), 60)
    lost = wait_until("domains-a's DomainConflict",
                      lambda: (c := condition("domains-a", "DomainsReady")).get("reason") == "DomainConflict" and c,
                      30)
    assert lost["status"] == "False", lost
    assert f"domain {shared} is already claimed by Function {FN_NS}/domains-z" in lost["message"], lost
    owner = wait_until("domains-z's DomainsReady",
                       lambda: (c := condition("domains-z", "DomainsReady")).get("status") == "True" and c, 30)
    assert owner["reason"] == "DomainsClaimed", owner
    for _ in range(4):
        reply = request(shared, "/shared")
        assert reply.status == 200, reply
        assert reply.body.startswith("owner from Flint! (rust, path /shared)"), reply
    # Each still answers at its own host.
    assert request(host("domains-a")).body.startswith("next from Flint!")

    delete_functions("domains-z")
    won = wait_until("domains-a's DomainsReady True",
                     lambda: (c := condition("domains-a", "DomainsReady")).get("status") == "True" and c, 30)
    assert won["reason"] == "DomainsClaimed", won

    def moved():
        replies = [request(shared, "/shared") for _ in range(4)]
        return all(r.status == 200 and r.body.startswith("next from Flint!") for r in replies)

    wait_until("the domain to route to domains-a", moved, 30)
    delete_functions("domains-a")


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], input=input, capture_output=True, text=True, check=True,
                          timeout=30).stdout


def self_signed(directory, name, host):
    """A self-signed certificate for `host`: (cert path, key path, SHA-256 fingerprint)."""
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={host}",
            "-addext", f"subjectAltName=DNS:{host}")
    return crt, key, fingerprint(crt.read_text())


def fingerprint(pem):
    out = openssl("x509", "-noout", "-fingerprint", "-sha256", input=pem)
    return out.strip().split("=", 1)[1]


def served_fingerprint(address, servername):
    """The fingerprint of the certificate a new handshake with `address`
    (host:port) for SNI `servername` gets, or None if it fails."""
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", address, "-servername", servername],
        input="", capture_output=True, text=True, timeout=30,
    )
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", proc.stdout, re.S)
    return fingerprint(pem.group(0)) if pem else None


def https_get(address, hostname, cafile, path="/"):
    """A GET over TLS to `address` (host:port) with SNI and Host
    `hostname`, the certificate verified for `hostname` against `cafile`."""
    ip, port = address.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPConnection(ip, int(port), timeout=60)
    conn.sock = ctx.wrap_socket(socket.create_connection((ip, int(port)), timeout=60), server_hostname=hostname)
    try:
        conn.request("GET", path, headers={"Host": hostname})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def test_tls_serves_the_functions_certificate_by_sni_and_follows_the_secret(tmp_path):
    """spec.tls.secretName: the public Service's TLS port serves the
    Function's certificate for its domain (SNI); status.url is https; a
    replaced Secret is served to new handshakes."""
    name = "x.example.test"
    crt1, key1, fp1 = self_signed(tmp_path, "one", name)
    crt2, key2, fp2 = self_signed(tmp_path, "two", name)
    assert fp1 != fp2
    kubectl("-n", FN_NS, "create", "secret", "tls", "x-example-test", f"--cert={crt1}", f"--key={key1}")
    apply(function("secure", domains=[name], tls={"secretName": "x-example-test"}, scale={"initial": 0}))
    wait_until("secure to be routed", lambda: routed("secure"), 60)
    url = status("secure")["url"]
    assert url == f"https://{host('secure')}", url
    svc = kjson("-n", NS, "get", "service", f"{RELEASE}-gateway")
    https = next(p for p in svc["spec"]["ports"] if p["name"] == "https")
    assert https["port"] == 443, https
    # The public Service from the host, as for plain HTTP: its node port.
    address = f"{GATEWAY.rsplit(':', 1)[0]}:{https['nodePort']}"

    def serving(fp):
        # Several handshakes, so that both gateway replicas answer.
        return all(served_fingerprint(address, name) == fp for _ in range(4))

    wait_until("the Function's certificate on the TLS port", lambda: serving(fp1), 30)
    code, body = https_get(address, name, crt1, "/over-tls")
    assert code == 200 and "from Flint! (rust, path /over-tls)" in body, (code, body)

    secret = kubectl("-n", FN_NS, "create", "secret", "tls", "x-example-test", f"--cert={crt2}",
                     f"--key={key2}", "--dry-run=client", "-o", "yaml")
    kubectl("-n", FN_NS, "replace", "-f", "-", input=secret)
    replaced_at = time.monotonic()
    wait_until("the new certificate on new handshakes", lambda: serving(fp2), 15)
    print(f"certificate renewal served in {time.monotonic() - replaced_at:.1f}s")
    code, body = https_get(address, name, crt2, "/renewed")
    assert code == 200 and "path /renewed" in body, (code, body)
    delete_functions("secure")
    kubectl("-n", FN_NS, "delete", "secret", "x-example-test")


# ---------------------------------------------------------------- removal


def test_function_deletion_and_uninstall_leave_nothing_behind():
    # Deleting Functions removes their revisions' objects.
    for name in ("rollout", "drain"):
        kubectl("-n", FN_NS, "delete", "fn", name, "--wait=true", timeout=120)
    for kind in ("deployments", "services", "replicasets", "pods"):
        def gone(kind=kind):
            selector = "flint.dev/function in (rollout,drain)"
            if kind == "pods":
                return running_pods(FN_NS, selector) == []
            return kjson("-n", FN_NS, "get", kind, "-l", selector)["items"] == []
        wait_until(f"no {kind} of the deleted Functions", gone, 90, interval=1)
    helm("uninstall", RELEASE, "--namespace", NS, "--wait", "--timeout", "120s")
    # Pods finish terminating (gracefully) after the uninstall returns.
    leftovers = lambda: kubectl("-n", NS, "get", "all,configmaps,secrets,serviceaccounts,roles,rolebindings",
                                "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name").strip()
    wait_until("the release's objects to be gone", lambda: leftovers() == "", 90, interval=1)
    # Objects the operator writes at run time belong to the release too.
    for kind, name in (("lease", f"{RELEASE}-operator"), ("configmap", "flint-schedule-ticks")):
        assert kubectl("-n", NS, "get", kind, name, check=False).startswith("Error from server (NotFound)")
    cluster_wide = kubectl("get", "clusterroles,clusterrolebindings", "-o", "name")
    assert f"{RELEASE}-operator" not in cluster_wide and f"{RELEASE}-gateway" not in cluster_wide
    # With Flint gone, a Function left behind (hello-rust) and its namespace
    # still delete: nothing waits for the operator.
    kubectl("delete", "namespace", FN_NS, "--wait=true", timeout=120)
