"""No-op `locki plan` over many sandboxes: time, and backend calls as sandboxes grow.

Run: .venv/bin/python bench/plan_scale.py [sandboxes] [repos] [runs]
(default 100 sandboxes over 10 repos, 5 runs). The sandboxes are written to the desired
state as `stopped`, made real by one `locki apply` (containers created, not started),
then a no-op plan is timed against the raw listing it needs (`incus list` of the
project plus one `git worktree list` per repo), and its child processes are counted
from locki's event log, at a tenth of the sandboxes and at all of them: the count must
not grow with the number of sandboxes. Everything made is deleted at the end.
"""

from __future__ import annotations

import json
import secrets
import string
import subprocess
import sys
import time
from pathlib import Path

from common import compare, git, installation, save, timed

SANDBOXES = int(sys.argv[1]) if len(sys.argv) > 1 else 100
REPOS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
LOCKI = [sys.executable, "-m", "locki"]
ALPHABET = string.ascii_lowercase + string.digits


def _id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(8))


def _desired(repos: list[Path], count: int, image: str) -> str:
    lines = []
    for n in range(count):
        repo = repos[n % len(repos)]
        lines += [f"[sandbox.{_id()}]", f"repo = {json.dumps(str(repo))}",
                  'base = "origin/main"', f"image = {json.dumps(image)}",
                  'state = "stopped"', ""]
    return "\n".join(lines)


def _calls(env: dict[str, str], repo: Path) -> int:
    """Child processes one `locki plan` starts (each is a `proc.run` event in its log)."""
    log = Path(env["XDG_STATE_HOME"]) / "locki" / "logs" / "locki.jsonl"
    before = log.read_text().count('"proc.run"') if log.exists() else 0
    planned = subprocess.run([*LOCKI, "plan", "--detailed-exitcode"], cwd=repo, env=env,
                             capture_output=True, text=True)
    if planned.returncode != 0:
        raise SystemExit(f"plan is not a no-op (exit {planned.returncode}):\n"
                         f"{planned.stdout[-2000:]}{planned.stderr[-2000:]}")
    return log.read_text().count('"proc.run"') - before


def main() -> None:
    rows: list[dict[str, object]] = []
    with installation() as (env, first):
        repos = [first]
        for n in range(1, REPOS):
            clone = first.parent / f"repo{n}"
            git(first.parent, "clone", "-q", str(first.parent / "origin.git"), str(clone))
            repos.append(clone)
        state = Path(env["XDG_CONFIG_HOME"]) / "locki" / "sandboxes.toml"
        state.parent.mkdir(parents=True, exist_ok=True)
        counts = {}
        for count in (max(SANDBOXES // 10, REPOS), SANDBOXES):
            extra = count - sum(1 for line in state.read_text().splitlines()
                                if line.startswith("[sandbox.")) if state.exists() else count
            with state.open("a") as handle:
                handle.write(_desired(repos, extra, env["LOCKI_IMAGE"]))
            started = time.perf_counter()
            subprocess.run([*LOCKI, "apply"], cwd=first, env=env, check=True,
                           capture_output=True)
            print(f"apply of {extra} new stopped sandboxes: "
                  f"{time.perf_counter() - started:.1f} s")
            counts[count] = _calls(env, first)
            print(f"no-op plan with {count} sandboxes over {REPOS} repos: "
                  f"{counts[count]} child processes")

        project = "locki-" + (Path(env["XDG_DATA_HOME"]) / "locki" / "installation-id"
                              ).read_text().strip()

        def plan() -> None:
            subprocess.run([*LOCKI, "plan"], cwd=first, env=env, check=True,
                           capture_output=True)

        def raw() -> None:
            subprocess.run(["incus", "--project", project, "list", "--format", "json"],
                           check=True, capture_output=True)
            for repo in repos:
                subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=repo,
                               check=True, capture_output=True)

        row = compare(f"no-op plan, {SANDBOXES} sandboxes", timed(plan, RUNS), timed(raw, RUNS))
        row["child_processes"] = {str(k): v for k, v in counts.items()}
        rows.append(row)
    save("plan_scale", rows)


if __name__ == "__main__":
    main()
