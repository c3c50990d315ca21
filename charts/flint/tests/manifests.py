#!/usr/bin/env python3
"""Checks on rendered chart manifests (a `helm template` YAML stream).

  manifests.py split RENDERED CORE_OUT MONITORING_OUT
      Objects with Kubernetes schemas to CORE_OUT (YAML, for
      kubernetes-validate); ServiceMonitors and PrometheusRules to
      MONITORING_OUT (a JSON array, for validate_monitoring.mjs).
  manifests.py kinds RENDERED KIND=COUNT...
      Exactly COUNT objects of each KIND.
  manifests.py pods RENDERED
      Every Deployment's pods: non-root, read-only root filesystem, no
      privilege escalation, all capabilities dropped, seccomp RuntimeDefault,
      liveness/readiness probes, resource requests.
  manifests.py env RENDERED FLINT_BINARY
      Every FLINT_* variable set on a container is one `flint <role> --help`
      documents (so no setting is silently ignored).

Runs with the Python of .tools/venv (PyYAML comes with kubernetes-validate).
"""
import json
import subprocess
import sys

import yaml

MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def split(rendered, core_out, mon_out):
    docs = load(rendered)
    core = [d for d in docs if d["kind"] not in MONITORING_KINDS]
    mon = [d for d in docs if d["kind"] in MONITORING_KINDS]
    with open(core_out, "w") as f:
        yaml.safe_dump_all(core, f)
    with open(mon_out, "w") as f:
        json.dump(mon, f)
    print(f"{len(core)} objects with Kubernetes schemas, {len(mon)} monitoring objects")
    return 0


def kinds(rendered, *expect):
    docs = load(rendered)
    bad = []
    for e in expect:
        kind, count = e.split("=")
        got = sum(1 for d in docs if d["kind"] == kind)
        if got != int(count):
            bad.append(f"{kind}: {got} rendered, {count} expected")
    print("\n".join(bad) or "kinds as expected")
    return 1 if bad else 0


def pods(rendered):
    problems = []
    for d in load(rendered):
        if d["kind"] != "Deployment":
            continue
        name = d["metadata"]["name"]
        spec = d["spec"]["template"]["spec"]
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pod securityContext must set runAsNonRoot and seccomp RuntimeDefault")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            where = f"{name}/{c['name']}"
            checks = {
                "readOnlyRootFilesystem: true": sc.get("readOnlyRootFilesystem") is True,
                "allowPrivilegeEscalation: false": sc.get("allowPrivilegeEscalation") is False,
                "runAsNonRoot: true": sc.get("runAsNonRoot") is True or psc.get("runAsNonRoot") is True,
                "capabilities.drop: [ALL]": sc.get("capabilities", {}).get("drop") == ["ALL"],
                "no added capabilities": not sc.get("capabilities", {}).get("add"),
                "seccomp RuntimeDefault": sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                "livenessProbe": "livenessProbe" in c,
                "readinessProbe": "readinessProbe" in c,
                "resource requests": bool(c.get("resources", {}).get("requests")),
            }
            problems += [f"{where}: needs {k}" for k, ok in checks.items() if not ok]
    print("\n".join(problems) or "every pod hardened, probed and sized")
    return 1 if problems else 0


def env(rendered, flint):
    problems = []
    helps = {}
    for d in load(rendered):
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            role = (c.get("args") or [""])[0]
            if role not in helps:
                out = subprocess.run([flint, role, "--help"], capture_output=True, text=True)
                helps[role] = out.stdout if out.returncode == 0 else ""
                if out.returncode != 0:
                    problems.append(f"`flint {role} --help` failed: {out.stderr.strip()}")
            for e in c.get("env", []):
                if e["name"].startswith("FLINT_") and f"[env: {e['name']}=" not in helps[role]:
                    problems.append(f"{d['metadata']['name']}: {e['name']} is not a setting of `flint {role}`")
    print("\n".join(problems) or "every FLINT_* variable is a documented setting")
    return 1 if problems else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    return {"split": split, "kinds": kinds, "pods": pods, "env": env}[cmd](*args)


if __name__ == "__main__":
    sys.exit(main())
