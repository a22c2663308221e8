"""Property: whatever random gh argv the policy allows, what host gh runs stays inside
the current repository, opens no browser, prints no token, writes only own PRs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from locki.bridge.gh import FORMS, check_gh
from tests.bridge.support import CALLER

COMMANDS = [f.split(" ") for f in FORMS] + [
    ["auth", "token"], ["pr", "merge"], ["secret", "set"], ["release", "create"],
    ["repo", "delete"], ["api"], ["-R", "o/r"], ["config", "get"],
]
TOKENS = [
    "-R", "--repo", "o/r", "--repo=o/r", "--web", "-w", "--show-token", "-t", "T", "-b",
    "B", "--body=x", "-F", "body.md", "/etc/shadow", "-F-", "--head", "main",
    "x#locki-abcd1234", "x#locki-zzzz9999", "-H", "--base=main", "1", "#2", "--", "-",
    "--json", "title", "--jq", "env", ".title", "-q", "$ENV", "--fill", "-X", "POST", "GET",
    "-f", "a=b", "repos/acme/widget/pulls", "repos/o/r/pulls", "repos/{owner}/{repo}/x",
    "user", "graphql", "../..", "--comments", "--add-label", "ready", "--help", "-h",
    "--template", "{{.}}", "https://github.com/o/r/pull/1", "--hostname", "h", "--input",
]
FORBIDDEN = ("--repo", "-R", "--web", "-w", "--show-token", "--fill", "--hostname",
             "--input", "--field", "--raw-field", "-f", "-F")


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(st.sampled_from(COMMANDS), st.lists(st.sampled_from(TOKENS), max_size=6))
def test_allowed_gh_argv_is_safe(command: list[str], tokens: list[str]) -> None:
    decision = check_gh([*command, *tokens], CALLER)
    if not decision.allowed:
        assert decision.argv == ()
        return
    argv = decision.argv
    if argv[-1:] == ("--help",):
        assert len(argv) <= 3  # gh prints usage text and does nothing else
        return
    options = argv[:argv.index("--")] if "--" in argv else argv

    assert " ".join(argv[:2]) in FORMS or argv[0] == "api"
    assert argv[:2] != ("auth", "token")
    for word in options:
        assert word.split("=", 1)[0] not in FORBIDDEN, argv
        assert not word.startswith("--jq=") or "env" not in word.lower(), argv
    if argv[:2] == ("pr", "create"):
        assert argv[2] == f"--head={CALLER.head}" or argv[2].endswith(CALLER.suffix), argv
    if argv[:2] in (("pr", "edit"), ("pr", "comment")):
        assert decision.pr_check == argv[-1] and argv[-2] == "--"
    if argv[0] == "api":
        assert argv[-1].startswith(("repos/acme/widget/", "repos/{owner}/{repo}/")), argv
        assert "--method=POST" not in argv

    # What the daemon runs is a fixed point of the policy.
    again = check_gh(list(argv), CALLER)
    assert again.allowed and again.argv == argv, (argv, again.reason)
