"""The git bridge: bridged `git status` from inside vs host `git status`, a burst of 20,
and 5 sandboxes x 20 concurrent commands; then the daemon's resident memory.

Run: .venv/bin/python bench/bridge.py [runs]. Latency inside the container is timed
inside the container (no `incus exec` in the measurement).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import compare, installation, save, summary

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 30
LOCKI = [sys.executable, "-m", "locki"]

INSIDE = r"""
import json, subprocess, sys, time
runs = int(sys.argv[1])
samples = []
for _ in range(runs + 1):
    start = time.perf_counter()
    subprocess.run(["git", "status", "--short"], check=True, capture_output=True)
    samples.append(time.perf_counter() - start)
start = time.perf_counter()
for _ in range(20):
    subprocess.run(["git", "status", "--short"], check=True, capture_output=True)
burst = time.perf_counter() - start
print(json.dumps({"samples": samples[1:], "burst": burst}))
"""

PARALLEL = r"""
import json, subprocess, sys
procs = [subprocess.Popen(["git", "log", "--oneline", "-1"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE) for _ in range(20)]
print(json.dumps([p.wait() for p in procs]))
"""


def rss_mib(name: str) -> float:
    for proc in Path("/proc").iterdir():
        try:
            if name.encode() in (proc / "cmdline").read_bytes():
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            continue
    return float("nan")


def main() -> None:
    rows: list[dict[str, object]] = []
    with installation() as (env, repo):
        ids = []
        for _ in range(5):
            made = subprocess.run([*LOCKI, "new", "--json"], cwd=repo, env=env, check=True,
                                  capture_output=True, text=True)
            ids.append(json.loads(made.stdout))
        project = "locki-" + (repo.parent / "home/.local/share/locki/installation-id") \
            .read_text().strip()
        first = ids[0]

        def inside(sid: str, wt: str, script: str, *args: str) -> str:
            return subprocess.run(
                ["incus", "--project", project, "exec", f"locki-{sid}", "--cwd", wt, "--",
                 "python3", "-c", script, *args],
                check=True, capture_output=True, text=True).stdout

        bridged = json.loads(inside(first["id"], first["worktree"], INSIDE, str(RUNS)))
        host = []
        for _ in range(RUNS + 1):
            start = time.perf_counter()
            subprocess.run(["git", "status", "--short"], cwd=first["worktree"], check=True,
                           capture_output=True)
            host.append(time.perf_counter() - start)
        rows.append(compare("bridged git status (inside)", bridged["samples"], host[1:]))
        overhead = (statistics.median(bridged["samples"]) - statistics.median(host[1:])) * 1000
        print(f"{'per-command overhead p50':<34} {overhead:7.1f} ms (target <= 60 ms)")
        print(f"{'burst of 20 bridged commands':<34} {bridged['burst'] * 1000:7.1f} ms")
        rows.append({"scenario": "burst of 20", "seconds": bridged["burst"],
                     "overhead_p50_ms": overhead})

        start = time.perf_counter()
        procs = [subprocess.Popen(
            ["incus", "--project", project, "exec", f"locki-{box['id']}", "--cwd",
             box["worktree"], "--", "python3", "-c", PARALLEL],
            stdout=subprocess.PIPE, text=True) for box in ids]
        codes = [json.loads(p.communicate()[0]) for p in procs]
        wall = time.perf_counter() - start
        errors = sum(1 for per_box in codes for c in per_box if c != 0)
        print(f"{'5 sandboxes x 20 concurrent':<34} {wall * 1000:7.1f} ms, {errors} errors")
        rss = rss_mib("locki.hostd")
        print(f"{'daemon RSS after the load':<34} {rss:7.1f} MiB (target <= 60)")
        rows.append({"scenario": "5x20 concurrent", "seconds": wall, "errors": errors,
                     "daemon_rss_mib": rss, "host_status": summary(host[1:])})
        subprocess.run([*LOCKI, "daemon", "stop"], cwd=repo, env=env, capture_output=True)
    save("bridge", rows)


if __name__ == "__main__":
    main()
