"""The bridge as part of every sandbox: no set-up beyond `locki x`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.conftest import Locki, incus

pytestmark = pytest.mark.e2e


def test_git_inside_works_from_the_first_locki_x(locki: Locki, repo: Path) -> None:
    status = locki("x", "--", "git", "status", "--short", "--branch", cwd=repo)
    assert status.returncode == 0, status.stderr
    sid = locki.sandboxes(repo)[0]["id"]
    assert status.stdout.startswith(f"## untitled#locki-{sid}")

    work = locki("x", "--", "sh", "-c",
                 f"echo hi > hi.txt && git add hi.txt && printf 'subject\\n\\nbody\\n' | "
                 f"git commit -q -F - && git branch -m untitled#locki-{sid} topic#locki-{sid}",
                 cwd=repo)
    assert work.returncode == 0, work.stderr
    assert git(repo, "log", "-1", "--format=%B", f"topic#locki-{sid}") == "subject\n\nbody"
    denied = locki("x", "--", "git", "branch", "-D", "main", cwd=repo)
    assert denied.returncode == 1
    assert "denied" in denied.stderr
    assert git(repo, "rev-parse", "main") == git(repo, "rev-parse", "origin/main")


def test_recreated_container_gets_a_credential_and_remove_revokes_it(
    locki: Locki, repo: Path
) -> None:
    assert locki("x", "--", "git", "status", cwd=repo).returncode == 0
    sid = str(locki.sandboxes(repo)[0]["id"])
    incus("--project", locki.project, "delete", "--force", f"locki-{sid}")
    planned = locki("plan", cwd=repo)
    assert f"+ sandbox.{sid}.credential" in planned.stdout
    assert locki("apply", cwd=repo).returncode == 0
    again = locki("x", "--", "git", "rev-parse", "--abbrev-ref", "HEAD", cwd=repo)
    assert again.stdout.strip() == f"untitled#locki-{sid}", again.stderr

    clients = locki.data_dir.parent.parent / "state" / "locki" / "bridge" / "clients.json"
    assert sid in clients.read_text()
    assert locki("rm", cwd=repo).returncode == 0
    assert sid not in json.dumps(json.loads(clients.read_text()))


def test_a_dead_daemon_is_started_again(locki: Locki, repo: Path) -> None:
    assert locki("x", "--", "git", "status", cwd=repo).returncode == 0
    stopped = locki("daemon", "stop", cwd=repo)
    assert stopped.returncode == 0, stopped.stderr
    planned = locki("plan", "--detailed-exitcode", cwd=repo)
    assert planned.returncode == 2
    assert "+ bridge.daemon" in planned.stdout
    again = locki("x", "--", "git", "status", "--short", cwd=repo)
    assert again.returncode == 0, again.stderr
    status = locki("daemon", "status", cwd=repo)
    assert status.returncode == 0
    assert "answers" in status.stdout


def test_secrets_in_config_and_remote_urls_stay_on_the_host(locki: Locki, repo: Path) -> None:
    git(repo, "config", "sendemail.smtppass", "FAKE-SMTP-PASSWORD")
    git(repo, "remote", "add", "upstream", "https://me:ghp_FAKETOKEN@example.invalid/x.git")
    assert locki("x", "--", "true", cwd=repo).returncode == 0
    leaked = locki("x", "--", "sh", "-c",
                   "git config --get sendemail.smtppass; git config --get remote.upstream.url;"
                   " git remote -v; git remote get-url upstream", cwd=repo)
    assert "FAKE-SMTP-PASSWORD" not in leaked.stdout + leaked.stderr
    assert "ghp_FAKETOKEN" not in leaked.stdout + leaked.stderr
    assert "https://example.invalid/x.git" in leaked.stdout
