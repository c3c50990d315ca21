"""Helpers of the end-to-end tests on the single-node cluster: kubectl and
helm with the cluster's kubeconfig, waiting, and HTTP through the gateway."""

import http.client
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
KUBECTL = str(TOOLS / "bin" / "kubectl")
HELM = str(TOOLS / "bin" / "helm")


def cluster_env() -> dict:
    """KUBECONFIG and FLINT_GATEWAY as `scripts/cluster env` prints them."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "cluster"), "env"], check=True, capture_output=True, text=True
    ).stdout
    env = {}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


ENV = cluster_env()
KUBECONFIG = ENV["KUBECONFIG"]
GATEWAY = ENV["FLINT_GATEWAY"].removeprefix("http://")


class CommandFailed(Exception):
    """A kubectl or helm command exited non-zero; carries its stderr."""

    def __init__(self, args, code, stderr):
        super().__init__(f"{' '.join(args)} exited {code}: {stderr.strip()}")
        self.stderr = stderr


def run(args, input=None, check=True, timeout=300) -> str:
    proc = subprocess.run(
        args,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "KUBECONFIG": KUBECONFIG},
    )
    if check and proc.returncode != 0:
        raise CommandFailed(args, proc.returncode, proc.stderr)
    return proc.stdout if check else proc.stdout + proc.stderr


def kubectl(*args, input=None, check=True, timeout=300) -> str:
    return run([KUBECTL, *args], input=input, check=check, timeout=timeout)


def helm(*args, timeout=600) -> str:
    return run([HELM, *args], timeout=timeout)


def kjson(*args):
    return json.loads(kubectl(*args, "-o", "json"))


def wait_until(what, fn, timeout, interval=0.2):
    """Calls fn until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except CommandFailed as err:
            last = err
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def pods(namespace, selector):
    return kjson("-n", namespace, "get", "pods", "-l", selector)["items"]


def running_pods(namespace, selector):
    """Pods not being deleted."""
    return [p for p in pods(namespace, selector) if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod) -> bool:
    conds = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


@dataclass
class Reply:
    """A response; `headers` by lowercase name."""

    status: int
    body: str
    headers: dict


def request(host, path="/", timeout=60, method="GET", body=None, headers=None, address=GATEWAY) -> Reply:
    """One request to the gateway (or another `address`, host:port) with the
    given Host header and any other `headers`."""
    conn = http.client.HTTPConnection(address, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        headers = {name.lower(): value for name, value in resp.getheaders()}
        return Reply(resp.status, resp.read().decode("utf-8", "replace"), headers)
    finally:
        conn.close()


@dataclass
class Load:
    """Steady load from `workers` threads, each sending one request after
    another, until stopped. Keeps every outcome."""

    host: str
    path: str = "/"
    workers: int = 4
    timeout: float = 60
    ok: int = 0
    bodies: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list = field(default_factory=list)

    def _worker(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(GATEWAY, timeout=self.timeout)
                conn.request("GET", self.path, headers={"Host": self.host})
                resp = conn.getresponse()
                body = resp.read().decode("utf-8", "replace")
                with self._lock:
                    if resp.status == 200:
                        self.ok += 1
                        first = body.split(" from ")[0]
                        self.bodies[first] = self.bodies.get(first, 0) + 1
                    else:
                        self.failures.append((time.time(), resp.status, body[:200]))
            except (OSError, http.client.HTTPException) as err:
                with self._lock:
                    self.failures.append((time.time(), "error", repr(err)))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def start(self):
        for _ in range(self.workers):
            t = threading.Thread(target=self._worker, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        return self
