"""Figures against peers and per example: latency vs load for the app
called directly, through nginx and through the Flint gateway (the processes
and config of bench/gateway/), wrk's p99.9 at 64 connections, and the cold
start of every example."""
import os
import re
import shutil
import subprocess
import sys
import time

from dev import Dev, Workdir, free_port, http_get, pct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "coldstart"))
import run as coldstart  # noqa: E402  (bench/coldstart/run.py: ttfb and pct)

HOST = "hello.bench.localhost"
WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("rps=%.0f p50=%d p99=%d p999=%d errors=%d\\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency:percentile(99), latency:percentile(99.9),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
"""


def _wait_port(port):
    import socket
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Peers:
    """The app, nginx in front of it and the Flint gateway in front of it."""

    def __enter__(self):
        self.work = __import__("tempfile").mkdtemp(prefix="flint-peers-")
        self.procs = []
        return self

    def start(self, bench_bin):
        app, ngx, gw = free_port(), free_port(), free_port()
        self.procs.append(subprocess.Popen([bench_bin, "app", f"127.0.0.1:{app}"]))
        _wait_port(app)
        with open(os.path.join(ROOT, "bench", "gateway", "nginx.conf")) as f:
            conf = f.read().replace("@DIR@", self.work).replace("@PORT@", str(ngx)).replace("@APP@", f"127.0.0.1:{app}")
        with open(os.path.join(self.work, "nginx.conf"), "w") as f:
            f.write(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.procs.append(subprocess.Popen([nginx, "-c", os.path.join(self.work, "nginx.conf"), "-p", self.work]))
        self.procs.append(subprocess.Popen([bench_bin, "gateway", f"127.0.0.1:{gw}", f"127.0.0.1:{app}"]))
        _wait_port(ngx)
        _wait_port(gw)
        self.ports = {"direct": app, "nginx": ngx, "gateway": gw}
        return self.ports

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def sweep(bench_bin, rates, seconds):
    """p50/p99/p99.9 per target at each fixed rate (constant-rate generator)."""
    out = {}
    with Peers() as peers:
        ports = peers.start(bench_bin)
        time.sleep(1)
        for rate in rates:
            for target, port in ports.items():
                line = subprocess.run(
                    [bench_bin, "rate", f"127.0.0.1:{port}", HOST, str(rate), str(seconds), "16"],
                    capture_output=True, text=True, check=True,
                ).stdout
                fields = dict(kv.split("=") for kv in line.split())
                out.setdefault(target, []).append({
                    "rate": rate, "errors": int(fields["errors"]),
                    "p50_us": float(fields["p50"]), "p99_us": float(fields["p99"]),
                    "p999_us": float(fields["p999"]),
                })
    return out


def wrk_tails(bench_bin, seconds, connections=64):
    """wrk at `connections` keep-alive connections with p99.9 (a Lua summary)."""
    out = {}
    with Peers() as peers, Workdir() as work:
        ports = peers.start(bench_bin)
        script = os.path.join(work, "tails.lua")
        with open(script, "w") as f:
            f.write(WRK_LUA)
        for target, port in ports.items():
            subprocess.run(["wrk", "-t2", f"-c{connections}", "-d1s", "-H", f"Host: {HOST}",
                            f"http://127.0.0.1:{port}/"], capture_output=True, check=True)
            text = subprocess.run(
                ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script, "-H", f"Host: {HOST}",
                 f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
            m = re.search(r"rps=(\d+) p50=(\d+) p99=(\d+) p999=(\d+) errors=(\d+)", text)
            out[target] = {k: int(v) for k, v in zip(("rps", "p50_us", "p99_us", "p999_us", "errors"), m.groups())}
    return out


def _example_manifest(src, name, command=None):
    """The example's manifest renamed, at zero, without its traffic block
    (it names the example's own revisions), with a short grace period so
    replicas do not pile up."""
    with open(os.path.join(src, "function.yaml")) as f:
        text = f.read()
    text = re.sub(r"(?m)^  name: .*$", f"  name: {name}", text, count=1)
    text = re.sub(r"(?ms)^  traffic:\n(    .*\n)*", "", text)
    text = re.sub(r"(?ms)^  scale:\n(    .*\n)*", "", text)
    if command:
        text = re.sub(r"(?m)^  command: .*$", f"  command: {command}", text)
    return text.rstrip("\n") + "\n  scale: {initial: 0, max: 1, stableWindow: 6s, scaleToZeroGracePeriod: 1s}\n"


def examples(flint, reps, rust_bin):
    """Cold start of each example, `reps` times: time to first byte from
    zero, the app's own start-up to readiness (as flint dev reports it), and
    the difference, the platform's overhead."""
    results = {}
    ex_root = os.path.join(ROOT, "examples")
    with Workdir() as root:
        kinds = sorted(d for d in os.listdir(ex_root) if os.path.exists(os.path.join(ex_root, d, "function.yaml")))
        for kind in kinds:
            for i in range(reps):
                name = f"{kind}-{i:03}"
                dst = os.path.join(root, name)
                shutil.copytree(os.path.join(ex_root, kind), dst, ignore=shutil.ignore_patterns("target", "Dockerfile", "README.md"))
                command = f"[{rust_bin}]" if kind == "hello-rust" else None
                with open(os.path.join(dst, "function.yaml"), "w") as f:
                    f.write(_example_manifest(os.path.join(ex_root, kind), name, command))
        dev = Dev(flint, root)
        try:
            time.sleep(2)
            for kind in kinds:
                rows = []
                for i in range(reps):
                    name = f"{kind}-{i:03}"
                    t, status = coldstart.ttfb(dev.port, f"/function/default/{name}/")
                    if status != b"200":
                        continue
                    # The replica's start-up as flint dev reports it on /metrics.
                    deadline = time.time() + 30
                    while (startup := coldstart.startup_ms(dev.admin, name)) is None:
                        if time.time() > deadline:
                            raise TimeoutError(f"no start-up reported for {name}")
                        time.sleep(0.005)
                    rows.append((t * 1000, startup, t * 1000 - startup))
                results[kind] = {
                    "cold_starts": len(rows),
                    "ttfb_ms": {"p50": pct([r[0] for r in rows], 50), "p99": pct([r[0] for r in rows], 99)},
                    "app_startup_ms": {"p50": pct([r[1] for r in rows], 50), "p99": pct([r[1] for r in rows], 99)},
                    "platform_overhead_ms": {"p50": pct([r[2] for r in rows], 50), "p99": pct([r[2] for r in rows], 99)},
                }
        finally:
            dev.stop()
    return results
