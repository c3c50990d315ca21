"""Figures measured on `flint dev` itself: burst from zero, scale-to-zero
timing, resource use idle and under load, and 1,000 Functions at zero."""
import asyncio
import os
import subprocess
import time

from dev import Dev, Workdir, cpu_seconds, http_get, pct, pids_under, rss_kib, write_stub

SCALE_LINE = r"scale    default/{}-00001  (\d+) -> (\d+)"


async def _one(port, path):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 120)
        writer.close()
        parts = data.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except (OSError, asyncio.TimeoutError):
        return 0


async def _burst(port, path, n):
    return await asyncio.gather(*(_one(port, path) for _ in range(n)))


def burst(flint, n=1000):
    """`n` concurrent requests at a function at zero with `concurrency: 10`."""
    with Workdir() as root:
        write_stub(root, "burst", "  concurrency: 10\n  scale: {initial: 0, max: 100, target: 10}\n")
        dev = Dev(flint, root)
        try:
            time.sleep(1)
            start = time.perf_counter()
            codes = asyncio.run(_burst(dev.port, "/function/default/burst/?ms=20", n))
            elapsed = time.perf_counter() - start
            time.sleep(1)
            ups = [int(m.group(2)) for m in dev.matches(SCALE_LINE.format("burst"))]
        finally:
            dev.stop()
    counts = {}
    for c in codes:
        counts[str(c)] = counts.get(str(c), 0) + 1
    return {
        "requests": n,
        "ok": counts.get("200", 0),
        "errors": n - counts.get("200", 0),
        "codes": counts,
        "seconds_to_serve_all": elapsed,
        "max_replicas": max(ups, default=0),
    }


def to_zero(flint, grace_s=5, stable_s=6, copies=3):
    """Seconds from the last answer to the process gone, for `copies` functions at once."""
    spec = f"  scale: {{initial: 0, stableWindow: {stable_s}s, scaleToZeroGracePeriod: {grace_s}s}}\n"
    with Workdir() as root:
        names = [f"idle{i}" for i in range(copies)]
        for name in names:
            write_stub(root, name, spec)
        dev = Dev(flint, root)
        try:
            last = {}
            for name in names:
                status, _ = http_get(dev.port, f"/function/default/{name}/")
                last[name] = time.time()
                assert status == 200, status
            gone = {}
            deadline = time.time() + 120
            while len(gone) < len(names) and time.time() < deadline:
                for name in names:
                    if name not in gone and not pids_under(os.path.join(root, name)):
                        gone[name] = time.time() - last[name]
                time.sleep(0.02)
        finally:
            dev.stop()
    values = sorted(gone.values())
    return {
        "grace_seconds": grace_s,
        "stable_window_seconds": stable_s,
        "seconds_to_zero": values,
        "median": pct(values, 50),
    }


def fast_app_command(bench_bin):
    """The gateway benchmark's tiny Rust app as a function's command."""
    return f'[sh, -c, "exec {bench_bin} app 127.0.0.1:$PORT"]'


def resources(flint, bench_bin, rates=(1000, 5000), seconds=5):
    """flint dev's RSS idle and under load; CPU per 1,000 req/s at fixed rates."""
    with Workdir() as root:
        write_stub(root, "warm", "  scale: {initial: 1, min: 1, max: 1}\n", command=fast_app_command(bench_bin))
        dev = Dev(flint, root)
        try:
            dev.wait_line(r"default/warm-00001  replica 1 ready")
            time.sleep(2)
            idle_rss = rss_kib(dev.pid)
            c0 = cpu_seconds(dev.pid)
            time.sleep(5)
            idle_cpu = (cpu_seconds(dev.pid) - c0) / 5
            loads = []
            for rate in rates:
                c0, t0 = cpu_seconds(dev.pid), time.perf_counter()
                out = subprocess.run(
                    [bench_bin, "rate", f"127.0.0.1:{dev.port}", "warm.default.localhost", str(rate), str(seconds), "16"],
                    capture_output=True, text=True, check=True,
                ).stdout
                cores = (cpu_seconds(dev.pid) - c0) / (time.perf_counter() - t0)
                fields = dict(kv.split("=") for kv in out.split())
                loads.append({
                    "rate": rate,
                    "cpu_cores": cores,
                    "cpu_cores_per_1000_rps": cores * 1000 / rate,
                    "rss_kib": rss_kib(dev.pid),
                    "errors": int(fields["errors"]),
                    "p50_us": float(fields["p50"]),
                    "p99_us": float(fields["p99"]),
                })
            time.sleep(2)
            after_rss = rss_kib(dev.pid)
        finally:
            dev.stop()
    return {"idle_rss_kib": idle_rss, "idle_cpu_cores": idle_cpu, "rss_after_load_kib": after_rss, "load": loads}


def scale(flint, n=1000):
    """`n` Functions at zero in one flint dev: memory, CPU idle, routing table swap time."""
    spec = "  scale: {initial: 0}\n"
    with Workdir() as root:
        base_rss = None
        for i in range(n):
            write_stub(root, f"s{i:04}", spec)
        t0 = time.time()
        dev = Dev(flint, root)
        try:
            _, first_swap = dev.wait_swap(n, timeout=300)
            loaded = time.time() - t0
            time.sleep(3)
            rss = rss_kib(dev.pid)
            c0 = cpu_seconds(dev.pid)
            time.sleep(5)
            idle_cpu = (cpu_seconds(dev.pid) - c0) / 5
            initial = [first_swap * 1e6]
            # One more Function: time from its manifest on disk to the swap
            # that routes it (includes the 500 ms manifest rescan), and the
            # swap itself.
            reloads = []
            for k in range(3):
                name = f"s{n + k:04}"
                wrote = time.time()
                write_stub(root, name, spec)
                at, took = dev.wait_swap(n + k + 1, after=wrote)
                reloads.append({
                    "swap_us": took * 1e6,
                    "manifest_to_route_ms": (at - wrote) * 1000,
                })
            status, ttfb = http_get(dev.port, f"/function/default/s{n:04}/")
        finally:
            dev.stop()
    return {
        "functions": n,
        "load_seconds": loaded,
        "rss_kib": rss,
        "idle_cpu_cores": idle_cpu,
        "initial_swap_us": initial[0] if initial else None,
        "reloads": reloads,
        "new_function_status": status,
        "new_function_cold_ttfb_ms": ttfb * 1000,
    }
