"""A faithful stand-in for the GitHub CLI on the host (no GitHub is reachable here).

Run as `fake_gh.py <state dir> <bare remote> <gh args...>` through a `gh` wrapper the
tests put first on the daemon's PATH. It records every call (argv, cwd, GH_REPO, whether
a login was present) in `<state>/calls.jsonl`, keeps PRs in `<state>/prs.json`, and
answers like gh 2.x does without a terminal: tab-separated lists, `key:\\tvalue` views,
the PR URL on create, GraphQL errors on stderr with exit 1, exit 4 without a login. A
PR's head must exist as a branch of the bare remote, as on GitHub.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

VALUE_FLAGS = {
    "--title", "--body", "--body-file", "--head", "--base", "--json", "--jq", "--template",
    "--state", "--limit", "--label", "--author", "--add-label", "--method", "--job",
}
FIELDS = ("number", "title", "body", "headRefName", "baseRefName", "isCrossRepository",
          "state", "url", "isDraft", "labels")


def parse(args: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """pflag's reading of `--flag=value`, `--flag value`, bools and `--`."""
    flags: dict[str, list[str]] = {}
    words: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word == "--":
            words.extend(args[i:])
            break
        if word.startswith("--"):
            name, eq, val = word.partition("=")
            if name in VALUE_FLAGS and not eq:
                val, i = args[i], i + 1
            flags.setdefault(name, []).append(val if (eq or name in VALUE_FLAGS) else "true")
        else:
            words.append(word)
    return flags, words


class Fake:
    def __init__(self, state: Path, remote: Path) -> None:
        self.state = state
        self.remote = remote
        self.repo = os.environ.get("GH_REPO", "")
        self.prs: list[dict[str, Any]] = json.loads((state / "prs.json").read_text())

    def save(self) -> None:
        (self.state / "prs.json").write_text(json.dumps(self.prs))

    def url(self, number: int) -> str:
        host, owner, name = self.repo.split("/")
        return f"https://{host}/{owner}/{name}/pull/{number}"

    def find(self, selector: str) -> dict[str, Any]:
        for pr in self.prs:
            if selector.lstrip("#") == str(pr["number"]) or selector == pr["headRefName"]:
                return pr
        if selector.lstrip("#").isdigit():
            fail(f"GraphQL: Could not resolve to a PullRequest with the number of "
                 f"{selector.lstrip('#')}. (repository.pullRequest)")
        fail(f'no pull requests found for branch "{selector}"')
        raise AssertionError

    def body(self, flags: dict[str, list[str]]) -> str | None:
        if "--body-file" in flags:
            path = flags["--body-file"][-1]
            return sys.stdin.read() if path == "-" else Path(path).read_text()
        return flags["--body"][-1] if "--body" in flags else None

    def create(self, flags: dict[str, list[str]]) -> None:
        head, base = flags.get("--head", [""])[-1], flags.get("--base", ["main"])[-1]
        title, body = flags.get("--title", [None])[-1], self.body(flags)
        if title is None or body is None:
            fail("must provide `--title` and `--body` (or `--fill` or `--template`) "
                 "when not running interactively")
        found = subprocess.run(["git", f"--git-dir={self.remote}", "rev-parse", "-q",
                                "--verify", f"refs/heads/{head}"], capture_output=True)
        if found.returncode != 0:
            fail("pull request create failed: GraphQL: Head sha can't be blank, Base sha "
                 "can't be blank, Head ref must be a branch (createPullRequest)")
        for pr in self.prs:
            if pr["headRefName"] == head and pr["state"] == "OPEN":
                fail(f'a pull request for branch "{head}" into branch "{base}" already '
                     f"exists:\n{pr['url']}")
        number = max((p["number"] for p in self.prs), default=0) + 1
        self.prs.append({
            "number": number, "title": title, "body": body, "headRefName": head,
            "baseRefName": base, "isCrossRepository": False, "state": "OPEN",
            "url": self.url(number), "isDraft": "--draft" in flags, "labels": [],
            "comments": [],
        })
        self.save()
        print(self.url(number))

    def view(self, flags: dict[str, list[str]], words: list[str]) -> None:
        pr = self.find(words[0] if words else "")
        if "--json" in flags:
            wanted = flags["--json"][-1].split(",")
            print(json.dumps({k: pr[k] for k in wanted if k in FIELDS}))
            return
        labels = ", ".join(label["name"] for label in pr["labels"])
        print(f"title:\t{pr['title']}\nstate:\t{pr['state']}\nauthor:\tlocki-test\n"
              f"labels:\t{labels}\nassignees:\t\nreviewers:\t\nprojects:\t\nmilestone:\t\n"
              f"number:\t{pr['number']}\nurl:\t{pr['url']}\nadditions:\t0\ndeletions:\t0\n"
              f"auto-merge:\tdisabled\n--\n{pr['body']}")

    def edit(self, flags: dict[str, list[str]], words: list[str]) -> None:
        pr = self.find(words[0])
        pr["title"] = flags.get("--title", [pr["title"]])[-1]
        pr["body"] = self.body(flags) or pr["body"]
        pr["labels"] += [{"name": n} for n in flags.get("--add-label", [])]
        self.save()
        print(pr["url"])

    def comment(self, flags: dict[str, list[str]], words: list[str]) -> None:
        pr = self.find(words[0])
        pr["comments"].append(self.body(flags))
        self.save()
        print(f"{pr['url']}#issuecomment-{1000 + len(pr['comments'])}")


def fail(message: str, code: int = 1) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def main() -> None:
    state, remote, args = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    token = os.environ.get("GH_TOKEN") or os.environ.get("GITHUB_TOKEN")
    with open(state / "calls.jsonl", "a") as log:
        log.write(json.dumps({"argv": args, "cwd": os.getcwd(),
                              "GH_REPO": os.environ.get("GH_REPO"),
                              "logged_in": bool(token)}) + "\n")
    if args[:2] == ["auth", "token"]:
        print(token)
        return
    if not token:
        fail("To get started with GitHub CLI, please run:  gh auth login", 4)
    if args[:2] == ["auth", "status"]:
        print(f"github.com\n  ✓ Logged in to github.com account locki-test (GH_TOKEN)\n"
              f"  - Token: {token[:4]}{'*' * (len(token) - 4)}")
        return
    if not os.environ.get("GH_REPO"):
        fail("failed to determine base repo: not a git repository")
    fake = Fake(state, remote)
    flags, words = parse(args[2:])
    command = " ".join(args[:2])
    if command == "pr create":
        fake.create(flags)
    elif command == "pr view":
        fake.view(flags, words)
    elif command == "pr edit":
        fake.edit(flags, words)
    elif command == "pr comment":
        fake.comment(flags, words)
    elif command == "pr list":
        for pr in fake.prs:
            print(f"{pr['number']}\t{pr['title']}\t{pr['headRefName']}\t{pr['state']}\t"
                  "2026-12-04T10:00:00Z")
    elif command in ("issue list", "run list"):
        pass  # nothing there: gh prints nothing without a terminal, exit 0
    else:
        fail(f'unknown command "{args[1] if len(args) > 1 else args[0]}" for "gh"')


if __name__ == "__main__":
    main()
