"""Helpers shared by the benchmark suite: a running `flint dev`, stub
functions, raw HTTP, and /proc readings (RSS, CPU time)."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

# A stub Python function: answers 200 "ok", sleeps ?ms= first.
STUB_APP = r'''
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if "ms=" in self.path:
            time.sleep(int(self.path.split("ms=")[1]) / 1000)
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
ThreadingHTTPServer.request_queue_size = 1024
s = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
s.daemon_threads = True
s.serve_forever()
'''

CLK_TCK = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User + system CPU time of a process (and its reaped threads), /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pids_under(path):
    """PIDs of processes whose working directory is under `path`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/cwd").startswith(path):
                out.append(int(entry))
        except OSError:
            pass
    return out


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def http_get(port, path, host="localhost", timeout=60):
    """One GET with Connection: close; returns (status, seconds to first byte)."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        first = s.recv(1)
        elapsed = time.perf_counter() - start
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    parts = (first + rest).split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), elapsed


def write_stub(root, name, spec, app=STUB_APP, command="[python3, app.py]"):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "app.py"), "w") as f:
        f.write(app)
    text = (
        "apiVersion: flint.dev/v1alpha1\nkind: Function\n"
        f"metadata: {{name: {name}}}\n"
        f"spec:\n  image: bench/{name}:1\n  command: {command}\n  timeoutSeconds: 60\n{spec}"
    )
    tmp = os.path.join(d, "function.yaml.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(d, "function.yaml"))
    return d


class Dev:
    """A running `flint dev DIR`, its output collected line by line."""

    def __init__(self, flint, root, extra=()):
        self.root = root
        self.port, self.admin = free_port(), free_port()
        self.proc = subprocess.Popen(
            # No in-cluster or TLS port: their defaults (8082, 8443) would
            # collide between two runs at once.
            [flint, "dev", root, "--port", str(self.port), "--admin-port", str(self.admin),
             "--internal-port", "0", "--tls-port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.admin), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("flint dev did not start:\n" + "".join(self.lines))

    def _read(self):
        for line in self.proc.stdout:
            line = ANSI.sub("", line)
            with self.cond:
                self.lines.append((time.time(), line))
                self.cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    def wait_line(self, pattern, timeout=120, start=0):
        """Waits for an output line matching `pattern`; returns (time, match)."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    t, line = self.lines[i]
                    m = rx.search(line)
                    if m:
                        return t, m
                    i += 1
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"no line {pattern!r}:\n" + "".join(l for _, l in self.lines[-40:]))
                self.cond.wait(left)

    def matches(self, pattern):
        rx = re.compile(pattern)
        with self.lock:
            return [m for _, l in self.lines if (m := rx.search(l))]

    def mark(self):
        with self.lock:
            return len(self.lines)

    def metrics(self):
        """The unlabelled samples of the admin port's `/metrics`, by name."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#") and "{" not in parts[0]:
                out[parts[0]] = float(parts[1])
        return out

    def wait_swap(self, functions, after=0.0, timeout=120):
        """Waits until `/metrics` reports a routing-table swap routing
        `functions` Functions at or after Unix time `after`; returns
        (Unix time of the swap, swap duration in seconds)."""
        deadline = time.time() + timeout
        while True:
            m = self.metrics()
            at = m.get("flint_route_swap_timestamp_seconds", 0.0)
            if m.get("flint_route_table_functions") == functions and at >= after:
                return at, m["flint_route_swap_seconds"]
            if time.time() > deadline:
                raise TimeoutError(f"no routing-table swap to {functions} functions: {m}")
            time.sleep(0.01)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Workdir:
    """A scratch directory removed on exit."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="flint-bench-")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
