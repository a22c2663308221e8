"""`locki x -- true` vs `incus exec <c> -- true`, and `locki --version` vs `python -c pass`.

Run: .venv/bin/python bench/exec_and_startup.py [runs]. Prints median ratios with spread
and saves a JSON file under bench/results/ so runs can be compared.
"""

from __future__ import annotations

import json
import subprocess
import sys

from common import compare, installation, save, timed

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
LOCKI = [sys.executable, "-m", "locki"]


def main() -> None:
    rows = []
    with installation() as (env, repo):
        made = subprocess.run([*LOCKI, "new", "--json"], cwd=repo, env=env,
                              capture_output=True, text=True, check=True)
        sid = json.loads(made.stdout)["id"]
        id_file = repo.parent / "home/.local/share/locki/installation-id"
        project = f"locki-{id_file.read_text().strip()}"

        def locki_x() -> None:
            subprocess.run([*LOCKI, "x", "--", "true"], cwd=repo, env=env, check=True)

        def raw_exec() -> None:
            subprocess.run(["incus", "--project", project, "exec", f"locki-{sid}", "--",
                            "true"], check=True)

        rows.append(compare("locki x -- true", timed(locki_x, RUNS), timed(raw_exec, RUNS)))

        def version() -> None:
            subprocess.run([*LOCKI, "--version"], env=env, check=True, capture_output=True)

        def python() -> None:
            subprocess.run([sys.executable, "-c", "pass"], check=True)

        rows.append(compare("locki --version", timed(version, RUNS), timed(python, RUNS)))
    save("exec_and_startup", rows)


if __name__ == "__main__":
    main()
