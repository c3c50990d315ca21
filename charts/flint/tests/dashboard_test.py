#!/usr/bin/env python3
"""Dashboard test: a real Prometheus scrapes a real Flint gateway and
autoscaler (`flint dev`, the same gateway and autoscaler code a cluster runs)
under load; then every panel query of dashboards/flint.json, with its
variables substituted, is run through Prometheus' HTTP API and must return
data. Asynchronous invocations (delivered, dead-lettered, retried, one left
pending, with result callbacks to a local server) feed the async panels; a
second Function with API keys, called without a key and with a wrong one,
feeds the auth-failure panel. The JSON is also checked for the Grafana
dashboard structure (uid, panels, targets, the datasource variable) and every
metric a panel queries must be one api/src/metrics.rs names. The chart's
rules file is loaded too, so the recording rules must produce series from the
same scrape.

Usage: dashboard_test.py FLINT_BINARY   (prometheus must be on PATH)
Everything runs on 127.0.0.1 with free ports, is bounded in time, and is
stopped at the end. Only the standard library is used.
"""
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.dirname(HERE)
DASHBOARD = os.path.join(CHART, "dashboards", "flint.json")
METRIC_NAMES = os.path.join(os.path.dirname(os.path.dirname(CHART)), "api", "src", "metrics.rs")
RULES = os.path.join(CHART, "rules", "flint.rules.yaml")
NAMESPACE, FUNCTION = "default", "probe"
# A Function with spec.auth (API keys from a file next to its manifest): the
# requests it refuses feed the auth-failure panel. The panels are queried with
# both Functions selected, as Grafana substitutes a multi-value variable.
GUARDED = "guarded"
RATE_INTERVAL = "5m"  # $__rate_interval: covers the whole run

# Metrics only the cluster operator's reconciler exports: `flint dev` has no
# reconciler and no Kubernetes API server can run here, so for these the test
# checks that Prometheus accepts the query, and says it has no data.
OPERATOR_ONLY = ("flint_reconcile_",)

# A function with a success path, client and server errors, and a slow path
# that, with concurrency 1 and at most 2 replicas, fills the gateway queue.
APP = r'''
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(0.3)
        code = 500 if self.path.startswith("/fail") else 404 if self.path.startswith("/missing") else 200
        body = b"probe\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''
MANIFEST = f'''apiVersion: flint.dev/v1alpha1
kind: Function
metadata:
  name: {FUNCTION}
  namespace: {NAMESPACE}
spec:
  image: example.invalid/probe:1
  command: ["python3", "app.py"]
  port: 8080
  concurrency: 1
  timeoutSeconds: 10
  async:
    maxRetries: 100
    maxAge: 1h
  scale:
    min: 0
    max: 2
    initial: 0
    target: 1
    scaleToZeroGracePeriod: 60s
'''
GUARDED_MANIFEST = f'''apiVersion: flint.dev/v1alpha1
kind: Function
metadata:
  name: {GUARDED}
  namespace: {NAMESPACE}
spec:
  image: example.invalid/probe:1
  command: ["python3", "app.py"]
  auth:
    apiKeys:
      keys: {{file: keys.txt}}
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, host=None, timeout=10.0):
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return None, b""


def wait_for(what, check, deadline_s):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.25)
    raise SystemExit(f"FAIL: timed out waiting for {what}")


def query(prom, expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = http_get(url)
    if status is None:
        raise SystemExit(f"FAIL: Prometheus did not answer {expr}")
    return json.loads(body)


def check_structure(d):
    """The Grafana dashboard shape: returns a list of problems."""
    problems = []
    for key, kind in (("uid", str), ("title", str), ("panels", list), ("templating", dict), ("schemaVersion", int)):
        if not isinstance(d.get(key), kind):
            problems.append(f"top-level {key!r} missing or not a {kind.__name__}")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no datasource variable of type datasource for prometheus")
    for name in ("namespace", "function"):
        v = variables.get(name, {})
        if v.get("type") != "query" or "label_values" not in json.dumps(v.get("query")):
            problems.append(f"no {name} query variable")
        if v.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"variable {name} does not use ${{datasource}}")
    ids = [p.get("id") for p in d.get("panels", [])]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"panel ids missing or repeated: {ids}")
    for p in d.get("panels", []):
        if not all(k in p.get("gridPos", {}) for k in ("h", "w", "x", "y")):
            problems.append(f"panel {p.get('title')!r}: gridPos incomplete")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {p.get('title')!r}: datasource is not ${{datasource}}")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"panel {p.get('title')!r}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(refs) != len(set(refs)) or None in refs:
            problems.append(f"panel {p.get('title')!r}: refIds missing or repeated")
        for t in targets:
            if not t.get("expr"):
                problems.append(f"panel {p.get('title')!r}: target {t.get('refId')} has no expr")
    return problems


def exported_metrics():
    """The metric names the code exports: the `flint_` constants of api/src/metrics.rs."""
    text = open(METRIC_NAMES).read()
    return set(re.findall(r'pub const [A-Z0-9_]+: &str = "(flint_[a-z0-9_]+)";', text))


def unknown_metrics(d, exported):
    """Metrics a panel queries that the code does not export: returns a list of problems."""
    problems = []
    for p in d.get("panels", []):
        for t in p.get("targets", []):
            for name in re.findall(r"\bflint_[a-z0-9_]+", t.get("expr", "")):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                if name not in exported and base not in exported:
                    problems.append(f"panel {p.get('title')!r} [{t.get('refId')}]: {name} is not exported")
    return problems


def substitute(expr):
    return (expr.replace("$namespace", NAMESPACE).replace("$function", f"({FUNCTION}|{GUARDED})")
            .replace("$__rate_interval", RATE_INTERVAL))


def refused(gateway, n):
    """`n` requests to the guarded Function without a key and `n` with a
    wrong one: each must be refused with 401 (not 503: its keys were read)."""
    host = f"{GUARDED}.{NAMESPACE}.localhost"
    for headers in ({"Host": host}, {"Host": host, "Authorization": "Bearer wrong-key"}):
        for _ in range(n):
            req = urllib.request.Request(f"{gateway}/", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            if status != 401:
                raise SystemExit(f"FAIL: {GUARDED} answered {status} to {headers}, want 401")
    return 2 * n


def load(gateway, host, stop_after_s):
    """Bounded load: rounds of 24 parallel requests over the paths, until
    `stop_after_s` or 40 rounds. Returns the status codes seen."""
    codes = {}
    lock = threading.Lock()
    paths = ["/"] * 10 + ["/fail"] * 3 + ["/missing"] * 2 + ["/slow"] * 9

    def one(path):
        status, _ = http_get(f"{gateway}{path}", host=host, timeout=15)
        with lock:
            codes[status] = codes.get(status, 0) + 1

    end = time.monotonic() + stop_after_s
    for _ in range(40):
        if time.monotonic() > end:
            break
        threads = [threading.Thread(target=one, args=(p,)) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
    return codes


class CallbackSink:
    """A local HTTP server that takes result callbacks (POST) and counts them."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        sink = self
        self.outcomes = {}
        self.lock = threading.Lock()

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    o = self.headers.get("X-Flint-Outcome")
                    sink.outcomes[o] = sink.outcomes.get(o, 0) + 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/done"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def send_async(gateway, host, path, callback=None):
    """One asynchronous invocation (Prefer: respond-async); returns the status."""
    headers = {"Host": host, "Prefer": "respond-async"}
    if callback:
        headers["X-Callback-Url"] = callback
    req = urllib.request.Request(f"{gateway}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def drive_async(prom, gateway, host, sink):
    """Async invocations that reach every async metric: 3 delivered and 2
    refused by the function (404: dead-lettered as rejected), each with a
    callback; 1 that keeps failing (500) and so stays pending, retried."""
    sends = [("/", sink.url)] * 3 + [("/missing", sink.url)] * 2 + [("/fail", None)]
    statuses = [send_async(gateway, host, path, cb) for path, cb in sends]
    if statuses != [202] * len(sends):
        raise SystemExit(f"FAIL: async invocations answered {statuses}, want 202 each")
    sel = f'namespace="{NAMESPACE}",function="{FUNCTION}"'
    wanted = {
        f"sum(flint_async_accepted_total{{{sel}}})": 6,
        f"sum(flint_async_delivered_total{{{sel}}})": 3,
        f'sum(flint_async_dead_letters_total{{{sel},reason="rejected"}})': 2,
        f"sum(flint_async_retries_total{{{sel}}})": 1,
        f"max(flint_async_pending{{{sel}}})": 1,
        f'sum(flint_async_callbacks_total{{{sel},result="delivered"}})': 5,
    }
    for expr, least in wanted.items():
        def seen():
            r = query(prom, expr)["data"]["result"]
            return bool(r) and float(r[0]["value"][1]) >= least
        wait_for(f"{expr} >= {least}", seen, 60)
    print(f"async: 6 accepted, 3 delivered, 2 dead-lettered, 1 pending; callbacks {sink.outcomes}")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    flint = os.path.abspath(sys.argv[1])
    dashboard = json.load(open(DASHBOARD))
    problems = check_structure(dashboard) + unknown_metrics(dashboard, exported_metrics())
    if problems:
        raise SystemExit("FAIL: dashboard structure:\n  " + "\n  ".join(problems))

    work = tempfile.mkdtemp(prefix="flint-dashboard-")
    procs = []
    try:
        fn_dir = os.path.join(work, "functions", FUNCTION)
        os.makedirs(fn_dir)
        open(os.path.join(fn_dir, "app.py"), "w").write(APP)
        open(os.path.join(fn_dir, "function.yaml"), "w").write(MANIFEST)
        guarded_dir = os.path.join(work, "functions", GUARDED)
        os.makedirs(guarded_dir)
        open(os.path.join(guarded_dir, "app.py"), "w").write(APP)
        open(os.path.join(guarded_dir, "function.yaml"), "w").write(GUARDED_MANIFEST)
        open(os.path.join(guarded_dir, "keys.txt"), "w").write("dashboard-test-key\n")
        gw_port, admin_port, prom_port = free_port(), free_port(), free_port()
        dev_log = open(os.path.join(work, "flint-dev.log"), "w")
        # flint dev: the gateway and the autoscaler, replicas as local processes.
        procs.append(subprocess.Popen(
            [flint, "dev", os.path.join(work, "functions"), "--port", str(gw_port),
             "--admin-port", str(admin_port), "--queue-size", "4", "--log", "warn",
             # No in-cluster or TLS port: their defaults (8082, 8443) may be taken.
             "--internal-port", "0", "--tls-port", "0"],
            stdout=dev_log, stderr=subprocess.STDOUT, start_new_session=True))
        admin = f"http://127.0.0.1:{admin_port}"
        wait_for("flint dev's admin port", lambda: http_get(f"{admin}/metrics")[0] == 200, 60)

        config = os.path.join(work, "prometheus.yml")
        open(config, "w").write(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            "scrape_configs:\n  - job_name: flint-gateway\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{admin_port}']\n"
            # flint dev serves the in-process autoscaler's metrics on their own path.
            "  - job_name: flint-operator\n    metrics_path: /metrics/autoscaler\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{admin_port}']\n")
        prom_log = open(os.path.join(work, "prometheus.log"), "w")
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={work}/tsdb",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=prom_log, stderr=subprocess.STDOUT, start_new_session=True))
        prom = f"http://127.0.0.1:{prom_port}"
        # Wait until Prometheus holds the function's series at zero: a counter
        # first seen at 1 shows no increase, so the cold start must come after.
        wait_for("Prometheus to scrape flint dev", lambda: http_get(f"{prom}/-/ready")[0] == 200
                 and query(prom, f'flint_cold_starts_total{{function="{FUNCTION}"}} == 0')["data"]["result"], 60)

        host = f"{FUNCTION}.{NAMESPACE}.localhost"
        # One request first: the revision is at zero, so this is a cold start.
        status, _ = http_get(f"http://127.0.0.1:{gw_port}/", host=host, timeout=30)
        if status != 200:
            raise SystemExit(f"FAIL: the first (cold) request got {status}")
        # Refusals before and after the load, so their rate is above zero.
        auth_failures = refused(f"http://127.0.0.1:{gw_port}", 5)
        codes = load(f"http://127.0.0.1:{gw_port}", host, stop_after_s=25)
        print(f"load: responses by status {dict(sorted(codes.items(), key=str))}")
        auth_failures += refused(f"http://127.0.0.1:{gw_port}", 5)
        print(f"auth: {auth_failures} requests to {GUARDED} refused with 401")
        sent = sum(n for c, n in codes.items() if c is not None)
        # Wait until Prometheus has scraped every answered request (bounded).
        counted = f'sum(flint_requests_total{{namespace="{NAMESPACE}",function="{FUNCTION}"}})'
        def scraped():
            r = query(prom, counted)["data"]["result"]
            return bool(r) and float(r[0]["value"][1]) >= sent
        wait_for(f"Prometheus to count {sent} requests", scraped, 30)
        counted_failures = f'sum(flint_auth_failures_total{{namespace="{NAMESPACE}",function="{GUARDED}"}})'
        def failures_scraped():
            r = query(prom, counted_failures)["data"]["result"]
            return bool(r) and float(r[0]["value"][1]) >= auth_failures
        wait_for(f"Prometheus to count {auth_failures} auth failures", failures_scraped, 30)
        sink = CallbackSink()
        try:
            drive_async(prom, f"http://127.0.0.1:{gw_port}", host, sink)
        finally:
            sink.close()
        # Two more rule evaluations, so recording rules see the last samples.
        time.sleep(2.5)

        failures = []
        checked = 0
        for p in dashboard["panels"]:
            for t in p.get("targets", []):
                expr = substitute(t["expr"])
                answer = query(prom, expr)
                checked += 1
                label = f"{p['title']} [{t['refId']}]"
                if answer.get("status") != "success":
                    failures.append(f"{label}: {answer.get('error')} ({expr})")
                    continue
                values = [float(s["value"][1]) for s in answer["data"]["result"]]
                finite = [v for v in values if not math.isnan(v)]
                if any(m in expr for m in OPERATOR_ONLY):
                    print(f"ok    {label}: query accepted; {'data' if finite else 'no data'} "
                          "(reconciler metric: exported only by `flint operator` on a cluster)")
                elif finite:
                    print(f"ok    {label}: {len(finite)} series, e.g. {finite[0]:.4g}")
                else:
                    failures.append(f"{label}: no data ({expr})")
        for v in dashboard["templating"]["list"]:
            if v["type"] != "query":
                continue
            metric, lbl = v["definition"][len("label_values("):-1].rsplit(", ", 1)
            metric = substitute(metric)
            url = f"{prom}/api/v1/label/{lbl}/values?" + urllib.parse.urlencode({"match[]": metric})
            status, body = http_get(url)
            values = json.loads(body)["data"] if status == 200 else []
            want = NAMESPACE if lbl == "namespace" else FUNCTION
            checked += 1
            if want in values:
                print(f"ok    variable ${v['name']}: {values}")
            else:
                failures.append(f"variable ${v['name']}: {values} lacks {want}")
        for record in ("namespace_function:flint_request_concurrency:rate1m",
                       "namespace_function:flint_requests:rate1m",
                       "namespace_function_revision:flint_request_concurrency:rate1m",
                       "namespace_function_revision:flint_requests:rate1m"):
            checked += 1
            r = query(prom, f'{record}{{function="{FUNCTION}"}}')["data"]["result"]
            if r:
                print(f"ok    recording rule {record}: {float(r[0]['value'][1]):.4g}")
            else:
                failures.append(f"recording rule {record}: no series")
        if failures:
            print("\nflint dev log (tail):")
            print("".join(open(os.path.join(work, "flint-dev.log")).readlines()[-20:]))
            raise SystemExit(f"FAIL: {len(failures)} of {checked} queries:\n  " + "\n  ".join(failures))
        print(f"dashboard: all {checked} queries answered with data")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
