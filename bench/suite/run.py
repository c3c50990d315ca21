#!/usr/bin/env python3
"""The benchmark suite's figures after bench/gateway/run.sh: reads that
script's output, measures the rest, prints one table and writes JSON.
Run through bench/run, which installs the tools and builds the binaries.

Usage: run.py --flint BIN --bench-bin BIN --rust-example BIN --gateway-out FILE --out DIR
"""
import argparse
import json
import os
import platform as host
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import figures  # noqa: E402
import peers  # noqa: E402


def env_int(name, default):
    return int(os.environ.get(name, default))


def parse_gateway(text):
    """The table and the summary lines printed by bench/gateway/run.sh."""
    out = {"targets": {}}
    header = None
    names = {"wrk req/s": "rps", "vs nginx": "vs_nginx", "wrk p50 µs": "p50_us", "wrk p99 µs": "p99_us",
             "CPU µs/req": "cpu_us_per_req", "errors": "errors"}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| target |"):
            header = cells
        elif header and cells and cells[0] in ("direct", "nginx", "gateway") and len(cells) == len(header):
            row = {}
            for h, v in zip(header[1:], cells[1:]):
                m = re.match(r"(\d+)/s (p50|p99|p99\.9) µs", h)
                key = f"rate_{m.group(2).replace('.', '')}_us" if m else names.get(h, h)
                try:
                    row[key] = float(v)
                except ValueError:
                    row[key] = v
            out["targets"][cells[0]] = row
        m = re.match(r"(\w+) adds at (\d+)/s: p50 (-?\d+) µs, p99 (-?\d+) µs", line)
        if m:
            out.setdefault("adds", {})[m.group(1)] = {"rate": int(m.group(2)), "p50_us": int(m.group(3)), "p99_us": int(m.group(4))}
        m = re.match(r"gateway RSS idle: (\d+) KiB after start, (\d+) KiB after the load", line)
        if m:
            out["gateway_rss_idle_kib"] = int(m.group(1))
            out["gateway_rss_after_load_kib"] = int(m.group(2))
        if line.startswith("machine:"):
            out["machine"] = line[len("machine:"):].strip()
    return out


def step(name, fn, *args, **kw):
    start = time.time()
    print(f"== {name}", flush=True)
    value = fn(*args, **kw)
    print(f"   {time.time() - start:.0f} s", flush=True)
    return value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flint", required=True)
    ap.add_argument("--bench-bin", required=True)
    ap.add_argument("--rust-example", required=True)
    ap.add_argument("--gateway-out", required=True)
    ap.add_argument("--coldstart-json", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    # Functions run in their own directories: every path must be absolute.
    a.flint, a.bench_bin, a.rust_example = (os.path.abspath(p) for p in (a.flint, a.bench_bin, a.rust_example))
    seconds = env_int("FLINT_BENCH_SECONDS", 5)
    r = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with open(a.gateway_out) as f:
        r["gateway"] = parse_gateway(f.read())
    r["machine"] = r["gateway"].get("machine") or f"{os.cpu_count()} cores, {host.machine()}"
    with open(a.coldstart_json) as f:
        r["coldstart_stub"] = json.load(f)["summary"]
    rates = [int(x) for x in os.environ.get("FLINT_BENCH_RATES", "500 1000 2000 5000 10000").split()]
    r["sweep"] = step("latency vs load (constant rate)", peers.sweep, a.bench_bin, rates, max(2, seconds - 2))
    r["wrk_tails"] = step("wrk p99.9 at 64 connections", peers.wrk_tails, a.bench_bin, seconds)
    r["burst"] = step("burst from zero", figures.burst, a.flint)
    r["to_zero"] = step("scale to zero", figures.to_zero, a.flint)
    r["resources"] = step("resource use", figures.resources, a.flint, a.bench_bin)
    r["scale"] = step("1,000 functions", figures.scale, a.flint, env_int("FLINT_BENCH_FUNCTIONS", 1000))
    r["examples"] = step("cold start per example", peers.examples, a.flint, env_int("FLINT_BENCH_COLD_REPS", 100), a.rust_example)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "latest.json")
    with open(path, "w") as f:
        json.dump(r, f, indent=1)
    print()
    print(report(r))
    print(f"\nwrote {path}")


def report(r):
    """The results as the Markdown tables of docs/benchmarks.md."""
    g = r["gateway"]["targets"]
    t = r["wrk_tails"]
    L = [f"Machine: {r['machine']}. Run: {r['date']}.", ""]
    L += ["### Warm throughput and latency (wrk, 64 connections)", "",
          "| target | req/s | vs direct | vs nginx | p50 µs | p99 µs | p99.9 µs | CPU µs/req | errors |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name in ("direct", "nginx", "gateway"):
        row = g.get(name, {})
        rps, d, n = row.get("rps"), g.get("direct", {}).get("rps"), g.get("nginx", {}).get("rps")
        tail = t.get(name, {})
        errors = row.get("errors")
        errors = f"{errors:.0f}" if isinstance(errors, float) else errors
        L.append(f"| {name} | {rps:.0f} | {rps / d:.2f} | {rps / n:.2f} | {tail.get('p50_us', 0)} | {tail.get('p99_us', 0)} | {tail.get('p999_us', 0)} | {row.get('cpu_us_per_req', '')} | {errors} |")
    L += ["", "req/s, ratios and CPU: medians of bench/gateway/run.sh's rounds. Latency percentiles: one more wrk run per target with a Lua summary, since wrk's own report stops at p99.", ""]
    L += ["### Added latency at fixed rates (constant-rate generator, 16 connections)", "",
          "| rate | target | p50 µs | p99 µs | p99.9 µs | p50 added µs | p99 added µs | errors |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    sweep = r["sweep"]
    for i, point in enumerate(sweep["direct"]):
        if point["rate"] not in (1000, 5000):
            continue
        for name in ("direct", "nginx", "gateway"):
            p = sweep[name][i]
            L.append(f"| {p['rate']} | {name} | {p['p50_us']:.0f} | {p['p99_us']:.0f} | {p['p999_us']:.0f} | {p['p50_us'] - point['p50_us']:.0f} | {p['p99_us'] - point['p99_us']:.0f} | {p['errors']} |")
    adds = r["gateway"].get("adds", {})
    if "gateway" in adds:
        a = adds["gateway"]
        L += ["", f"bench/gateway/run.sh (median of its rounds) at {a['rate']} req/s: the gateway adds p50 {a['p50_us']} µs, p99 {a['p99_us']} µs; nginx adds p50 {adds.get('nginx', {}).get('p50_us')} µs, p99 {adds.get('nginx', {}).get('p99_us')} µs."]
    L += ["", "### Cold start (time to first byte from zero)", "",
          "| function | cold starts | TTFB p50 ms | TTFB p99 ms | app start-up p50 ms | app start-up p99 ms | platform p50 ms | platform p99 ms |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [("stub (bench/coldstart)", r["coldstart_stub"])] + sorted(r["examples"].items())
    for name, c in rows:
        L.append(f"| {name} | {c['cold_starts']} | {c['ttfb_ms']['p50']:.1f} | {c['ttfb_ms']['p99']:.1f} | {c['app_startup_ms']['p50']:.1f} | {c['app_startup_ms']['p99']:.1f} | {c['platform_overhead_ms']['p50']:.1f} | {c['platform_overhead_ms']['p99']:.1f} |")
    b = r["burst"]
    L += ["", "### Burst from zero", "",
          "| requests | concurrency | served | errors | time to serve all | max replicas |", "|---:|---:|---:|---:|---:|---:|",
          f"| {b['requests']} | 10 | {b['ok']} | {b['errors']} | {b['seconds_to_serve_all']:.2f} s | {b['max_replicas']} |"]
    z = r["to_zero"]
    L += ["", "### Scale to zero", "",
          "| grace period | stable window | seconds from last answer to process gone |", "|---:|---:|---|",
          f"| {z['grace_seconds']} s | {z['stable_window_seconds']} s | {', '.join(f'{v:.1f}' for v in z['seconds_to_zero'])} (median {z['median']:.1f}) |"]
    res = r["resources"]
    L += ["", "### Resource use", "",
          "| process | state | RSS MiB | CPU cores | CPU cores per 1,000 req/s |", "|---|---|---:|---:|---:|",
          f"| flint dev (gateway + autoscaler) | idle, 1 function | {res['idle_rss_kib'] / 1024:.1f} | {res['idle_cpu_cores']:.3f} | |"]
    for load in res["load"]:
        L.append(f"| flint dev (gateway + autoscaler) | {load['rate']} req/s | {load['rss_kib'] / 1024:.1f} | {load['cpu_cores']:.2f} | {load['cpu_cores_per_1000_rps']:.3f} |")
    L.append(f"| flint dev (gateway + autoscaler) | idle after load | {res['rss_after_load_kib'] / 1024:.1f} | | |")
    gw = r["gateway"]
    if "gateway_rss_idle_kib" in gw:
        L.append(f"| gateway alone (bench/gateway) | idle after start / after load | {gw['gateway_rss_idle_kib'] / 1024:.1f} / {gw['gateway_rss_after_load_kib'] / 1024:.1f} | | |")
    s = r["scale"]
    swaps = ", ".join(f"{x['swap_us']}" for x in s["reloads"])
    reload_ms = ", ".join(f"{x['manifest_to_route_ms']:.0f}" for x in s["reloads"])
    L += ["", f"### {s['functions']:,} Functions at zero in flint dev", "",
          "| figure | value |", "|---|---:|",
          f"| RSS of flint dev | {s['rss_kib'] / 1024:.1f} MiB |",
          f"| CPU idle (1,000 functions at zero) | {s['idle_cpu_cores']:.3f} cores |",
          f"| start to all routed | {s['load_seconds']:.2f} s |",
          f"| routing table build + swap, {s['functions']:,} functions | {s['initial_swap_us']} µs |",
          f"| routing table build + swap on adding one more (3 runs) | {swaps} µs |",
          f"| manifest written to route swapped (3 runs, includes the 500 ms rescan) | {reload_ms} ms |",
          f"| first request to the new function | {s['new_function_status']} in {s['new_function_cold_ttfb_ms']:.0f} ms (cold) |"]
    return "\n".join(L)


if __name__ == "__main__":
    main()
