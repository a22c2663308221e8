"""Shared helpers for the benchmarks: a throwaway installation and timing in one run."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
IMAGE = os.environ.get("LOCKI_TEST_IMAGE", "locki-test")


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up, not counted
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(samples, n=10) if len(samples) >= 2 else [samples[0]] * 9
    return {"p50_ms": statistics.median(samples) * 1000, "p10_ms": qs[0] * 1000,
            "p90_ms": qs[-1] * 1000}


def compare(name: str, locki: list[float], raw: list[float]) -> dict[str, object]:
    mine, base = summary(locki), summary(raw)
    ratio = statistics.median(locki) / statistics.median(raw)
    print(f"{name:<34} locki p50 {mine['p50_ms']:7.1f} ms (p10 {mine['p10_ms']:6.1f}, "
          f"p90 {mine['p90_ms']:6.1f})   raw p50 {base['p50_ms']:7.1f} ms   ratio {ratio:.2f}x")
    return {"scenario": name, "locki": mine, "raw": base, "ratio_p50": ratio}


def save(name: str, rows: list[dict[str, object]]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"python": sys.version, "rows": rows}, indent=2))
    print(f"saved {path}")
    return path


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@contextmanager
def installation() -> Iterator[tuple[dict[str, str], Path]]:
    """A private HOME/XDG tree and a repo with an origin; its Incus project is deleted."""
    with tempfile.TemporaryDirectory(prefix="locki-bench-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "LOCKI_"))}
        env.update(HOME=str(root / "home"), XDG_CONFIG_HOME=str(root / "home/.config"),
                   XDG_DATA_HOME=str(root / "home/.local/share"),
                   XDG_STATE_HOME=str(root / "home/.local/state"),
                   XDG_RUNTIME_DIR=str(root / "run"), LOCKI_RUNTIME="incus", LOCKI_IMAGE=IMAGE,
                   GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
                   GIT_COMMITTER_EMAIL="b@b")
        (root / "run").mkdir(mode=0o700)
        (root / "home").mkdir()
        origin, repo = root / "origin.git", root / "repo"
        git(root, "init", "-q", "--bare", "-b", "main", str(origin))
        git(root, "clone", "-q", str(origin), str(repo))
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "x"], cwd=repo,
                       env=env, check=True)
        git(repo, "push", "-q", "origin", "main")
        git(repo, "remote", "set-head", "origin", "main")
        try:
            yield env, repo
        finally:
            subprocess.run([sys.executable, "-m", "locki", "daemon", "stop"], env=env,
                           cwd=root, capture_output=True)
            id_file = root / "home/.local/share/locki/installation-id"
            if id_file.exists():
                project = f"locki-{id_file.read_text().strip()}"
                names = subprocess.run(["incus", "--project", project, "list", "-f", "csv",
                                        "-c", "n"], capture_output=True, text=True).stdout
                for n in names.split():
                    subprocess.run(["incus", "--project", project, "delete", "-f", n],
                                   capture_output=True)
                subprocess.run(["incus", "--project", project, "profile", "delete", "locki"],
                               capture_output=True)
                subprocess.run(["incus", "project", "delete", project], capture_output=True)
