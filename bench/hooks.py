"""Hooks inside the sandbox: a bridged `git commit` with one pre-commit hook (in the
repository's `.git/hooks`, run in the container) vs the same commit without it; and
the cost a hook the repository does not have adds to a bridged command.

Run: .venv/bin/python bench/hooks.py [runs]. Commits are timed inside the container
(no `incus exec` in the measurement).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common import compare, installation, save

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
LOCKI = [sys.executable, "-m", "locki"]

INSIDE = r"""
import json, subprocess, sys, time
runs = int(sys.argv[1])
samples = []
for i in range(runs + 1):
    start = time.perf_counter()
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", f"c{i}"], check=True,
                   capture_output=True)
    samples.append(time.perf_counter() - start)
print(json.dumps(samples[1:]))
"""


def commits(env: dict[str, str], repo: Path) -> list[float]:
    done = subprocess.run([*LOCKI, "x", "--", "python3", "-c", INSIDE, str(RUNS)], cwd=repo,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the commits failed: {done.stderr}")
    samples: list[float] = json.loads(done.stdout)
    return samples


def main() -> None:
    rows: list[dict[str, object]] = []
    with installation() as (env, repo):
        # The bridge's host git takes the user's identity from HOME, not the environment.
        (Path(env["HOME"]) / ".gitconfig").write_text("[user]\n\tname = b\n\temail = b@b\n")
        subprocess.run([*LOCKI, "x", "--", "true"], cwd=repo, env=env, check=True)
        without = commits(env, repo)
        hook = repo / ".git" / "hooks" / "pre-commit"
        hook.write_text("#!/bin/sh\ntest -n \"$IS_SANDBOX\"\n")
        hook.chmod(0o755)
        with_hook = commits(env, repo)
        rows.append(compare("bridged commit, 1 hook vs none", with_hook, without))
    save("hooks", rows)


if __name__ == "__main__":
    main()
