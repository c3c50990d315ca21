#!/usr/bin/env python3
"""Cold-start benchmark for `flint dev`.

Loads N functions at zero (default 100), then calls each once: every call is
a cold start. For each one it records the client's time to first byte and the
app's own start-up to readiness as `flint dev` measured it (process spawn to
first accepted connection), read from its `/metrics`
(`flint_replica_startup_seconds`). Platform overhead = TTFB - app start-up: the time
Flint itself adds (queueing the request, the poke, the autoscaler's decision,
the scale write, noticing readiness, releasing and proxying the request). It
is an upper bound: it also contains the app's handling of the request.

Usage: bench/coldstart/run.py [--flint target/release/flint] [--n 100] [--json out.json]
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ttfb(port, path):
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        first = s.recv(1)
        elapsed = time.perf_counter() - start
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    status = (first + rest).split(b" ", 2)[1]
    return elapsed, status


def startup_ms(admin, name):
    """The start-up of revision `name`-00001's replica as `flint dev` reports
    it on its admin port's `/metrics`, in ms; None until reported."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf'^flint_replica_startup_seconds{{[^}}]*revision="{name}-00001"[^}}]*}} (\S+)$', text, re.M)
    return float(m.group(1)) * 1000 if m else None


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flint", default="target/release/flint")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--json")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="flint-coldstart-")
    try:
        with open(os.path.join(work, "app.py"), "w") as f:
            f.write(APP)
        for i in range(args.n):
            d = os.path.join(work, f"f{i:03}")
            os.makedirs(d)
            shutil.copy(os.path.join(work, "app.py"), d)
            with open(os.path.join(d, "function.yaml"), "w") as f:
                f.write(
                    "apiVersion: flint.dev/v1alpha1\nkind: Function\n"
                    f"metadata: {{name: f{i:03}}}\n"
                    "spec:\n  image: bench/app:1\n  command: [python3, app.py]\n"
                    "  scale: {initial: 0, scaleToZeroGracePeriod: 10m}\n"
                )
        port, admin = free_port(), free_port()
        proc = subprocess.Popen(
            # No in-cluster or TLS port: their defaults (8082, 8443) may be taken.
            [args.flint, "dev", work, "--port", str(port), "--admin-port", str(admin),
             "--internal-port", "0", "--tls-port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", admin), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(1.0)

        rows = []
        for i in range(args.n):
            name = f"f{i:03}"
            t, status = ttfb(port, f"/function/default/{name}/")
            if status != b"200":
                print(f"{name}: status {status!r}", file=sys.stderr)
                continue
            startup = None
            for _ in range(200):
                startup = startup_ms(admin, name)
                if startup is not None:
                    break
                time.sleep(0.005)
            if startup is None:
                continue
            rows.append({"function": name, "ttfb_ms": t * 1000, "app_startup_ms": startup,
                         "overhead_ms": t * 1000 - startup})
        proc.terminate()
        proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    over = [r["overhead_ms"] for r in rows]
    ttfbs = [r["ttfb_ms"] for r in rows]
    apps = [r["app_startup_ms"] for r in rows]
    summary = {
        "cold_starts": len(rows),
        "ttfb_ms": {"p50": pct(ttfbs, 50), "p99": pct(ttfbs, 99)},
        "app_startup_ms": {"p50": pct(apps, 50), "p99": pct(apps, 99)},
        "platform_overhead_ms": {"p50": pct(over, 50), "p99": pct(over, 99), "mean": statistics.mean(over)},
    }
    print(f"cold starts measured      {len(rows)}")
    print(f"time to first byte        p50 {summary['ttfb_ms']['p50']:7.2f} ms   p99 {summary['ttfb_ms']['p99']:7.2f} ms")
    print(f"app start-up to ready     p50 {summary['app_startup_ms']['p50']:7.2f} ms   p99 {summary['app_startup_ms']['p99']:7.2f} ms")
    print(f"platform overhead         p50 {summary['platform_overhead_ms']['p50']:7.2f} ms   p99 {summary['platform_overhead_ms']['p99']:7.2f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "rows": rows}, f, indent=1)
    return 0 if len(rows) == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
