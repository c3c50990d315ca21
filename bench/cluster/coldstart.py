#!/usr/bin/env python3
"""Cold starts on the real single-node cluster (scripts/cluster), split into
their phases, against the same app started by plain Kubernetes.

Flint: a request to a Function at zero, through the gateway, until its 200
answer. The phases come from a pod watch (times taken when each change
arrives here):
  decision   request sent -> pod created (gateway poke, autoscaler decision,
             scale write, ReplicaSet)
  scheduling pod created -> pod bound to the node
  container  bound -> app container running (sandbox, network, container start)
  readiness  running -> pod Ready (the kubelet's readiness probe)
  routing    Ready -> 200 received (EndpointSlice, gateway watch, the proxied request)

Peer, same run: a plain Deployment of the same image scaled 0 -> 1 with the
scale subresource, and a client polling the pod's address every 10 ms until
the app answers 200 (what the app itself allows, with no platform in the way).

Usage: bench/cluster/coldstart.py [--rounds 20] [--out bench/results/cluster-coldstart.json]
Needs the cluster up with Flint installed (bench/cluster/run does both).
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "cluster"))
from kube import GATEWAY, KUBECONFIG, KUBECTL, kjson, kubectl, running_pods, wait_until  # noqa: E402

NS = "flint-bench"
IMAGE = "localhost/flint-examples/hello-rust:dev"
FUNCTION = "coldstart"
PEER = "coldstart-peer"


class PodWatch:
    """Streams `kubectl get pods -w` and keeps, per pod, when each phase was first seen."""

    def __init__(self, selector):
        self.times = {}
        self.proc = subprocess.Popen(
            [KUBECTL, "-n", NS, "get", "pods", "-l", selector, "-w", "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "KUBECONFIG": KUBECONFIG},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = ""
        depth = 0
        for line in self.proc.stdout:
            buf += line
            depth += line.count("{") - line.count("}")
            if depth == 0 and buf.strip():
                now = time.monotonic()
                try:
                    self._seen(json.loads(buf)["object"], now)
                except (ValueError, KeyError):
                    pass
                buf = ""

    def _seen(self, pod, now):
        name = pod["metadata"]["name"]
        t = self.times.setdefault(name, {})
        t.setdefault("created", now)
        status = pod.get("status", {})
        if pod["spec"].get("nodeName"):
            t.setdefault("scheduled", now)
        for c in status.get("containerStatuses", []):
            if "running" in c.get("state", {}):
                t.setdefault("running", now)
        for c in status.get("conditions", []):
            if c["type"] == "Ready" and c["status"] == "True":
                t.setdefault("ready", now)

    def stop(self):
        self.proc.terminate()


def get(host, path, addr=GATEWAY, timeout=30):
    conn = http.client.HTTPConnection(addr, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def at_zero(selector):
    return not running_pods(NS, selector)


def flint_round(watch, n):
    selector = f"flint.dev/function={FUNCTION}"
    wait_until("the Function at zero", lambda: at_zero(selector), 120, interval=0.5)
    time.sleep(1)  # let the old pod's terminating updates pass
    known = set(watch.times)
    start = time.monotonic()
    status = get(f"{FUNCTION}.{NS}.flint.test", f"/round-{n}")
    done = time.monotonic()
    assert status == 200, status
    # The watch may report the pod Ready after the answer (the gateway
    # routes on its own probe): wait for that update before reading it.
    wait_until("the new pod to be reported Ready",
               lambda: any("ready" in watch.times[p] for p in list(watch.times) if p not in known),
               30, interval=0.05)
    time.sleep(0.3)
    new = [p for p in watch.times if p not in known]
    assert len(new) == 1, f"expected one new pod, saw {new}"
    t = watch.times[new[0]]
    phases = {
        "decision": t["created"] - start,
        "scheduling": t["scheduled"] - t["created"],
        "container": t["running"] - t["scheduled"],
        "readiness": t["ready"] - t["running"],
        "routing": done - t["ready"],
    }
    return done - start, phases


def peer_round(n):
    selector = f"app={PEER}"
    wait_until("the peer at zero", lambda: at_zero(selector), 120, interval=0.5)
    start = time.monotonic()
    kubectl("-n", NS, "scale", "deployment", PEER, "--replicas=1")
    ip = None
    while time.monotonic() - start < 60:
        if ip is None:
            items = running_pods(NS, selector)
            ip = items[0]["status"].get("podIP") if items else None
        if ip:
            try:
                if get("peer", f"/round-{n}", addr=f"{ip}:8080", timeout=1) == 200:
                    elapsed = time.monotonic() - start
                    kubectl("-n", NS, "scale", "deployment", PEER, "--replicas=0")
                    return elapsed
            except OSError:
                pass
        time.sleep(0.01)
    raise AssertionError("the peer never answered")


def namespace_gone():
    return kubectl("get", "namespace", NS, "--ignore-not-found").strip() == ""


def setup():
    # A namespace left Terminating by an earlier run takes no new pods.
    wait_until(f"namespace {NS} from an earlier run to go", namespace_gone, 120, interval=0.5)
    kubectl("create", "namespace", NS)
    fn = {
        "apiVersion": "flint.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": FUNCTION, "namespace": NS},
        "spec": {"image": IMAGE, "port": 8080, "scale": {
            "min": 0, "initial": 0, "stableWindow": "6s", "scaleToZeroGracePeriod": "1s"}},
    }
    peer = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": PEER, "namespace": NS},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": PEER}},
                 "template": {"metadata": {"labels": {"app": PEER}},
                              "spec": {"shareProcessNamespace": True, "enableServiceLinks": False,
                                       "automountServiceAccountToken": False,
                                       "containers": [{"name": "app", "image": IMAGE,
                                                       "env": [{"name": "PORT", "value": "8080"}]}]}}},
    }
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [fn, peer]}))
    wait_until("the Function to be routed",
               lambda: kjson("-n", NS, "get", "function", FUNCTION).get("status", {}).get("traffic"), 60)


def kubelet_feature_gates():
    """The kubelet's feature gates as its configz reports them: whether the
    evented PLEG was on shapes the container phase."""
    node = kjson("get", "nodes")["items"][0]["metadata"]["name"]
    out = kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/configz")
    return json.loads(out).get("kubeletconfig", {}).get("featureGates", {})


def quantiles(xs):
    xs = sorted(xs)
    return {"p50": statistics.median(xs), "p90": xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out", default="bench/results/cluster-coldstart.json")
    args = ap.parse_args()
    setup()
    watch = PodWatch(f"flint.dev/function={FUNCTION}")
    totals, phases, peers = [], {}, []
    try:
        for n in range(args.rounds):
            total, ph = flint_round(watch, n)
            peer = peer_round(n)
            totals.append(total)
            peers.append(peer)
            for k, v in ph.items():
                phases.setdefault(k, []).append(v)
            print(f"round {n + 1:2}: flint {total * 1000:6.0f} ms  peer {peer * 1000:6.0f} ms  "
                  + "  ".join(f"{k} {v * 1000:4.0f}" for k, v in ph.items()), flush=True)
    finally:
        watch.stop()
        kubectl("delete", "namespace", NS, "--wait=false", check=False)
    report = {
        "rounds": args.rounds,
        "kubelet_feature_gates": kubelet_feature_gates(),
        "flint": quantiles(totals),
        "peer_direct": quantiles(peers),
        "ratio_p50": statistics.median(totals) / statistics.median(peers),
        "phases": {k: quantiles(v) for k, v in phases.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
