"""Handlers for push, fetch and pull: the commands that reach a remote with the user's
credentials.

A remote is named, never given: it must be one configured in the repository (any
transport the user set up, local paths included), so a URL, a path or `ext::` on the
command line is refused. Every push is rewritten to explicit
`refs/heads/X:refs/heads/X` for the caller's own `*#locki-<id>` branches, so neither
`push.default` nor an upstream pointing at `main` can send it anywhere else; tags,
mirrors, globs and forced updates other than `--force-with-lease` are refused. Fetch
and pull may update remote-tracking refs only (`--no-tags` is pinned, and a remote
whose configured fetch refspec writes elsewhere is refused).
"""

from __future__ import annotations

from collections.abc import Sequence

from locki.bridge.commands import Command, build, count
from locki.bridge.model import Caller, Decision, Denied, allow
from locki.bridge.names import check_own_branch, check_rev, refname_problem
from locki.bridge.options import Kind, Opt, Parsed, Syntax, flag, optional, parse, value
from locki.bridge.writes import NO_AUTOSTASH, NO_EDIT, STRATEGY

INT, CHOICE = Kind.INT, Kind.CHOICE
_TAGS = "pushes or fetches tags, which are shared with the user and every sandbox"
_ALL = "would reach refs outside this sandbox's `*#locki-<id>` branches"
_FORCE = "is refused; use --force-with-lease (own branches only)"
_SUBMODULES = "reads nested repositories' config"
COMMON = (
    flag("quiet", "q"), flag("verbose", "v"), flag("progress"), flag("no-progress"),
    flag("ipv4", "4"), flag("ipv6", "6"),
)
# Pinned on every push: user config such as push.followTags, push.gpgSign or
# push.recurseSubmodules must not widen what the rewritten refspecs name.
NO_FOLLOW_TAGS, NO_SIGNED, NO_SUBMODULES = (
    flag("no-follow-tags"), flag("no-signed"), flag("no-recurse-submodules"))
PUSH = Syntax((
    *COMMON, flag("set-upstream", "u"), optional("force-with-lease"),
    flag("force-if-includes"), flag("dry-run", "n"), flag("porcelain"), flag("atomic"),
    flag("delete", "d"), flag("thin"), flag("no-thin"), NO_FOLLOW_TAGS, NO_SIGNED,
    NO_SUBMODULES,
), refused={
    "--mirror": _ALL, "--all": _ALL, "--branches": _ALL, "--prune": _ALL,
    "--tags": _TAGS, "--follow-tags": _TAGS, "--force": _FORCE, "-f": _FORCE,
    "--repo": "names a repository; name a configured remote instead",
    "--push-option": "sends options the server may act on", "-o": "sends server options",
    "--signed": "runs gpg on the host", "--recurse-submodules": _SUBMODULES,
})
NO_TAGS = flag("no-tags", "n")
FETCH_PINS = (NO_TAGS, NO_SUBMODULES)
FETCH = Syntax((
    *COMMON, flag("all"), flag("prune", "p"), flag("dry-run"), flag("atomic"),
    value("jobs", "j", INT), flag("write-fetch-head"), flag("no-write-fetch-head"),
    flag("show-forced-updates"), flag("no-show-forced-updates"), NO_TAGS,
    NO_SUBMODULES,
), refused={
    "--tags": _TAGS, "-t": _TAGS, "--prune-tags": _TAGS, "-P": _TAGS,
    "--force": "could move local refs", "-f": "could move local refs",
    "--update-head-ok": "could move the checked-out branch",
    "-u": "(--update-head-ok) could move the checked-out branch",
    "--refmap": "could write outside refs/remotes/", "--multiple": "is not supported here",
    "--set-upstream": "is not supported here; use git push -u",
    "--recurse-submodules": _SUBMODULES,
})
PULL = Syntax((
    *COMMON, optional("rebase", "r", CHOICE, choices=("true", "false", "merges")),
    flag("no-rebase"), flag("ff-only"), flag("ff"), flag("no-ff"), flag("prune", "p"),
    flag("stat"), flag("no-stat", "n"), flag("commit"), flag("no-commit"), flag("squash"),
    flag("no-squash"), flag("signoff"), flag("no-signoff"), *STRATEGY,
    flag("allow-unrelated-histories"), flag("no-tags"), NO_SUBMODULES, NO_AUTOSTASH, NO_EDIT,
), refused={
    "--tags": _TAGS, "-t": _TAGS, "--autostash": "uses the shared stash",
    "--edit": "needs an editor on the host", "-e": "needs an editor on the host",
    "--force": "could move local refs", "-f": "could move local refs",
    "--recurse-submodules": _SUBMODULES,
})


def check_remote(name: str, caller: Caller) -> str:
    """A remote named by the agent: one configured in the repository, by name."""
    check_rev(name, "remote")
    if name in caller.remotes:
        return name
    known = ", ".join(sorted(caller.remotes)) or "none"
    if "/" in name or ":" in name or name.startswith("."):
        raise Denied(f"`{name}` is a URL or a path; name a configured remote "
                     f"(configured: {known})")
    raise Denied(f"`{name}` is not a remote configured in the repository (configured: "
                 f"{known}); remotes are added on the host, by the user")


def own_ref(word: str, caller: Caller, what: str) -> str:
    """`X`, `refs/heads/X` or `HEAD` (when it names X), for one of the caller's branches."""
    if word in ("HEAD", "@"):
        if caller.head is None:
            raise Denied(f"HEAD is detached or unknown; name the {what} "
                         f"(`<topic>{caller.suffix}`)")
        word = caller.head
    return check_own_branch(word.removeprefix("refs/heads/"), caller)


def _refspec(spec: str, caller: Caller) -> str:
    if spec.startswith("+"):
        raise Denied(f"refspec `{spec}` forces the update; use --force-with-lease")
    if "*" in spec:
        raise Denied(f"glob refspec `{spec}` {_ALL}")
    if spec.startswith("refs/tags/") or spec == "tag":
        raise Denied(f"`{spec}` {_TAGS}")
    src, colon, dst = spec.partition(":")
    if colon and not src:
        return ":refs/heads/" + own_ref(dst, caller, "branch to delete")
    name = own_ref(src, caller, "branch to push")
    if colon and own_ref(dst, caller, "destination") != name:
        raise Denied(f"`{spec}`: push a branch under its own name "
                     f"(`{name}` or `{name}:{name}`)")
    return f"refs/heads/{name}:refs/heads/{name}"


def _lease(raw: str | None, caller: Caller) -> str | None:
    """`--force-with-lease[=<own branch>[:<expect>]]`, the ref spelled out in full."""
    if raw is None:
        return None
    ref, colon, expect = raw.partition(":")
    full = "refs/heads/" + own_ref(ref, caller, "leased branch")
    return f"{full}:{check_rev(expect, 'expected value')}" if colon else full


def _push(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, PUSH, caller)
    words = [*parsed.positionals, *(parsed.paths or ())]
    remote = check_remote(words[0], caller) if words else caller.push_remote
    if remote is None:
        raise Denied("no remote to push to: name one (`git push <remote> ...`)")
    specs = words[1:] or ["HEAD"]
    if parsed.has("--delete"):
        if not words[1:]:
            raise Denied("name the branches to delete")
        specs = [":" + s for s in specs]
    refspecs = tuple(dict.fromkeys(_refspec(s, caller) for s in specs))
    options: list[tuple[Opt, str | None]] = [
        (o, None) for o in (NO_FOLLOW_TAGS, NO_SIGNED, NO_SUBMODULES) if not parsed.has(o.name)]
    for opt, val in parsed.options:
        if opt.name == "--force-with-lease":
            options.append((opt, _lease(val, caller)))
        elif opt.name != "--delete":
            options.append((opt, val))
    # Push needs refs and objects from the git dir (the sandbox cannot see it) and the
    # network; the daemon runs it without a work tree, so the sandbox keeps running (a
    # long network push does not hold it frozen). See `Bridge._held`.
    return allow(build(["push"], options, (remote, *refspecs)), freeze=False)


def _fetched_from(remote: str | None, caller: Caller) -> None:
    """Refuse a remote whose fetch would write local refs (None: every remote)."""
    for name in sorted(caller.odd_fetch) if remote is None else [remote]:
        if name in caller.odd_fetch:
            raise Denied(f"remote `{name}` has a fetch refspec that writes outside "
                         f"refs/remotes/{name}/ (local branches or tags); fix it on the host")


def _remote_branches(words: Sequence[str]) -> tuple[str, ...]:
    """Branch names to fetch into FETCH_HEAD: never a `src:dst` that writes a local ref."""
    for word in words:
        problem = refname_problem(word.removeprefix("refs/heads/"))
        if ":" in word or word.startswith("+") or word == "tag" or "*" in word or problem:
            raise Denied(f"`{word}`: name remote branches only (no `:`, `+`, globs or "
                         "tags); remote-tracking refs are updated by the remote's own config")
    return tuple(words)


def _fetch_words(parsed: Parsed, caller: Caller) -> tuple[str, ...]:
    """`<remote> [<branch>...]` as checked words. Without a remote git reads the
    branch's upstream remote (`fetch_remote`), or every one with --all; when that is
    unknown, every configured remote must be a plain one."""
    words = [*parsed.positionals, *(parsed.paths or ())]
    remote = check_remote(words[0], caller) if words else None
    if remote or parsed.has("--all") or caller.fetch_remote is None:
        _fetched_from(remote, caller)
    else:
        _fetched_from(caller.fetch_remote, caller)
    return (remote, *_remote_branches(words[1:])) if remote else ()


def _pinned(parsed: Parsed, *pins: Opt) -> list[tuple[Opt, str | None]]:
    return [(o, None) for o in pins if not parsed.has(o.name)] + list(parsed.options)


def _fetch(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, FETCH, caller)
    if parsed.has("--all") and parsed.positionals:
        raise Denied("`git fetch --all` takes no remote")
    named = _fetch_words(parsed, caller)
    # Like push: refs and objects in the git dir, and the network; no worktree path.
    return allow(build(["fetch"], _pinned(parsed, *FETCH_PINS), named), freeze=False)


def _pull(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, PULL, caller)
    named = _fetch_words(parsed, caller)
    count(named, 0, 16, "arguments ([<remote> [<branch>...]])")
    options = _pinned(parsed, NO_AUTOSTASH, NO_EDIT, *FETCH_PINS)
    # Pull merges or rebases into HEAD's branch: the daemon checks that it is one of the
    # caller's, and the sandbox is frozen for the whole command (its fetch included).
    return allow(build(["pull"], options, named), writes_head=True)


REMOTES: dict[str, Command] = {
    "push": Command(_push, (
        "git push [-u] [--force-with-lease[=<branch>[:<expect>]]] [-n] [<remote> "
        "[<name>#locki-<id>...]]", "git push <remote> --delete <name>#locki-<id>",
        "(a configured remote by name; no --mirror, --all, --tags, --follow-tags, "
        "--force, tag or glob refspecs)")),
    "fetch": Command(_fetch, (
        "git fetch [--prune] [<remote> [<branch>...]]", "git fetch --all [--prune]",
        "(configured remotes only; tags are not fetched)")),
    "pull": Command(_pull, (
        "git pull [--rebase|--ff-only|--no-rebase] [<remote> [<branch>]]",
        "(HEAD on one of this sandbox's branches)")),
}
