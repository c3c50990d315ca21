#!/usr/bin/env python3
"""Checks on rendered chart manifests (a `helm template` YAML stream).

  manifests.py split RENDERED CORE_OUT MONITORING_OUT
      Objects with Kubernetes schemas to CORE_OUT (YAML, for
      kubernetes-validate); ServiceMonitors and PrometheusRules to
      MONITORING_OUT (a JSON array, for validate_monitoring.mjs).
  manifests.py kinds RENDERED KIND=COUNT...
      Exactly COUNT objects of each KIND.
  manifests.py pods RENDERED
      Every Deployment's and StatefulSet's pods: non-root, read-only root
      filesystem, no privilege escalation, all capabilities dropped, seccomp
      RuntimeDefault, liveness/readiness probes, resource requests.
  manifests.py env RENDERED FLINT_BINARY
      Every FLINT_* variable set on a container is one `flint <role> --help`
      documents (so no setting is silently ignored).
  manifests.py nats RENDERED deploy|none|URL [CONF_OUT]
      The queue wiring: `deploy` — the release's NATS StatefulSet, Service,
      ConfigMap and PodDisruptionBudget, the gateway's FLINT_NATS_URL naming that Service, and
      (with NetworkPolicies) a policy letting only the gateway reach its
      client port; the JetStream config is written to CONF_OUT without its
      sync_interval line, for `nats-server -t` (Debian's 2.9 predates the
      option, whose value is asserted here instead). `none` — no NATS
      object and neither FLINT_NATS_URL nor FLINT_GATEWAY_URL. A URL — no
      NATS object, FLINT_NATS_URL is that URL. With a queue, the operator's
      FLINT_GATEWAY_URL is the gateway Service (cron schedules fire there).

Runs with the Python of .tools/venv (PyYAML comes with kubernetes-validate).
"""
import json
import subprocess
import sys

import yaml

MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def split(rendered, core_out, mon_out):
    docs = load(rendered)
    core = [d for d in docs if d["kind"] not in MONITORING_KINDS]
    mon = [d for d in docs if d["kind"] in MONITORING_KINDS]
    with open(core_out, "w") as f:
        yaml.safe_dump_all(core, f)
    with open(mon_out, "w") as f:
        json.dump(mon, f)
    print(f"{len(core)} objects with Kubernetes schemas, {len(mon)} monitoring objects")
    return 0


def kinds(rendered, *expect):
    docs = load(rendered)
    bad = []
    for e in expect:
        kind, count = e.split("=")
        got = sum(1 for d in docs if d["kind"] == kind)
        if got != int(count):
            bad.append(f"{kind}: {got} rendered, {count} expected")
    print("\n".join(bad) or "kinds as expected")
    return 1 if bad else 0


def pods(rendered):
    problems = []
    for d in load(rendered):
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        name = d["metadata"]["name"]
        spec = d["spec"]["template"]["spec"]
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pod securityContext must set runAsNonRoot and seccomp RuntimeDefault")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            where = f"{name}/{c['name']}"
            checks = {
                "readOnlyRootFilesystem: true": sc.get("readOnlyRootFilesystem") is True,
                "allowPrivilegeEscalation: false": sc.get("allowPrivilegeEscalation") is False,
                "runAsNonRoot: true": sc.get("runAsNonRoot") is True or psc.get("runAsNonRoot") is True,
                "capabilities.drop: [ALL]": sc.get("capabilities", {}).get("drop") == ["ALL"],
                "no added capabilities": not sc.get("capabilities", {}).get("add"),
                "seccomp RuntimeDefault": sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                "livenessProbe": "livenessProbe" in c,
                "readinessProbe": "readinessProbe" in c,
                "resource requests": bool(c.get("resources", {}).get("requests")),
            }
            problems += [f"{where}: needs {k}" for k, ok in checks.items() if not ok]
    print("\n".join(problems) or "every pod hardened, probed and sized")
    return 1 if problems else 0


def env(rendered, flint):
    problems = []
    helps = {}
    for d in load(rendered):
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            role = (c.get("args") or [""])[0]
            if role not in helps:
                out = subprocess.run([flint, role, "--help"], capture_output=True, text=True)
                helps[role] = out.stdout if out.returncode == 0 else ""
                if out.returncode != 0:
                    problems.append(f"`flint {role} --help` failed: {out.stderr.strip()}")
            for e in c.get("env", []):
                # `[env: NAME=…]`, or `[env: NAME]` for a secret whose value help hides
                documented = f"[env: {e['name']}=" in helps[role] or f"[env: {e['name']}]" in helps[role]
                if e["name"].startswith("FLINT_") and not documented:
                    problems.append(f"{d['metadata']['name']}: {e['name']} is not a setting of `flint {role}`")
    print("\n".join(problems) or "every FLINT_* variable is a documented setting")
    return 1 if problems else 0


RELEASE = "flint"
NAMESPACE = "flint-system"
NATS = f"{RELEASE}-nats"
NATS_URL = f"nats://{NATS}.{NAMESPACE}.svc:4222"
GATEWAY_URL = f"http://{RELEASE}-gateway.{NAMESPACE}.svc:80"
SYNC_LINE = "sync_interval:"


def container_env(docs, deployment, container):
    """The literal env values of one container of one Deployment."""
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment:
            for c in d["spec"]["template"]["spec"]["containers"]:
                if c["name"] == container:
                    return {e["name"]: e.get("value") for e in c.get("env", [])}
    raise SystemExit(f"no container {container} in Deployment {deployment}")


def nats_policy_problems(docs, policies_on):
    policy = [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == NATS]
    if not policies_on:
        return [f"NetworkPolicy {NATS} rendered with policies off"] if policy else []
    if len(policy) != 1:
        return [f"{len(policy)} NetworkPolicies {NATS}, expected 1"]
    spec = policy[0]["spec"]
    want_pods = {"app.kubernetes.io/name": "flint", "app.kubernetes.io/instance": RELEASE,
                 "app.kubernetes.io/component": "nats"}
    gateway = dict(want_pods, **{"app.kubernetes.io/component": "gateway"})
    want_ingress = [{"ports": [{"port": "client", "protocol": "TCP"}],
                     "from": [{"podSelector": {"matchLabels": gateway}}]}]
    problems = []
    if spec.get("podSelector") != {"matchLabels": want_pods}:
        problems.append(f"NetworkPolicy {NATS} selects {spec.get('podSelector')}, not the NATS pod")
    if spec.get("policyTypes") != ["Ingress"]:
        problems.append(f"NetworkPolicy {NATS} policyTypes {spec.get('policyTypes')}")
    if spec.get("ingress") != want_ingress:
        problems.append(f"NetworkPolicy {NATS} ingress {spec.get('ingress')}, expected only gateway -> client")
    return problems


def deployed_problems(docs, conf_out):
    problems = []
    by_kind = {d["kind"]: d for d in docs if d["metadata"]["name"] == NATS and d["kind"] != "NetworkPolicy"}
    if sorted(by_kind) != ["ConfigMap", "PodDisruptionBudget", "Service", "StatefulSet"]:
        return [f"NATS objects rendered: {sorted(by_kind)}, expected ConfigMap, PodDisruptionBudget, Service, StatefulSet"]
    sts = by_kind["StatefulSet"]["spec"]
    if sts["replicas"] != 1:
        problems.append(f"StatefulSet {NATS} has {sts['replicas']} replicas, expected 1")
    pod = sts["template"]["spec"]
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if ports != {"client": 4222, "monitor": 8222}:
        problems.append(f"NATS ports {ports}")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        got = c.get(probe, {}).get("httpGet", {})
        if got.get("port") != "monitor" or not got.get("path", "").startswith("/healthz"):
            problems.append(f"NATS {probe} is not /healthz on the monitor port: {got}")
    if c["command"] != ["nats-server", "--config", "/etc/nats/nats.conf"]:
        problems.append(f"NATS command {c['command']}")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    if mounts != {"config": "/etc/nats", "data": "/data"}:
        problems.append(f"NATS mounts {mounts}")
    claims = [t["metadata"]["name"] for t in sts.get("volumeClaimTemplates", [])]
    empty = [v["name"] for v in pod["volumes"] if "emptyDir" in v]
    if (claims, empty) not in ((["data"], []), ([], ["data"])):
        problems.append(f"NATS data is neither one claim nor one emptyDir: claims {claims}, emptyDirs {empty}")
    svc = by_kind["Service"]["spec"]
    if svc["type"] != "ClusterIP" or svc["ports"] != [
        {"name": "client", "port": 4222, "targetPort": "client", "protocol": "TCP"}
    ]:
        problems.append(f"NATS Service {svc}")
    if svc["selector"] != sts["selector"]["matchLabels"]:
        problems.append("NATS Service does not select the StatefulSet's pod")
    pdb = by_kind["PodDisruptionBudget"]["spec"]
    if pdb["selector"] != {"matchLabels": sts["selector"]["matchLabels"]} or pdb.get("minAvailable") != 1:
        problems.append(f"NATS PodDisruptionBudget {pdb}: expected minAvailable 1 on the StatefulSet's pod")
    conf = by_kind["ConfigMap"]["data"]["nats.conf"]
    lines = [line.strip() for line in conf.splitlines()]
    for want in ("port: 4222", "http_port: 8222", "jetstream {", "store_dir: /data"):
        if want not in lines:
            problems.append(f"nats.conf lacks `{want}`")
    sync = [line for line in lines if line.startswith(SYNC_LINE)]
    if len(sync) != 1:
        problems.append(f"nats.conf has {len(sync)} sync_interval lines, expected 1")
    else:
        print(f"nats.conf: {sync[0]}")
    if conf_out:
        with open(conf_out, "w") as f:
            f.write("".join(line + "\n" for line in conf.splitlines() if not line.strip().startswith(SYNC_LINE)))
    return problems


def nats(rendered, mode, conf_out=None):
    docs = load(rendered)
    gateway = container_env(docs, f"{RELEASE}-gateway", "gateway")
    operator = container_env(docs, f"{RELEASE}-operator", "operator")
    policies_on = any(d["kind"] == "NetworkPolicy" for d in docs)
    nats_objects = [f"{d['kind']}/{d['metadata']['name']}" for d in docs if d["metadata"]["name"] == NATS]
    problems = []
    if mode == "deploy":
        problems += deployed_problems(docs, conf_out)
        problems += nats_policy_problems(docs, policies_on)
        want_url = NATS_URL
    elif mode == "none":
        if nats_objects:
            problems.append(f"NATS objects rendered without a queue: {nats_objects}")
        want_url = None
    else:
        if nats_objects:
            problems.append(f"NATS objects rendered for an existing server: {nats_objects}")
        want_url = mode
    if gateway.get("FLINT_NATS_URL") != want_url:
        problems.append(f"gateway FLINT_NATS_URL is {gateway.get('FLINT_NATS_URL')!r}, expected {want_url!r}")
    want_gateway = GATEWAY_URL if want_url else None
    if operator.get("FLINT_GATEWAY_URL") != want_gateway:
        problems.append(f"operator FLINT_GATEWAY_URL is {operator.get('FLINT_GATEWAY_URL')!r}, expected {want_gateway!r}")
    print("\n".join(problems) or f"queue wiring as expected ({mode})")
    return 1 if problems else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    return {"split": split, "kinds": kinds, "pods": pods, "env": env, "nats": nats}[cmd](*args)


if __name__ == "__main__":
    sys.exit(main())
