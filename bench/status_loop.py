"""`locki status` and the daemon's background loop: what they cost, how fast they react.

Run: .venv/bin/python bench/status_loop.py [sandboxes] [runs]   (default 3 sandboxes, 7)
Times `locki status` against `locki plan` (status is the plan plus one `git status` per
sandbox and its rendering), one no-op loop pass in-process (what the daemon pays every
`reconcile_interval`), and how long after a worktree folder is deleted by hand its
container is gone, with the loop's timer set far away, so only the inotify watcher can
have started the pass. Everything made is deleted at the end.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, compare, installation, save, summary, timed

SANDBOXES = int(sys.argv[1]) if len(sys.argv) > 1 else 3
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
LOCKI = [sys.executable, "-m", "locki"]
PASS = """
import anyio, json, sys, time
from locki.core.paths import Paths
from locki.hostd.loop import one_pass
paths, out = Paths.from_env(), []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    result = anyio.run(lambda: one_pass(paths, trigger="bench"))
    out.append(time.perf_counter() - start)
print(json.dumps({"result": result, "samples": out}))
"""


def _containers(env: dict[str, str]) -> set[str]:
    iid = (Path(env["XDG_DATA_HOME"]) / "locki" / "installation-id").read_text().strip()
    listing = subprocess.run(["incus", "--project", f"locki-{iid}", "list", "-f", "csv",
                              "-c", "n"], capture_output=True, text=True, check=True)
    return set(listing.stdout.split())


def main() -> None:
    rows: list[dict[str, object]] = []
    with installation() as (env, repo):
        env = {**env, "LOCKI_RECONCILE_INTERVAL": "600", "PYTHONPATH": str(ROOT)}
        boxes = []
        for _ in range(SANDBOXES):
            made = subprocess.run([*LOCKI, "new", "--json"], cwd=repo, env=env,
                                  capture_output=True, text=True, check=True)
            boxes.append(json.loads(made.stdout))

        def run(*args: str) -> None:
            done = subprocess.run([*LOCKI, *args], cwd=repo, env=env, capture_output=True)
            assert done.returncode == 0, done.stderr

        rows.append(compare(f"status vs plan, {SANDBOXES} sandboxes",
                            timed(lambda: run("status"), RUNS), timed(lambda: run("plan"), RUNS)))
        passes = subprocess.run([sys.executable, "-c", PASS, str(RUNS)], cwd=repo, env=env,
                                capture_output=True, text=True, check=True)
        measured = json.loads(passes.stdout.strip().splitlines()[-1])  # after its log lines
        line = summary(measured["samples"])
        print(f"{'one no-op loop pass':<34} p50 {line['p50_ms']:7.1f} ms "
              f"(p90 {line['p90_ms']:6.1f}), result {measured['result']}")
        rows.append({"scenario": "no-op pass", **line})

        latencies = []
        for box in boxes:
            name = f"locki-{box['id']}"
            start = time.perf_counter()
            shutil.rmtree(box["worktree"])
            while name in _containers(env) and time.perf_counter() - start < 60:
                time.sleep(0.05)
            latencies.append(time.perf_counter() - start)
        print(f"{'deleted worktree -> container gone':<34} p50 "
              f"{statistics.median(latencies):7.2f} s (max {max(latencies):.2f} s; "
              f"timer at 600 s)")
        rows.append({"scenario": "retire latency", "seconds": latencies})
    save("status_loop", rows)


if __name__ == "__main__":
    main()
