"""A new sandbox from a warm template: `locki new` vs the raw operations it stands for.

- `locki new` (template already built) vs raw `incus copy <template>` + `incus start`
  + `git worktree add` (the target is at most 2x);
- `locki new` vs a fresh launch plus setup: `incus create` from the image, the same
  setup steps locki puts into a template, `incus start`, `git worktree add` (the gain):
  once with locki's own steps only (files, pushed without booting), once with a repo
  `setup` of one command (a fresh launch boots to run it).

Run: .venv/bin/python bench/new_sandbox.py [runs]. Each run's sandbox is deleted before
the next (untimed), so at most two containers and the template exist at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import structlog
from common import compare, installation, save

from locki.core.incus import Incus
from locki.resources import provision, template

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
LOCKI = [sys.executable, "-m", "locki"]


def samples(make: Callable[[], str], clean: Callable[[str], None], runs: int) -> list[float]:
    """Time `make` (which returns what `clean` removes, untimed) `runs` times."""
    clean(make())  # warm-up, not counted
    found = []
    for _ in range(runs):
        start = time.perf_counter()
        made = make()
        found.append(time.perf_counter() - start)
        clean(made)
    return found


def main() -> None:
    # The in-process template builds of the fresh path log nothing below warnings.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rows = []
    with installation() as (env, repo):
        def run(*argv: str) -> str:
            done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(argv)} failed: {done.stderr}")
            return done.stdout

        first = json.loads(run(*LOCKI, "new", "--json"))["id"]  # builds the template
        home = Path(env["HOME"])
        project = f"locki-{(home / '.local/share/locki/installation-id').read_text().strip()}"
        [tpl] = [n for n in run("incus", "--project", project, "list", "-f", "csv", "-c", "n")
                 .split() if n.startswith("locki-template-")]
        incus = ["incus", "--project", project]

        def locki_new() -> str:
            return str(json.loads(run(*LOCKI, "new", "--json"))["id"])

        def locki_remove(sid: str) -> None:
            run(*LOCKI, "remove", "--force", "-m", sid)

        def worktree(name: str) -> None:
            run("git", "worktree", "add", "-q", "-b", f"b-{name}",
                str(home / "raw" / name), "origin/main")

        def raw_copy() -> str:
            name = f"raw-{secrets.token_hex(4)}"
            run(*incus, "copy", tpl, name)
            run(*incus, "start", name)
            worktree(name)
            return name

        def raw_remove(name: str) -> None:
            run(*incus, "delete", "--force", name)
            run("git", "worktree", "remove", "--force", str(home / "raw" / name))

        def fresh_with(setup: list[str]) -> Callable[[], str]:
            want = provision.Want("bench", "img", "img", provision.steps(
                cache_dir=home / ".cache" / "locki",
                worktrees=home / ".local/share/locki/worktrees", repo_setup=setup))

            def fresh() -> str:
                spec = template.TemplateSpec(
                    want=dataclasses.replace(want, key=secrets.token_hex(4)),
                    installation_id="bench", profile="locki", source=env["LOCKI_IMAGE"])
                anyio.run(lambda: template.ensure(Incus(["incus"], project), spec,
                                                  staging=home / ".cache" / "locki"))
                run(*incus, "start", spec.name)
                worktree(spec.name)
                return spec.name

            return fresh

        rows.append(compare("locki new vs copy+start+worktree",
                            samples(locki_new, locki_remove, RUNS),
                            samples(raw_copy, raw_remove, RUNS)))
        rows.append(compare("locki new vs fresh+setup (files)",
                            samples(locki_new, locki_remove, RUNS),
                            samples(fresh_with([]), raw_remove, RUNS)))
        # A repository setup with one command: a fresh launch boots to run it, then stops.
        (repo / "locki.toml").write_text('setup = ["true"]\n')
        rows.append(compare("same, repo setup = [\"true\"]",
                            samples(locki_new, locki_remove, RUNS),
                            samples(fresh_with(["true"]), raw_remove, RUNS)))
        locki_remove(first)
    save("new_sandbox", rows)


if __name__ == "__main__":
    main()
