#!/usr/bin/env python3
"""`flint dev` with many Functions at zero: what an idle Function costs.

Writes N Function manifests at zero (`scale.initial: 0`, a Python app as in
examples/) plus one warm probe Function (`scale.min: 1`), starts `flint dev`
on free ports and measures, for each N:

- start to all routed: from spawning `flint dev` until its admin `/metrics`
  reports N+1 Functions in the routing table (`flint_route_table_functions`);
- RSS of the `flint dev` process after settling (VmRSS);
- idle CPU over 10 s after settling, in cores: utime+stime of the `flint dev`
  process alone (from /proc/PID/stat); the warm probe's Python process is a
  separate child and is reported on its own line, not in the figure;
- the probe answering through the gateway (a sanity check).

Then it prints each figure at both sizes, the ratio between them and the cost
per Function at rest, (RSS(N2) - RSS(N1)) / (N2 - N1), in bytes.

Runtime: about 2 minutes for the default sizes (1,000 and 10,000) on 2 cores.

Usage: bench/scale/run.py [--flint target/release/flint] [--sizes 1000,10000]
                          [--settle 5] [--idle 10] [--json out.json]
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

APP = r'''
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''

MANIFEST = """apiVersion: flint.dev/v1alpha1
kind: Function
metadata:
  name: {name}
  namespace: default
spec:
  image: bench/{name}:1
  command: ["python3", "app.py"]
  env:
    - name: GREETING
      value: Hello
  port: 8080
  timeoutSeconds: 30
  scale:
    min: {min}
    max: 10
    initial: {initial}
    target: 50
    scaleToZeroGracePeriod: 30s
"""

TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_functions(root, n):
    """N idle Functions and one warm probe, one directory each."""
    for i in range(n + 1):
        name = "probe" if i == n else f"fn-{i:05d}"
        d = os.path.join(root, name)
        os.makedirs(d)
        with open(os.path.join(d, "app.py"), "w") as f:
            f.write(APP)
        warm = 1 if name == "probe" else 0
        with open(os.path.join(d, "function.yaml"), "w") as f:
            f.write(MANIFEST.format(name=name, min=warm, initial=warm))


def get(url, timeout=2.0, host=None):
    req = urllib.request.Request(url)
    if host:
        req.add_header("Host", host)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")


def routed(admin):
    try:
        _, text = get(f"http://127.0.0.1:{admin}/metrics", timeout=5.0)
    except OSError:
        return -1
    m = re.search(r"^flint_route_table_functions (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else -1


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def measure(flint, n, settle, idle):
    root = tempfile.mkdtemp(prefix=f"flint-scale-{n}-")
    try:
        write_functions(os.path.join(root, "fns"), n)
        port, admin = free_port(), free_port()
        env = dict(os.environ, FLINT_LOG="warn")
        cmd = [flint, "dev", os.path.join(root, "fns"), "--port", str(port),
               "--admin-port", str(admin), "--internal-port", "0", "--tls-port", "0",
               "--events-dir", os.path.join(root, "events")]
        log = open(os.path.join(root, "flint.log"), "w")
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = start + 300
            while routed(admin) < n + 1:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"flint dev did not route {n + 1} functions; log in {root}/flint.log")
                time.sleep(0.05)
            all_routed = time.monotonic() - start
            # The warm probe answers through the gateway.
            probe_deadline = time.monotonic() + 60
            while True:
                try:
                    status, _ = get(f"http://127.0.0.1:{port}/", timeout=10,
                                    host="probe.default.localhost")
                    if status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > probe_deadline:
                    raise RuntimeError("the warm probe never answered")
                time.sleep(0.2)
            time.sleep(settle)
            rss = rss_bytes(proc.pid)
            kids = children(proc.pid)
            c0 = cpu_seconds(proc.pid)
            k0 = sum(cpu_seconds(k) for k in kids)
            time.sleep(idle)
            c1 = cpu_seconds(proc.pid)
            k1 = sum(cpu_seconds(k) for k in kids if os.path.exists(f"/proc/{k}"))
            return {
                "n": n,
                "start_to_all_routed_s": all_routed,
                "rss_bytes": rss,
                "idle_cores": (c1 - c0) / idle,
                "probe_idle_cores": (k1 - k0) / idle,
            }
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flint", default="target/release/flint")
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--settle", type=float, default=5.0, help="seconds after all routed before measuring")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    p.add_argument("--json")
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    results = []
    for n in sizes:
        r = measure(a.flint, n, a.settle, a.idle)
        results.append(r)
        print(f"N={n:>6}: start to all routed {r['start_to_all_routed_s']:.2f} s, "
              f"RSS {r['rss_bytes'] / 2**20:.1f} MiB, idle CPU {r['idle_cores']:.4f} cores "
              f"(warm probe's process, not counted: {r['probe_idle_cores']:.4f})", flush=True)
    if len(results) >= 2:
        lo, hi = results[0], results[-1]
        print(f"ratio N={hi['n']}/N={lo['n']}:")
        for k, label in [("start_to_all_routed_s", "start to all routed"),
                         ("rss_bytes", "RSS"), ("idle_cores", "idle CPU")]:
            ratio = hi[k] / lo[k] if lo[k] else float("inf")
            print(f"  {label:<20} {ratio:.2f}x")
        per_fn = (hi["rss_bytes"] - lo["rss_bytes"]) / (hi["n"] - lo["n"])
        print(f"cost per Function at rest: {per_fn:.0f} bytes of RSS")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
