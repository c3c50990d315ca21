#!/usr/bin/env python3
"""Thousands of Functions at zero on the real single-node cluster
(scripts/cluster, with FLINT_CLUSTER_AUDIT=1 and the chart installed; the
shell entry bench/scale/cluster does both).

For each N (default 1,000 then 10,000), in a namespace of its own:

- apply: N Function manifests at zero (`scale.min: 0`, `scale.initial: 0`,
  the hello-rust example's image), each by one server-side apply (PATCH,
  application/apply-patch+yaml) from 8 client threads; time to apply them all;
- all Ready: from the first apply until every Function has the condition
  Ready=True at its current generation, taken from a watch of the
  namespace's Functions. A Function at zero is Ready when its revision's
  Deployment (0 replicas) reports Available, the revision's Service exists
  and the operator wrote that status (docs/operator.md, "Status");
- RSS of the operator and of the gateway: VmRSS of each container's `flint`
  process, read from /proc on this machine (the node), after all Ready;
- settled: the operator's writes (other than Lease renewals) stop for 20 s,
  from the audit log: the autoscaler writes each new Function's
  `status.keepAlive`, at most 50 Functions every 5 s;
- operator restart: its pod is deleted (one replica); the new pod's resync
  ends when every Function of the namespace has been reconciled once (the
  operator's `flint_reconciles_total` reaches N since its start, and stays
  there for 10 s); writes the operator sent during it, from the audit log,
  by resource (the Lease renewals of leader election are counted apart);
- API requests per idle minute after that, by client (service account) and
  verb, from the audit log over --idle seconds (300 by default: one
  REQUEUE_SETTLED period, so every settled Function's requeue falls in it);
- CPU seconds of each cluster component (etcd, API server, controller-manager,
  scheduler, kubelet, kube-proxy) and of the operator and gateway per phase:
  what the run was limited by;
- then the gateway is restarted too and its RSS read again 10 s after its
  `/metrics` shows every Function (the kube watch path does not set
  `flint_route_table_functions`).

It prints each figure at each size, the ratio of the largest to the
smallest, and the cost per Function at rest of the operator and the
gateway, (RSS(N2) - RSS(N1)) / (N2 - N1). The namespace is deleted after
its size (--keep leaves the last one).

Usage: bench/scale/cluster.py [--sizes 1000,10000] [--idle 300] [--json out.json] [--keep]
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".tools" / "cluster"
AUDIT = STATE / "logs" / "audit.log"
KUBECTL = str(ROOT / ".tools" / "bin" / "kubectl")
KUBECONFIG = str(STATE / "admin.kubeconfig")
SYSTEM = "flint-system"
OPERATOR_SA = f"system:serviceaccount:{SYSTEM}:flint-operator"
GATEWAY_SA = f"system:serviceaccount:{SYSTEM}:flint-gateway"
IMAGE = "localhost/flint-examples/hello-rust:dev"
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
              "kube-proxy", "containerd", "coredns"]
TICK = os.sysconf("SC_CLK_TCK")
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def kubectl(*args, check=True):
    return subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, *args], check=check,
                          capture_output=True, text=True).stdout


class Api:
    """The API server as the cluster's admin, one keep-alive connection per thread."""

    def __init__(self):
        cfg = {}
        for line in Path(KUBECONFIG).read_text().splitlines():
            key, _, value = line.strip().partition(": ")
            cfg[key] = value
        self.host = cfg["server"].removeprefix("https://")
        self.ctx = ssl.create_default_context(cafile=cfg["certificate-authority"])
        self.ctx.load_cert_chain(cfg["client-certificate"], cfg["client-key"])
        self.local = threading.local()

    def _conn(self, timeout=60):
        return http.client.HTTPSConnection(self.host, context=self.ctx, timeout=timeout)

    def request(self, method, path, body=None, ctype="application/json"):
        for attempt in range(5):
            conn = getattr(self.local, "conn", None) or self._conn()
            self.local.conn = conn
            try:
                headers = {"Content-Type": ctype} if body is not None else {}
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 429 or resp.status >= 500:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                return resp.status, json.loads(data or b"{}")
            except (OSError, http.client.HTTPException):
                self.local.conn = None
                time.sleep(0.5)
        raise RuntimeError(f"{method} {path} failed 5 times")

    def stream(self, path):
        """The lines of a watch (a connection of its own)."""
        conn = self._conn(timeout=900)
        conn.request("GET", path)
        resp = conn.getresponse()
        while True:
            line = resp.readline()
            if not line:
                return
            yield json.loads(line)


def function(ns, name):
    return {
        "apiVersion": "flint.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"image": IMAGE, "port": 8080,
                 "scale": {"min": 0, "initial": 0, "max": 10}},
    }


def apply_all(api, ns, n, threads=8):
    """Server-side applies fn-00000..fn-N-1; returns the seconds taken."""
    def one(i):
        name = f"fn-{i:05d}"
        path = (f"/apis/flint.dev/v1alpha1/namespaces/{ns}/functions/{name}"
                "?fieldManager=flint-bench&force=true")
        code, body = api.request("PATCH", path, json.dumps(function(ns, name)),
                                 "application/apply-patch+yaml")
        if code not in (200, 201):
            raise RuntimeError(f"apply {name}: {code} {body.get('message')}")
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    return time.monotonic() - t0


def is_ready(obj):
    gen = obj["metadata"].get("generation")
    status = obj.get("status") or {}
    if status.get("observedGeneration") != gen:
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions", []))


def wait_ready(api, ns, n, started, timeout):
    """Watches the namespace's Functions until n are Ready; returns the
    monotonic time when the last one turned Ready (None on timeout)."""
    ready = set()
    deadline = started + timeout
    last_print = time.monotonic()
    base = f"/apis/flint.dev/v1alpha1/namespaces/{ns}/functions"
    while time.monotonic() < deadline:
        ready.clear()
        rv, cont = None, ""
        while True:  # list, in pages
            code, body = api.request("GET", f"{base}?limit=1000{cont}")
            for item in body.get("items", []):
                if is_ready(item):
                    ready.add(item["metadata"]["name"])
            rv = body["metadata"]["resourceVersion"]
            token = body["metadata"].get("continue")
            if not token:
                break
            cont = f"&continue={token}"
        if len(ready) >= n:
            return time.monotonic()
        left = max(1, int(deadline - time.monotonic()))
        try:
            for ev in api.stream(f"{base}?watch=1&resourceVersion={rv}&timeoutSeconds={min(left, 300)}"):
                obj = ev.get("object", {})
                name = obj.get("metadata", {}).get("name")
                if ev.get("type") == "ERROR":
                    break
                if ev.get("type") != "DELETED" and is_ready(obj):
                    ready.add(name)
                else:
                    ready.discard(name)
                if len(ready) >= n:
                    return time.monotonic()
                if time.monotonic() - last_print > 30:
                    last_print = time.monotonic()
                    log(f"  {len(ready)}/{n} Ready after {last_print - started:.0f}s")
        except (OSError, http.client.HTTPException, ValueError):
            pass
    return None


# ------------------------------------------------------------------ processes


def flint_pids():
    """{role: pid} of the containers' `flint operator` / `flint gateway` processes."""
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 2 and argv[0].rsplit(b"/", 1)[-1] == b"flint" and argv[1] in (b"operator", b"gateway"):
            found.setdefault(argv[1].decode(), []).append(int(d))
    return found


def rss(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError):
        return 0.0


def cpu_snapshot():
    """CPU seconds so far of each cluster component and Flint process."""
    out = {}
    for name in COMPONENTS:
        f = STATE / "run" / f"{name}.pid"
        if f.exists():
            out[name] = cpu(int(f.read_text()))
    for role, pids in flint_pids().items():
        out[f"flint {role}"] = sum(cpu(p) for p in pids)
    return out


def cpu_delta(before, after, seconds):
    """{component: cores} between two snapshots (a restarted process counts from zero)."""
    return {k: round(((after[k] - before.get(k, 0)) if after[k] >= before.get(k, 0) else after[k])
                     / seconds, 3) for k in after}


def one_pid(role, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = flint_pids().get(role, [])
        if len(pids) == 1:
            return pids[0]
        time.sleep(0.5)
    raise RuntimeError(f"expected one flint {role} process, found {flint_pids().get(role)}")


def pod(component):
    items = json.loads(kubectl("-n", SYSTEM, "get", "pods", "-l",
                               f"app.kubernetes.io/component={component}", "-o", "json"))["items"]
    live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
    return live[0] if len(live) == 1 else None


def metrics(component, port=9090):
    p = pod(component)
    ip = p and p["status"].get("podIP")
    if not ip:
        return ""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------ audit log


def audit_ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def audit_offset():
    return AUDIT.stat().st_size


def audit_since(wall_from, wall_to=None, offset=0):
    """Audit entries (one per request, last stage seen) received in [from,
    to), read from byte `offset` of the log on."""
    entries = {}
    with open(AUDIT) as f:
        f.seek(offset)
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            t = audit_ts(e["requestReceivedTimestamp"])
            if t < wall_from or (wall_to is not None and t >= wall_to):
                continue
            entries[e["auditID"]] = e
    return list(entries.values())


def what(e):
    ref = e.get("objectRef") or {}
    res = ref.get("resource", e["requestURI"].split("?")[0])
    if ref.get("subresource"):
        res += "/" + ref["subresource"]
    return f"{e['verb']} {res}"


def operator_writes(entries):
    return [e for e in entries if e["user"]["username"] == OPERATOR_SA and e["verb"] in WRITES
            and (e.get("objectRef") or {}).get("resource") != "leases"]


def wait_settled(offset, started, quiet=20, timeout=3600):
    """Waits until the operator has sent no write but Lease renewals for
    `quiet` seconds (the autoscaler writes each new Function's
    status.keepAlive at most 50 per 5 s); returns when its last one was
    received (monotonic), and the writes by kind."""
    last_write, kinds = time.time(), {}
    mono_offset = time.monotonic() - time.time()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(5)
        entries = operator_writes(audit_since(0, offset=offset))
        offset = audit_offset()
        for e in entries:
            last_write = max(last_write, audit_ts(e["requestReceivedTimestamp"]))
            kinds[what(e)] = kinds.get(what(e), 0) + 1
        if time.time() - last_write >= quiet:
            break
    return last_write + mono_offset, kinds


def by_client(entries):
    """{user: {"verb resource": count}}."""
    out = {}
    for e in entries:
        user = e["user"]["username"].rsplit(":", 1)[-1]
        out.setdefault(user, {}).setdefault(what(e), 0)
        out[user][what(e)] += 1
    return out


# ------------------------------------------------------------------ phases


def restart_operator(api, ns, n):
    """Deletes the operator pod; returns the resync figures."""
    old = pod("operator")["metadata"]["name"]
    offset = audit_offset()
    wall0 = time.time()
    kubectl("-n", SYSTEM, "delete", "pod", old, "--wait=false")
    t0 = time.monotonic()
    cpu0 = cpu_snapshot()
    # The new process, then the moment its reconcile counter reaches n and
    # stays put for 10 s.
    while True:
        p = pod("operator")
        if p and p["metadata"]["name"] != old and p["status"].get("podIP"):
            break
        time.sleep(0.2)
    ip = p["status"]["podIP"]
    reached, last_value, last_change = None, -1.0, time.monotonic()
    started = None
    while time.monotonic() - t0 < 900:
        value = metric_sum(metrics("operator"), "flint_reconciles_total")
        now = time.monotonic()
        if value > 0 and started is None:
            started = now
        if value != last_value:
            last_value, last_change = value, now
        if value >= n and reached is None:
            reached = now
        if reached is not None and now - last_change >= 10:
            break
        time.sleep(0.5)
    t_end = last_change
    seconds = t_end - t0
    cpu1 = cpu_snapshot()
    time.sleep(2)  # let the audit log catch up
    entries = [e for e in audit_since(wall0, wall0 + seconds + 1, offset)
               if e["user"]["username"] == OPERATOR_SA and ip in e.get("sourceIPs", [])]
    writes, reads = {}, {}
    for e in entries:
        bucket = writes if e["verb"] in WRITES else reads
        bucket[what(e)] = bucket.get(what(e), 0) + 1
    return {
        "resync_s": round(seconds, 1),
        "restart_to_counter_n_s": round((reached or now) - t0, 1),
        "first_reconcile_s": round((started or now) - t0, 1),
        "reconciles": last_value,
        "writes": writes,
        "writes_excluding_leases": sum(v for k, v in writes.items() if not k.endswith(" leases")),
        "reads": reads,
        "cores": cpu_delta(cpu0, cpu1, seconds),
    }


def routed_functions(text):
    """Functions the gateway's /metrics shows (a revision at zero is shown
    for its first five minutes in a process: after a restart, all of them)."""
    return len(set(re.findall(r'function="([^"]+)"', text)))


def restart_gateway(n):
    old = pod("gateway")["metadata"]["name"]
    kubectl("-n", SYSTEM, "delete", "pod", old, "--wait=false")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300:
        p = pod("gateway")
        if p and p["metadata"]["name"] != old and routed_functions(metrics("gateway")) >= n:
            break
        time.sleep(1)
    routed = time.monotonic() - t0
    time.sleep(10)
    return round(routed, 1), rss(one_pid("gateway"))


def measure(api, n, idle, keep):
    ns = f"flint-scale-{n}"
    log(f"N={n}: namespace {ns}")
    kubectl("create", "namespace", ns, check=False)
    out = {"n": n}
    cpu0 = cpu_snapshot()
    offset0 = audit_offset()
    t0 = time.monotonic()
    out["apply_s"] = round(apply_all(api, ns, n), 1)
    log(f"  applied in {out['apply_s']}s")
    done = wait_ready(api, ns, n, t0, timeout=3600)
    out["all_ready_s"] = round(done - t0, 1) if done else None
    out["ready_cores"] = cpu_delta(cpu0, cpu_snapshot(), (done or time.monotonic()) - t0)
    log(f"  all Ready after {out['all_ready_s']}s")
    settled, kinds = wait_settled(offset0, t0)
    out["settled_s"] = round(settled - t0, 1)
    out["settling_writes"] = kinds
    log(f"  the operator's last write (not a Lease) {out['settled_s']}s after the first apply")
    time.sleep(10)
    out["operator_rss"] = rss(one_pid("operator"))
    out["gateway_rss"] = rss(one_pid("gateway"))
    out["services"] = int(kubectl("get", "services", "-n", ns, "--no-headers", "-o", "name").count("\n"))
    log(f"  RSS operator {out['operator_rss'] >> 20} MiB, gateway {out['gateway_rss'] >> 20} MiB")

    out["restart"] = restart_operator(api, ns, n)
    log(f"  operator resync {out['restart']['resync_s']}s, writes {out['restart']['writes']}")
    time.sleep(5)
    out["operator_rss_resynced"] = rss(one_pid("operator"))

    log(f"  idle for {idle}s")
    offset = audit_offset()
    wall0 = time.time()
    cpu0 = cpu_snapshot()
    time.sleep(idle)
    cpu1 = cpu_snapshot()
    time.sleep(3)
    clients = by_client(audit_since(wall0, wall0 + idle, offset))
    out["idle_per_minute"] = {user: {k: round(v * 60 / idle, 1) for k, v in sorted(verbs.items())}
                              for user, verbs in clients.items()}
    out["idle_cores"] = cpu_delta(cpu0, cpu1, idle)
    out["operator_rss_idle"] = rss(one_pid("operator"))

    out["gateway_routed_s"], out["gateway_rss_restarted"] = restart_gateway(n)
    log(f"  gateway restarted: routes all after {out['gateway_routed_s']}s, "
        f"RSS {out['gateway_rss_restarted'] >> 20} MiB")
    if not keep:
        kubectl("delete", "namespace", ns, "--wait=true", "--timeout=1800s", check=False)
    return out


def mib(b):
    return f"{b / 2**20:.1f} MiB"


def report(results):
    a, b = results[0], results[-1]
    rows = [
        ("apply (s)", "apply_s"),
        ("all Ready (s)", "all_ready_s"),
        ("operator's last write, keepAlive status (s)", "settled_s"),
        ("operator RSS after all Ready", "operator_rss"),
        ("operator RSS after restart+resync", "operator_rss_resynced"),
        ("operator RSS after idle", "operator_rss_idle"),
        ("gateway RSS after all Ready", "gateway_rss"),
        ("gateway RSS after its restart", "gateway_rss_restarted"),
        ("gateway restart to all routed (s)", "gateway_routed_s"),
        ("Services in the namespace", "services"),
    ]
    print(f"\n{'figure':40} " + " ".join(f"{'N=' + str(r['n']):>14}" for r in results) + f" {'ratio':>8}")
    for label, key in rows:
        vals = [r.get(key) for r in results]
        fmt = [mib(v) if "RSS" in label and v is not None else str(v) for v in vals]
        ratio = f"{vals[-1] / vals[0]:.2f}" if vals[0] and vals[-1] else "-"
        print(f"{label:40} " + " ".join(f"{v:>14}" for v in fmt) + f" {ratio:>8}")
    for label, key in [("resync after restart (s)", "resync_s"),
                       ("writes in resync (not leases)", "writes_excluding_leases"),
                       ("reconciles in resync", "reconciles")]:
        vals = [r["restart"][key] for r in results]
        ratio = f"{vals[-1] / vals[0]:.2f}" if vals[0] and vals[-1] else "-"
        print(f"{label:40} " + " ".join(f"{v:>14}" for v in vals) + f" {ratio:>8}")
    if len(results) > 1:
        dn = b["n"] - a["n"]
        for label, key in [("operator", "operator_rss_idle"), ("gateway", "gateway_rss_restarted")]:
            print(f"cost per Function at rest, {label}: {(b[key] - a[key]) / dn:,.0f} bytes of RSS")
    for r in results:
        print(f"\nN={r['n']}: writes after all Ready until settled: {r['settling_writes']}")
        print(f"N={r['n']}: resync writes {r['restart']['writes']}, reads {r['restart']['reads']}")
        print(f"N={r['n']}: cores while applying until all Ready: {r['ready_cores']}")
        print(f"N={r['n']}: cores during the resync: {r['restart']['cores']}")
        print(f"N={r['n']}: cores at idle: {r['idle_cores']}")
        for user, verbs in r["idle_per_minute"].items():
            print(f"N={r['n']}: idle requests per minute, {user}: {sum(verbs.values()):.1f} {verbs}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--idle", type=int, default=300)
    p.add_argument("--json")
    p.add_argument("--keep", action="store_true", help="leave the last size's namespace")
    args = p.parse_args()
    if not AUDIT.exists():
        sys.exit("no audit log: start the cluster with FLINT_CLUSTER_AUDIT=1 (bench/scale/cluster does)")
    api = Api()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for i, n in enumerate(sizes):
        results.append(measure(api, n, args.idle, args.keep and i == len(sizes) - 1))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
