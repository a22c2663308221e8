"""Running an allowed gh command on the host, for the daemon.

Host gh runs with the user's own login (its config under HOME), `GH_REPO` set to the
repository the policy derived from the configured remotes, prompts, pagers, browsers
and update checks off, and `/` as its folder: never the worktree, whose `.git` pointer
the sandbox writes (gh runs git in its folder). Nothing gh keeps (its token) is passed
to the container; only the command's output is.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from locki.core import git, proc
from locki.core.errors import LockiError

# Host gh needs its own config and, for enterprise hosts, the user's choice of host.
_KEEP = ("GH_TOKEN", "GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN", "GH_HOST", "GH_CONFIG_DIR")


class NotOwnPR(Exception):
    """The PR named is not one whose head is one of the caller's branches."""


def find() -> str:
    found = shutil.which("gh", path=git.host_env().get("PATH"))
    if found is None:
        raise LockiError("`gh` is not installed on the host",
                         hint="install the GitHub CLI on the host and run `gh auth login`")
    return found


def env(repo: str, inherited: dict[str, str]) -> dict[str, str]:
    """gh's environment: locki's clean base, the user's gh login, and the repository."""
    out = git.host_env()
    out.update({k: v for k, v in inherited.items() if k in _KEEP})
    out.update(GH_REPO=repo, GH_PROMPT_DISABLED="1", GH_NO_UPDATE_NOTIFIER="1",
               GH_PAGER="cat", PAGER="cat", GH_BROWSER="false", BROWSER="false",
               GH_SPINNER_DISABLED="1")
    return out


async def pr_number(gh: str, environment: dict[str, str], selector: str, suffix: str
                    ) -> str:
    """The number of the PR `selector` names, if its head is one of the caller's branches
    in this very repository (not a fork's branch of the same name)."""
    found = await proc.run(
        [gh, "pr", "view", "--json=number,headRefName,isCrossRepository", "--", selector],
        env=environment, cwd=Path("/"), check=False)
    if not found.ok:
        raise NotOwnPR(found.stderr.strip() or f"no PR found for `{selector}`")
    data = json.loads(found.stdout)
    head = str(data.get("headRefName", ""))
    if data.get("isCrossRepository") or not head.endswith(suffix) or head == suffix:
        raise NotOwnPR(f"PR #{data.get('number')} has head `{head}`, not one of this "
                       f"sandbox's `<topic>{suffix}` branches")
    return str(int(data["number"]))
