"""Handlers for the subcommands that write: only the caller's own `*#locki-<id>` branches,
its own index and its own worktree.

Branch names the command writes are checked by `check_own_branch` (directly, or through
the `OWN_BRANCH` option kind). Commands that move whatever HEAD names return
`writes_head`, and the daemon confirms HEAD is an own branch (or detached) first.
"""

from __future__ import annotations

from collections.abc import Sequence

from locki.bridge.commands import Command, build, count, no_positionals, paths, revs
from locki.bridge.model import Caller, Decision, Denied, allow
from locki.bridge.names import check_own_branch
from locki.bridge.options import (
    Kind,
    Opt,
    Parsed,
    Syntax,
    flag,
    optional,
    parse,
    value,
    with_options,
)
from locki.bridge.reads import COLOR

INT, REV, OWN, PATH, CHOICE = Kind.INT, Kind.REV, Kind.OWN_BRANCH, Kind.PATH, Kind.CHOICE
PATHSPEC_FILE = (value("pathspec-from-file", kind=PATH), flag("pathspec-file-nul"))
# Only git's built-in strategies: `-s foo` would run a `git-merge-foo` found on PATH.
STRATEGIES = ("ort", "recursive", "resolve", "octopus", "ours", "subtree")
STRATEGY = (value("strategy", "s", CHOICE, choices=STRATEGIES),
            value("strategy-option", "X", multi=True))
# Hardening added to every branch-creating command: with an upstream such as
# origin/main, a later `git push` under push.default=upstream would push to main.
NO_TRACK = flag("no-track")
NO_AUTOSTASH = flag("no-autostash")
NO_EDIT = flag("no-edit")


def _pathspec_command(sub: str, syntax: Syntax, *, need_paths: bool) -> Command:
    """add/rm/restore: every positional is a pathspec, emitted after `--`."""

    def run(args: Sequence[str], caller: Caller) -> Decision:
        parsed = parse(args, syntax, caller)
        found = paths((*parsed.positionals, *(parsed.paths or ())), caller)
        if need_paths and not found and not parsed.has("--pathspec-from-file"):
            raise Denied(f"git {sub} needs paths")
        return allow(build([sub], parsed.options, (), found), writes=True,
                     stdin_from=parsed.stdin_from)

    return Command(run, (f"git {sub} [<options>] [--] <path>...",))


ADD = Syntax((
    flag("all", "A"), flag("update", "u"), flag("intent-to-add", "N"), flag("force", "f"),
    flag("verbose", "v"), flag("dry-run", "n"), flag("ignore-errors"),
    flag("ignore-missing"), flag("renormalize"), flag("sparse"),
    value("chmod", kind=CHOICE, choices=("+x", "-x")), *PATHSPEC_FILE,
), refused={"-p": "is interactive", "-i": "is interactive", "-e": "needs an editor"})
RM = Syntax((
    flag("cached"), flag("force", "f"), flag(None, "r"), flag("quiet", "q"),
    flag("dry-run", "n"), flag("ignore-unmatch"), flag("sparse"), *PATHSPEC_FILE,
))
RESTORE = Syntax((
    value("source", "s", REV), flag("staged", "S"), flag("worktree", "W"), flag("ours"),
    flag("theirs"), flag("quiet", "q"), flag("ignore-unmerged"), flag("overlay"),
    flag("no-overlay"), *PATHSPEC_FILE,
), refused={"-p": "is interactive"})
MV = Syntax((flag("force", "f"), flag(None, "k"), flag("dry-run", "n"), flag("verbose", "v"),
             flag("sparse")))


def _mv(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, MV, caller)
    found = paths((*parsed.positionals, *(parsed.paths or ())), caller)
    if len(found) < 2:
        raise Denied("git mv needs a source and a destination")
    return allow(build(["mv"], parsed.options, (), found), writes=True)


COMMIT = Syntax((
    value("message", "m", multi=True), value("file", "F", PATH),
    value("reuse-message", "C", REV), value("fixup", kind=REV), value("squash", kind=REV),
    flag("amend"), NO_EDIT, flag("all", "a"), flag("signoff", "s"), flag("allow-empty"),
    flag("allow-empty-message"), flag("quiet", "q"), value("author"), value("date"),
    flag("reset-author"), value("trailer", multi=True), flag("include", "i"), flag("only"),
    value("cleanup", kind=CHOICE,
          choices=("strip", "whitespace", "verbatim", "scissors", "default")),
    flag("dry-run"), flag("short"), flag("porcelain"), flag("long"), flag("null", "z"),
    optional("untracked-files", "u", CHOICE, choices=("no", "normal", "all")),
    flag("no-status"), flag("status"), *PATHSPEC_FILE,
), refused={
    # Hooks run inside the sandbox, so skipping them protects nothing on the host; but
    # they are the user's checks (the sandbox cannot edit .git/hooks), and an agent
    # silently bypassing a failing check is exactly what the user must not get.
    "--no-verify": "skips the repository's hooks (they are the user's checks; fix the "
                   "failure instead)",
    "-n": "(--no-verify) skips the repository's hooks",
    "-c": "needs an editor on the host; use -C <commit> or -m",
    "-e": "needs an editor on the host", "-p": "is interactive",
    "-o": "is spelled `--only` here",
})


def _commit(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, COMMIT, caller)
    message = ("--message", "--file", "--reuse-message", "--fixup", "--dry-run")
    if not parsed.has(*message) and not (parsed.has("--amend") and parsed.has("--no-edit")):
        raise Denied("a commit message is required (-m, -F <file> or -F -, -C <commit>, "
                     "or --amend --no-edit): no editor runs on the host")
    found = paths((*parsed.positionals, *(parsed.paths or ())), caller)
    return allow(build(["commit"], parsed.options, (), found), writes_head=True,
                 stdin_from=parsed.stdin_from)


SWITCH = Syntax((
    value("create", "c", OWN), value("force-create", "C", OWN), value("orphan", kind=OWN),
    flag("detach", "d"), flag("discard-changes"), flag("force", "f"), flag("merge", "m"),
    flag("quiet", "q"), NO_TRACK, flag("no-guess"),
))


def _switch(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, SWITCH, caller)
    if parsed.paths is not None:
        raise Denied("git switch takes no paths")
    modes = [m for m in ("--create", "--force-create", "--orphan", "--detach") if parsed.has(m)]
    if len(modes) > 1:
        raise Denied("use one of -c, -C, --orphan, --detach")
    words = parsed.positionals
    if modes in (["--create"], ["--force-create"], ["--detach"]):
        count(words, 0, 1, "start points")
        start = revs(words, caller, "start point")
        options = parsed.options if modes == ["--detach"] else with_options(parsed, NO_TRACK)
        return allow(build(["switch"], options, start), writes=True)
    count(words, 0 if modes else 1, 0 if modes else 1, "branches")
    own = tuple(check_own_branch(w, caller) for w in words)
    return allow(build(["switch"], parsed.options, own), writes=True)


CHECKOUT = Syntax((
    value(None, "b", OWN), value(None, "B", OWN), value("orphan", kind=OWN),
    flag("detach"), flag("force", "f"), flag("quiet", "q"), NO_TRACK, flag("ours"),
    flag("theirs"), *PATHSPEC_FILE,
), refused={"-p": "is interactive"})


def _checkout(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, CHECKOUT, caller)
    # `checkout <x> --` with nothing after `--` names a branch or commit, not paths.
    if parsed.paths or parsed.has("--pathspec-from-file"):
        return _checkout_paths(parsed, caller)
    parsed.only(("-b", "-B", "--orphan", "--detach", "--force", "--quiet", "--no-track"),
                "when switching branches")
    words = parsed.positionals
    if parsed.has("-b", "-B", "--orphan", "--detach"):
        count(words, 0, 1, "start points")
        options = with_options(parsed, NO_TRACK) if not parsed.has("--detach") else parsed.options
        start = revs(words, caller, "start point")
    else:
        count(words, 1, 1, "branches (paths go after `--`)")
        options, start = parsed.options, (check_own_branch(words[0], caller),)
    # A trailing `--` makes git take the word as a branch or commit, never as a path.
    argv = (*build(["checkout"], options, start, end_of_options=False), "--")
    return allow(argv, writes=True)


def _checkout_paths(parsed: Parsed, caller: Caller) -> Decision:
    parsed.only(("--force", "--quiet", "--ours", "--theirs", "--pathspec-from-file",
                 "--pathspec-file-nul"), "when checking out paths")
    count(parsed.positionals, 0, 1, "revisions before `--`")
    source = revs(parsed.positionals, caller, "source")
    found = paths(parsed.paths or (), caller)
    argv = build(["checkout"], parsed.options, source, found, end_of_options=False)
    if not found:
        argv = (*argv, "--")
    return allow(argv, writes=True, stdin_from=parsed.stdin_from)


BRANCH = Syntax((
    flag("all", "a"), flag("remotes", "r"), flag("list", "l"),
    Opt("verbose", "v", multi=True), flag("show-current"), value("contains", kind=REV),
    value("no-contains", kind=REV), value("merged", kind=REV), value("no-merged", kind=REV),
    value("points-at", kind=REV), value("sort", multi=True), value("format", kind=Kind.FORMAT),
    COLOR, flag("no-color"), flag("no-column"), flag("ignore-case", "i"),
    optional("abbrev", kind=INT), flag("no-abbrev"), flag("quiet", "q"),
    flag("force", "f"), NO_TRACK, flag("move", "m"), flag(None, "M"), flag("delete", "d"),
    flag(None, "D"),
), refused={
    "-c": "(copy) is not allowed", "-C": "(copy) is not allowed",
    "-u": "(set upstream) is not allowed", "--set-upstream-to": "is not allowed",
    "--edit-description": "needs an editor on the host",
})
LIST_ONLY = ("--all", "--remotes", "--list", "--verbose", "--contains", "--no-contains",
             "--merged", "--no-merged", "--points-at", "--sort", "--format", "--color",
             "--no-color", "--no-column", "--ignore-case", "--abbrev", "--no-abbrev")


def _branch(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, BRANCH, caller)
    if parsed.paths is not None:
        raise Denied("git branch takes no `--`")
    if parsed.has("--delete", "-D"):
        return _branch_delete(parsed, caller)
    if parsed.has("--move", "-M"):
        return _branch_move(parsed, caller)
    if parsed.has("--show-current"):
        parsed.only(("--show-current",), "with --show-current")
        no_positionals(parsed.positionals, "git branch --show-current")
        return allow(("branch", "--show-current"))
    if parsed.has("--list") or not parsed.positionals:
        parsed.only(LIST_ONLY, "when listing branches")
        # `--list` is always written out, so git cannot read a pattern as a new branch.
        options = with_options(parsed, BRANCH.long("list"))
        return allow(build(["branch"], options, revs(parsed.positionals, caller, "pattern")))
    return _branch_create(parsed, caller)


def _branch_create(parsed: Parsed, caller: Caller) -> Decision:
    parsed.only(("--force", "--no-track", "--quiet"), "when creating a branch")
    count(parsed.positionals, 1, 2, "arguments (<branch> [<start>])")
    name = check_own_branch(parsed.positionals[0], caller)
    start = revs(parsed.positionals[1:], caller, "start point")
    return allow(build(["branch"], with_options(parsed, NO_TRACK), (name, *start)), writes=True)


def _branch_move(parsed: Parsed, caller: Caller) -> Decision:
    parsed.only(("--move", "-M", "--force", "--quiet"), "when renaming a branch")
    if len(parsed.positionals) != 2:
        # The one-name form renames whatever HEAD names, which the policy cannot see.
        raise Denied(f"name both branches: git branch -m <old>{caller.suffix} "
                     f"<new>{caller.suffix}")
    names = tuple(check_own_branch(w, caller) for w in parsed.positionals)
    return allow(build(["branch"], parsed.options, names), writes=True)


def _branch_delete(parsed: Parsed, caller: Caller) -> Decision:
    parsed.only(("--delete", "-D", "--force", "--quiet"), "when deleting branches")
    if not parsed.positionals:
        raise Denied("name the branches to delete")
    names = tuple(check_own_branch(w, caller) for w in parsed.positionals)
    return allow(build(["branch"], parsed.options, names), writes=True)


RESET = Syntax((
    flag("soft"), flag("mixed"), flag("hard"), flag("keep"), flag("merge"),
    flag("quiet", "q"), flag("intent-to-add", "N"), *PATHSPEC_FILE,
), refused={"-p": "is interactive"})
RESET_MODES = ("--soft", "--mixed", "--hard", "--keep", "--merge")


def _reset(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, RESET, caller)
    words = parsed.positionals
    if parsed.paths or parsed.has("--pathspec-from-file"):
        if parsed.has(*RESET_MODES):
            raise Denied("a reset mode cannot be combined with paths")
        count(words, 0, 1, "revisions before `--`")
        found = paths(parsed.paths or (), caller)
        argv = build(["reset"], parsed.options, revs(words, caller), found, end_of_options=False)
        return allow(argv, writes=True, stdin_from=parsed.stdin_from)
    if parsed.has(*RESET_MODES):
        count(words, 1, 1, "revisions (git reset --hard <ref>)")
    else:
        count(words, 0, 1, "revisions (paths go after `--`)")
    argv = build(["reset"], parsed.options, revs(words, caller), end_of_options=False)
    # A trailing `--` pins the word as a commit (git reset <x> may otherwise treat x as
    # a path); the bare form stays bare.
    return allow((*argv, "--") if words else argv, writes_head=True)


def _sequencer_control(parsed: Parsed, sub: str, controls: Sequence[str]) -> Decision | None:
    """`--continue`/`--abort`/... alone: finish or drop what an allowed start began."""
    given = [c for c in controls if parsed.has(c)]
    if not given:
        return None
    if len(parsed.options) != 1 or parsed.positionals or parsed.paths is not None:
        raise Denied(f"`{given[0]}` must be used alone")
    read_only = given[0] == "--show-current-patch"
    return allow((sub, given[0]), writes_head=not read_only)


REBASE = Syntax((
    value("onto", kind=REV), flag("keep-base"), flag("root"), flag("quiet", "q"),
    flag("verbose", "v"), flag("stat"), flag("no-stat", "n"), flag("signoff"),
    flag("committer-date-is-author-date"), flag("ignore-date"), flag("reset-author-date"),
    value("empty", kind=CHOICE, choices=("drop", "keep", "ask")), flag("keep-empty"),
    flag("no-keep-empty"), flag("reapply-cherry-picks"), flag("no-reapply-cherry-picks"),
    flag("fork-point"), flag("no-fork-point"), flag("merge", "m"), *STRATEGY,
    optional("rebase-merges", "r", CHOICE, choices=("rebase-cousins", "no-rebase-cousins")),
    flag("force-rebase", "f"), flag("allow-empty-message"), flag("no-update-refs"),
    NO_AUTOSTASH, flag("continue"), flag("abort"), flag("skip"), flag("quit"),
    flag("show-current-patch"),
), refused={
    "-x": "runs a program on the host", "-i": "needs an editor on the host",
    "--edit-todo": "needs an editor on the host",
})
REBASE_CONTROLS = ("--continue", "--abort", "--skip", "--quit", "--show-current-patch")
# --update-refs would move every other branch pointing into the rebased range (main,
# other sandboxes' branches); rebase.updateRefs in config turns it on silently.
NO_UPDATE_REFS = REBASE.long("no-update-refs")


def _rebase(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, REBASE, caller)
    control = _sequencer_control(parsed, "rebase", REBASE_CONTROLS)
    if control:
        return control
    if parsed.paths is not None:
        raise Denied("git rebase takes no paths")
    words = parsed.positionals
    count(words, 0, 2, "arguments ([<upstream>] [<branch>])")
    # The optional second word is the branch rebase checks out and rewrites.
    targets = revs(words[:1], caller, "upstream") + tuple(
        check_own_branch(w, caller) for w in words[1:])
    options = with_options(parsed, NO_UPDATE_REFS, NO_AUTOSTASH)
    return allow(build(["rebase"], options, targets), writes_head=True)


MERGE = Syntax((
    flag("no-ff"), flag("ff"), flag("ff-only"), value("message", "m", multi=True),
    value("file", "F", PATH), NO_EDIT, flag("squash"), flag("commit"), flag("no-commit"),
    flag("abort"), flag("continue"), flag("quit"), *STRATEGY,
    flag("allow-unrelated-histories"), optional("log", kind=INT), flag("no-log"),
    flag("stat"), flag("no-stat", "n"), flag("quiet", "q"), flag("verbose", "v"),
    flag("signoff"), flag("no-signoff"), NO_AUTOSTASH,
), refused={"-e": "needs an editor on the host"})


def _merge(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, MERGE, caller)
    control = _sequencer_control(parsed, "merge", ("--abort", "--continue", "--quit"))
    if control:
        return control
    if not parsed.positionals or parsed.paths is not None:
        raise Denied("name the commits to merge (git merge <ref>...)")
    options = with_options(parsed, NO_AUTOSTASH, NO_EDIT)
    argv = build(["merge"], options, revs(parsed.positionals, caller))
    return allow(argv, writes_head=True, stdin_from=parsed.stdin_from)


PICK_COMMON = (
    flag("no-commit", "n"), flag("signoff", "s"), value("mainline", "m", INT), *STRATEGY,
    flag("continue"), flag("abort"), flag("skip"), flag("quit"), flag("rerere-autoupdate"),
    flag("no-rerere-autoupdate"),
)
CHERRY_PICK = Syntax((
    *PICK_COMMON, flag(None, "x"), flag("ff"), flag("allow-empty"),
    flag("allow-empty-message"), flag("keep-redundant-commits"),
), refused={"-e": "needs an editor on the host"})
REVERT = Syntax((*PICK_COMMON, NO_EDIT), refused={"-e": "needs an editor on the host"})


def _picker(sub: str, syntax: Syntax) -> Command:
    """cherry-pick/revert: apply commits (any may be read) onto HEAD."""

    def run(args: Sequence[str], caller: Caller) -> Decision:
        parsed = parse(args, syntax, caller)
        control = _sequencer_control(parsed, sub, ("--continue", "--abort", "--skip", "--quit"))
        if control:
            return control
        if not parsed.positionals or parsed.paths is not None:
            raise Denied(f"name the commits: git {sub} <commit>...")
        # revert would open an editor for its message; there is none on the host.
        options = with_options(parsed, NO_EDIT) if sub == "revert" else parsed.options
        return allow(build([sub], options, revs(parsed.positionals, caller)), writes_head=True)

    return Command(run, (f"git {sub} [<options>] <commit>...",
                         f"git {sub} --continue|--abort|--skip|--quit"))


WRITES: dict[str, Command] = {
    "add": _pathspec_command("add", ADD, need_paths=False),
    "rm": _pathspec_command("rm", RM, need_paths=True),
    "restore": _pathspec_command("restore", RESTORE, need_paths=True),
    "mv": Command(_mv, ("git mv [<options>] <source>... <destination>",)),
    "commit": Command(_commit, (
        "git commit -m <msg> | -F <file> | -F - | -C <commit> [--amend] [-a] [-s] "
        "[--allow-empty] [-- <path>...]", "git commit --amend --no-edit",
        "(no --no-verify)")),
    "switch": Command(_switch, (
        "git switch <name>#locki-<id>", "git switch -c|-C <name>#locki-<id> [<start>]",
        "git switch --detach [<ref>]")),
    "checkout": Command(_checkout, (
        "git checkout [<ref>] -- <path>...", "git checkout <name>#locki-<id>",
        "git checkout -b|-B <name>#locki-<id> [<start>]", "git checkout --detach <ref>")),
    "branch": Command(_branch, (
        "git branch [--list] [-a|-r] [-v] [--contains <ref>] [<pattern>...]",
        "git branch --show-current", "git branch <name>#locki-<id> [<start>]",
        "git branch -m|-M <old>#locki-<id> <new>#locki-<id>",
        "git branch -d|-D <name>#locki-<id>...")),
    "reset": Command(_reset, (
        "git reset [--soft|--mixed|--hard|--keep] <ref>", "git reset [<ref>] -- <path>...",
        "git reset")),
    "rebase": Command(_rebase, (
        "git rebase [--onto <newbase>] [<upstream>] [<branch>#locki-<id>]",
        "git rebase --continue|--abort|--skip|--quit", "(no -i, -x/--exec, --update-refs)")),
    "merge": Command(_merge, (
        "git merge [--no-ff|--ff-only] [-m <msg>] <ref>...", "git merge --abort|--continue")),
    "cherry-pick": _picker("cherry-pick", CHERRY_PICK),
    "revert": _picker("revert", REVERT),
}
