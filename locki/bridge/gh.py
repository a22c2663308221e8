"""The bridge's allow-list for `gh`: reads of the current repository, and PR writes only
for PRs whose head is one of the caller's branches.

"The current repository" is never the agent's to choose: `-R/--repo` is refused and the
daemon hands host gh `GH_REPO`, derived from the repository's configured remotes
(`Caller.github`). gh runs on the host with the user's login, outside the worktree, so
its token never enters the container and it never runs git in a folder the sandbox
writes. `pr create` gets `--head` spelled out (an own branch); `pr edit|comment` name
a PR the daemon looks up first (`Decision.pr_check`) and refuses unless its head is one
of the caller's branches. Pure, like `policy.check_git`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from locki.bridge.model import Caller, Decision, Denied, allow
from locki.bridge.names import check_own_branch, check_rev, refname_problem
from locki.bridge.options import Kind, Opt, Parsed, Syntax, emit_options, flag, parse, value

INT, PATH, CHOICE = Kind.INT, Kind.PATH, Kind.CHOICE
_WEB = "opens a browser on the host"
REFUSED_EVERYWHERE = {
    "--repo": "is refused: gh acts on this repository only (from its configured remotes)",
    "-R": "is refused: gh acts on this repository only (from its configured remotes)",
    "--web": _WEB, "--editor": "needs an editor on the host",
    "-e": "needs an editor on the host",
}
OUTPUT = (value("json"), value("jq", "q"), value("template", "t"))
_NUMBER = re.compile(r"#?([1-9][0-9]{0,9})")
Handler = Callable[[Sequence[str], Caller], Decision]
_JQ_ENV = re.compile(r"(?<![A-Za-z0-9_])(\$ENV|env)(?![A-Za-z0-9_])")
_ENDPOINT = re.compile(r"[A-Za-z0-9._~{}/-]+(\?[A-Za-z0-9._~=&%,+-]*)?")


def _syntax(*options: Opt, refused: dict[str, str] | None = None) -> Syntax:
    return Syntax(options, refused={**REFUSED_EVERYWHERE, **(refused or {})})


BODY = (value("body", "b"), value("body-file", "F", PATH))
PR_VIEW = _syntax(flag("comments", "c"), *OUTPUT, refused={"-w": _WEB})
PR_LIST = _syntax(
    value("state", "s", CHOICE, choices=("open", "closed", "merged", "all")),
    value("limit", "L", INT), value("label", "l", multi=True), value("author", "A"),
    value("assignee", "a"), value("base", "B"), value("head", "H"), value("search", "S"),
    flag("draft", "d"), *OUTPUT, refused={"-w": _WEB})
PR_STATUS = _syntax(flag("conflict-status", "c"), *OUTPUT)
PR_DIFF = _syntax(flag("name-only"), flag("patch"),
                  value("color", kind=CHOICE, choices=("always", "never", "auto")))
PR_CHECKS = _syntax(flag("required"), value("json"), value("jq", "q"), value("template", "t"),
                    refused={"--watch": "waits for CI without end; run it again instead",
                             "-w": _WEB})
PR_CREATE = _syntax(
    value("title", "t"), *BODY, value("base", "B"), value("head", "H"), flag("draft", "d"),
    value("reviewer", "r", multi=True), value("label", "l", multi=True),
    value("assignee", "a", multi=True), value("milestone", "m"),
    value("project", "p", multi=True), flag("no-maintainer-edit"), flag("dry-run"),
    refused={"--fill": "reads commits with git on the host; give --title and --body",
             "-f": "(--fill) reads commits with git on the host; give --title and --body",
             "--fill-first": "reads commits with git on the host",
             "--fill-verbose": "reads commits with git on the host",
             "--template": "reads a file on the host", "-T": "reads a file on the host",
             "--recover": "reads a file on the host", "-w": _WEB})
PR_EDIT = _syntax(
    value("title", "t"), *BODY, value("base", "B"), value("milestone", "m"),
    *(value(f"{verb}-{what}", multi=True) for verb in ("add", "remove")
      for what in ("label", "reviewer", "assignee", "project")))
PR_COMMENT = _syntax(*BODY, refused={"-w": _WEB, "--edit-last": "is not supported here"})
ISSUE_VIEW = _syntax(flag("comments", "c"), *OUTPUT, refused={"-w": _WEB})
ISSUE_LIST = _syntax(
    value("state", "s", CHOICE, choices=("open", "closed", "all")), value("limit", "L", INT),
    value("label", "l", multi=True), value("author", "A"), value("assignee", "a"),
    value("search", "S"), value("milestone", "m"), value("mention"), *OUTPUT,
    refused={"-w": _WEB})
RUN_VIEW = _syntax(
    value("job", "j", INT), flag("log"), flag("log-failed"), flag("verbose", "v"),
    flag("exit-status"), value("attempt", "a", INT), *OUTPUT, refused={"-w": _WEB})
RUN_LIST = _syntax(
    value("limit", "L", INT), value("workflow", "w"), value("branch", "b"),
    value("status", "s"), value("event", "e"), value("user", "u"), value("commit", "c"),
    *OUTPUT)
API = _syntax(
    value("jq", "q"), value("template", "t"), flag("paginate"), flag("include", "i"),
    value("method", "X", CHOICE, choices=("GET",)), flag("silent"),
    refused={**{f: "makes the request a write (POST)" for f in (
        "--field", "-f", "--raw-field", "-F", "--input")},
        "--hostname": "names another host", "--header": "is not supported here",
        "-H": "is not supported here"})


_N, _SEG = "[0-9]+", "[^/]+"
# The read endpoints under repos/<owner>/<repo>/ an agent needs for its PR work, and no
# others: secrets, variables, hooks, keys, releases, workflows, settings stay refused.
API_READS = tuple(re.compile(pattern) for pattern in (
    "pulls", f"pulls/{_N}", f"pulls/{_N}/(comments|reviews|files|commits|requested_reviewers)",
    f"pulls/{_N}/reviews/{_N}(/comments)?", f"pulls/comments(/{_N})?",
    "issues", f"issues/{_N}", f"issues/{_N}/(comments|events|labels|timeline)",
    f"issues/(comments|events)(/{_N})?", "labels", "milestones",
    "commits", f"commits/{_SEG}", f"commits/{_SEG}/(check-runs|check-suites|status|statuses"
    "|pulls)", f"check-runs/{_N}(/annotations)?", f"check-suites/{_N}(/check-runs)?",
    f"statuses/{_SEG}", "actions/runs", f"actions/runs/{_N}(/jobs|/logs)?",
    f"actions/runs/{_N}/attempts/{_N}(/jobs|/logs)?", f"actions/jobs/{_N}(/logs)?",
    "branches", f"branches/{_SEG}", "tags", "compare/.+", "contents(/.*)?", "readme",
    "git/(refs|matching-refs)(/.*)?", "git/ref/.+",
    f"git/(trees|blobs|commits|tags)/{_SEG}",
))
API_READ_NAMES = ("pulls and their comments, reviews, files, commits; issues and comments; "
                  "commits, check-runs, check-suites, statuses; actions runs, jobs, logs; "
                  "branches, tags, compare, contents, git refs, trees, blobs")


def _selector(words: Sequence[str], caller: Caller, *, reads: bool) -> str:
    """A PR named by number or branch; the current branch when none is named."""
    if len(words) > 1:
        raise Denied(f"name one PR, not {len(words)}")
    if not words:
        if caller.head is None:
            raise Denied("HEAD is detached; name the PR (number or branch)")
        return caller.head
    word = words[0]
    number = _NUMBER.fullmatch(word)
    if number:
        return number.group(1)
    if "://" in word or refname_problem(word):
        raise Denied(f"`{word}`: name the PR by number or by branch (URLs of other "
                     "repositories are not reachable)")
    return check_rev(word, "PR") if reads else word


def _emit(group: str, sub: str, parsed: Parsed, positionals: Sequence[str],
          *, first: Sequence[str] = ()) -> tuple[str, ...]:
    jq = parsed.get("--jq")
    if jq is not None and _JQ_ENV.search(jq):
        # gh's jq reads its own environment (`env`, `$ENV`), where a GH_TOKEN login is.
        raise Denied("`--jq` expressions may not read the environment (`env`, `$ENV`)")
    argv = [group, *([sub] if sub else []), *first, *emit_options(parsed.options)]
    if positionals:
        argv.extend(["--", *positionals])  # pflag: nothing after `--` is an option
    return tuple(argv)


def _words(parsed: Parsed) -> list[str]:
    return [*parsed.positionals, *(parsed.paths or ())]


def _read(group: str, sub: str, syntax: Syntax, *, takes: str) -> Handler:
    """A read: `takes` is "pr" (a PR selector), "number", "id", or "" (nothing)."""

    def run(args: Sequence[str], caller: Caller) -> Decision:
        parsed = parse(args, syntax, caller)
        words = _words(parsed)
        if takes == "pr":
            words = [_selector(words, caller, reads=True)]
        elif takes in ("number", "id"):
            if len(words) > 1 or (words and not words[0].isdigit()):
                raise Denied(f"gh {group} {sub} takes one number")
        elif words:
            raise Denied(f"gh {group} {sub} takes no arguments (got `{words[0]}`)")
        return allow(_emit(group, sub, parsed, words), freeze=False)

    return run


def _create(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, PR_CREATE, caller)
    if _words(parsed):
        raise Denied("gh pr create takes no arguments; use --title, --body, --base")
    head = parsed.get("--head") or caller.head
    if head is None:
        raise Denied(f"HEAD is detached; give --head <topic>{caller.suffix}")
    check_own_branch(head, caller)
    if parsed.get("--base") is not None:
        check_rev(parsed.get("--base") or "", "base branch")
    options = tuple((o, v) for o, v in parsed.options if o.name != "--head")
    shown = Parsed(options, (), None, parsed.stdin_from)
    return allow(_emit("pr", "create", shown, (), first=(f"--head={head}",)),
                 freeze=False, stdin_from=parsed.stdin_from)


def _pr_write(sub: str, syntax: Syntax) -> Handler:
    def run(args: Sequence[str], caller: Caller) -> Decision:
        parsed = parse(args, syntax, caller)
        selector = _selector(_words(parsed), caller, reads=False)
        if sub == "comment" and not parsed.has("--body", "--body-file"):
            raise Denied("give the comment with --body or --body-file (no editor runs)")
        argv = _emit("pr", sub, parsed, [selector])
        return allow(argv, freeze=False, stdin_from=parsed.stdin_from, pr_check=selector)

    return run


def _api(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, API, caller)
    words = _words(parsed)
    if len(words) != 1:
        raise Denied("gh api takes one endpoint: repos/{owner}/{repo}/...")
    endpoint = words[0].lstrip("/")
    _, owner, repo = (caller.github or "//").split("/")
    here = (f"repos/{owner}/{repo}/", "repos/{owner}/{repo}/")
    path = endpoint.split("?")[0]
    parts = path.split("/")
    if (not endpoint.startswith(here) or not _ENDPOINT.fullmatch(endpoint)
            or ".." in parts or "" in parts[:-1]):
        raise Denied(f"`{words[0]}`: gh api may read this repository only "
                     f"(repos/{owner}/{repo}/...)")
    rest = "/".join(parts[3:]).rstrip("/")
    if not any(read.fullmatch(rest) for read in API_READS):
        raise Denied(f"`{words[0]}`: gh api reads only what PR work needs ({API_READ_NAMES});"
                     " secrets, variables, hooks, releases, workflows and settings are "
                     "refused")
    return allow(_emit("api", "", parsed, [endpoint]), freeze=False)


def _auth(args: Sequence[str], caller: Caller) -> Decision:
    if args:
        raise Denied("only `gh auth status` is allowed (tokens never leave the host)")
    return allow(("auth", "status"), freeze=False)


FORMS: dict[str, tuple[Handler, str]] = {
    "pr view": (_read("pr", "view", PR_VIEW, takes="pr"),
                "gh pr view [<number>|<branch>] [--comments] [--json ...]"),
    "pr list": (_read("pr", "list", PR_LIST, takes=""), "gh pr list [<filters>]"),
    "pr status": (_read("pr", "status", PR_STATUS, takes=""), "gh pr status"),
    "pr diff": (_read("pr", "diff", PR_DIFF, takes="pr"),
                "gh pr diff [<number>|<branch>] [--name-only|--patch]"),
    "pr checks": (_read("pr", "checks", PR_CHECKS, takes="pr"),
                  "gh pr checks [<number>|<branch>]"),
    "pr create": (_create, "gh pr create --title <t> --body <b>|--body-file <f> "
                           "[--base <branch>] [--head <name>#locki-<id>] [--draft]"),
    "pr edit": (_pr_write("edit", PR_EDIT),
                "gh pr edit [<number>|<branch>] [--title] [--body] [--add-label] ... "
                "(PRs whose head is one of this sandbox's branches)"),
    "pr comment": (_pr_write("comment", PR_COMMENT),
                   "gh pr comment [<number>|<branch>] --body <b>|--body-file <f> "
                   "(PRs whose head is one of this sandbox's branches)"),
    "issue view": (_read("issue", "view", ISSUE_VIEW, takes="number"),
                   "gh issue view <number> [--comments]"),
    "issue list": (_read("issue", "list", ISSUE_LIST, takes=""), "gh issue list [<filters>]"),
    "run view": (_read("run", "view", RUN_VIEW, takes="id"),
                 "gh run view [<run-id>] [--job <id>] [--log|--log-failed]"),
    "run list": (_read("run", "list", RUN_LIST, takes=""), "gh run list [<filters>]"),
    "auth status": (_auth, "gh auth status"),
    "api": (_api, "gh api repos/{owner}/{repo}/<pulls|issues|commits|check-runs|"
                  "actions/runs|contents|...> (GET only)"),
}
NAMED_REFUSALS = {
    "secret": "manages CI secrets", "variable": "manages CI variables",
    "release": "publishes releases", "workflow": "runs or changes workflows",
    "extension": "installs programs on the host", "alias": "changes the user's gh config",
    "config": "changes the user's gh config", "repo": "acts on repositories",
    "gist": "publishes gists", "ssh-key": "changes the user's keys",
    "gpg-key": "changes the user's keys",
    "auth": "handles the user's login (its token never leaves the host)",
    "codespace": "acts on codespaces", "browse": _WEB, "cache": "deletes CI caches",
}


def forms() -> tuple[str, ...]:
    return tuple(form for _, form in FORMS.values())


def check_gh(args: Sequence[str], caller: Caller) -> Decision:
    """Allow or deny one gh invocation; `args` is argv without the leading `gh`."""
    try:
        return _check(list(args), caller)
    except Denied as denial:
        return Decision(False, denial.reason, (), allowed_forms=forms())


def _check(args: list[str], caller: Caller) -> Decision:
    if any("\0" in a for a in args):
        raise Denied("an argument contains a NUL byte")
    if not args or args[0].startswith("-"):
        raise Denied("the gh command must come first (`gh pr view`, ...)")
    if caller.github is None:
        raise Denied("this repository has no GitHub remote (gh acts on the repository "
                     "a configured remote such as `origin` names)")
    group = args[0]
    if group == "api":
        return _api(args[1:], caller)
    sub = args[1] if len(args) > 1 else ""
    found = FORMS.get(f"{group} {sub}")
    if found is None:
        why = NAMED_REFUSALS.get(group)
        raise Denied(f"gh {group} {why}" if why else f"gh {' '.join(args[:2])} is not on "
                     "the allow-list")
    rest = args[2:]
    if rest in (["--help"], ["-h"]):
        return allow((group, sub, "--help"), freeze=False)
    return found[0](rest, caller)
