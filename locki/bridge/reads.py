"""Handlers for the subcommands that only read: any ref may be read by any sandbox.

Output-shaping options are accepted generously; anything that runs a program, writes a
file or reads outside the repository is not on the lists below.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from locki.bridge.commands import Command, build, count, no_positionals, paths, revs
from locki.bridge.model import Caller, Decision, Denied, allow
from locki.bridge.names import check_rev
from locki.bridge.options import (
    Kind,
    Opt,
    Syntax,
    flag,
    optional,
    parse,
    value,
    with_options,
)

INT, REV, FORMAT, CHOICE, PATH = Kind.INT, Kind.REV, Kind.FORMAT, Kind.CHOICE, Kind.PATH
COLOR = optional("color", kind=CHOICE, choices=("always", "never", "auto"))

# Diff drivers and textconv filters are host programs chosen by `.gitattributes`, which
# the sandbox writes; turning them off keeps every diff a plain in-process diff.
NO_EXT_DIFF = flag("no-ext-diff")
NO_TEXTCONV = flag("no-textconv")

DIFF_OPTIONS: tuple[Opt, ...] = (
    flag("patch", "p"), flag("no-patch", "s"), optional("stat"), flag("shortstat"),
    flag("numstat"), flag("name-only"), flag("name-status"), flag("raw"), flag("summary"),
    flag("patch-with-stat"), flag("compact-summary"), optional("dirstat"), flag("check"),
    flag("full-index"), flag("binary"), flag("no-renames"),
    optional("find-renames", "M", INT), flag("minimal"), flag("patience"),
    flag("histogram"), value("diff-algorithm", kind=CHOICE,
                             choices=("myers", "minimal", "patience", "histogram")),
    flag("ignore-all-space", "w"), flag("ignore-space-change", "b"),
    flag("ignore-space-at-eol"), flag("ignore-blank-lines"), flag("ignore-cr-at-eol"),
    optional("unified", "U", INT), flag("function-context", "W"), COLOR, flag("no-color"),
    optional("color-moved"), optional("color-words"),
    optional("word-diff", kind=CHOICE, choices=("color", "plain", "porcelain", "none")),
    flag("text", "a"), flag("exit-code"), flag("quiet"), optional("relative"),
    flag("no-prefix"), value("src-prefix"), value("dst-prefix"), optional("abbrev", kind=INT),
    value("diff-filter"), value(None, "S"), value(None, "G"), flag("pickaxe-regex"),
    flag("pickaxe-all"), flag(None, "R"), flag(None, "z"), NO_EXT_DIFF, NO_TEXTCONV,
)

RANGE_OPTIONS: tuple[Opt, ...] = (
    flag("all"), optional("branches"), optional("tags"), optional("remotes"),
    value("max-count", "n", INT), value("skip", kind=INT), value("since"), value("after"),
    value("until"), value("before"), value("author", multi=True),
    value("committer", multi=True), value("grep", multi=True), flag("all-match"),
    flag("invert-grep"), flag("regexp-ignore-case", "i"), flag("extended-regexp", "E"),
    flag("fixed-strings", "F"), flag("first-parent"), flag("merges"), flag("no-merges"),
)

LOG_OPTIONS: tuple[Opt, ...] = (
    *RANGE_OPTIONS, flag("oneline"), flag("graph"), flag("reverse"),
    value("format", kind=FORMAT), optional("pretty", kind=FORMAT),
    optional("decorate", kind=CHOICE, choices=("short", "full", "auto", "no")),
    flag("no-decorate"), flag("abbrev-commit"), flag("no-abbrev-commit"), value("date"),
    flag("relative-date"), flag("follow"), flag("left-right"), flag("cherry-pick"),
    flag("cherry-mark"), flag("boundary"), flag("topo-order"), flag("date-order"),
    flag("author-date-order"), flag("walk-reflogs", "g"), flag("full-history"),
    flag("simplify-by-decoration"), flag("ancestry-path"), flag("source"), flag("parents"),
    flag("children"), value("max-parents", kind=INT), value("min-parents", kind=INT),
    flag("use-mailmap"), flag("no-mailmap"), value(None, "L", multi=True),
)

LOG = Syntax((*DIFF_OPTIONS, *LOG_OPTIONS), revisions=True, max_count_digits=True)
DIFF = Syntax(
    (*DIFF_OPTIONS, flag("cached"), flag("staged"), flag("merge-base")), revisions=True,
)
REV_LIST = Syntax(
    (*LOG_OPTIONS, flag("count"), flag("objects"), flag("timestamp"), flag("quiet")),
    revisions=True, max_count_digits=True,
)


def _history(sub: str, syntax: Syntax) -> Command:
    """log/show/diff/rev-list: revisions, then `-- paths`; never a program."""

    def run(args: Sequence[str], caller: Caller) -> Decision:
        parsed = parse(args, syntax, caller)
        extra = (NO_EXT_DIFF, NO_TEXTCONV) if syntax is not REV_LIST else ()
        argv = build(
            [sub], with_options(parsed, *extra), revs(parsed.positionals, caller),
            paths(parsed.paths or (), caller),
        )
        return allow(argv)

    return Command(run, (f"git {sub} [<options>] [<revision>...] [-- <path>...]",))


SHORTLOG = Syntax(
    (*RANGE_OPTIONS, flag("numbered", "n"), flag("summary", "s"), flag("email", "e"),
     flag("committer", "c"), value("format", kind=FORMAT), value("group", multi=True)),
    revisions=True,
)


def _shortlog(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, SHORTLOG, caller)
    # Without a revision and with a non-terminal stdin, shortlog reads a log from stdin.
    found = revs(parsed.positionals, caller) or ("HEAD",)
    return allow(build(["shortlog"], parsed.options, found, paths(parsed.paths or (), caller)))


BLAME = Syntax((
    value(None, "L", multi=True), flag(None, "l"), flag(None, "t"), flag(None, "s"),
    flag("show-email", "e"), flag(None, "w"), flag("porcelain", "p"), flag("line-porcelain"),
    flag("incremental"), flag("root"), flag("show-stats"), flag("show-name", "f"),
    flag("show-number", "n"), value("date"), optional("abbrev", kind=INT),
    flag("reverse"), flag("first-parent"), value("contents", kind=PATH),
    value("ignore-rev", kind=REV, multi=True), flag("color-lines"), flag("color-by-age"),
    flag("minimal"), optional(None, "M", INT), NO_TEXTCONV,
))


def _blame(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, BLAME, caller)
    if parsed.paths is None:
        count(parsed.positionals, 1, 2, "arguments ([<revision>] <file>)")
        rev, file = parsed.positionals[:-1], parsed.positionals[-1:]
    else:
        count(parsed.positionals, 0, 1, "revisions")
        count(parsed.paths, 1, 1, "files")
        rev, file = parsed.positionals, parsed.paths
    argv = build(["blame"], with_options(parsed, NO_TEXTCONV), revs(rev, caller),
                 paths(file, caller), end_of_options=False)
    return allow(argv, stdin_from=parsed.stdin_from)


STATUS = Syntax((
    flag("short", "s"), flag("branch", "b"), flag("show-stash"),
    optional("porcelain", kind=CHOICE, choices=("v1", "v2")), flag("long"),
    flag("verbose", "v"), flag(None, "z"), flag("ahead-behind"), flag("no-ahead-behind"),
    optional("untracked-files", "u", CHOICE, choices=("no", "normal", "all")),
    optional("ignored", kind=CHOICE, choices=("traditional", "no", "matching")),
    flag("renames"), flag("no-renames"), optional("find-renames", kind=INT),
    optional("ignore-submodules", kind=CHOICE, choices=("none", "untracked", "dirty", "all")),
    flag("no-column"),
))


def _status(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, STATUS, caller)
    found = paths((*parsed.positionals, *(parsed.paths or ())), caller)
    return allow(build(["status"], parsed.options, (), found))


GREP = Syntax((
    value(None, "e", multi=True), value(None, "f", PATH), flag("ignore-case", "i"),
    flag("word-regexp", "w"), flag("invert-match", "v"), flag("line-number", "n"),
    flag("column"), flag("files-with-matches", "l"), flag("files-without-match", "L"),
    flag("count", "c"), flag(None, "h"), flag(None, "H"), flag("extended-regexp", "E"),
    flag("fixed-strings", "F"), flag("perl-regexp", "P"), flag("basic-regexp", "G"),
    flag("cached"), flag("untracked"), flag("exclude-standard"), flag("no-exclude-standard"),
    flag(None, "I"), value("max-depth", kind=INT), flag("only-matching"), flag("full-name"),
    value("after-context", "A", INT), value("before-context", "B", INT),
    value("context", kind=INT), COLOR, flag("no-color"), flag("null", "z"),
    flag("heading"), flag("break"), flag("show-function", "p"),
    flag("function-context", "W"), flag("quiet", "q"), flag("all-match"),
    value("threads", kind=INT),
), refused={"-O": "runs a program on the host", "-o": "is spelled `--only-matching` here"})
PATTERN = next(o for o in GREP.options if o.short == "e")


def _grep(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, GREP, caller)
    words = list(parsed.positionals)
    options = list(parsed.options)
    if not parsed.has("-e", "-f"):
        if not words:
            raise Denied("git grep needs a pattern")
        # The pattern is passed as `-e <pattern>` so that it can never be an option.
        options.append((PATTERN, words.pop(0)))
    argv = build(["grep"], options, revs(words, caller, "tree"),
                 paths(parsed.paths or (), caller), end_of_options=False)
    return allow(argv, stdin_from=parsed.stdin_from)


LS_FILES = Syntax((
    flag("cached", "c"), flag("deleted", "d"), flag("modified", "m"), flag("others"),
    flag("ignored", "i"), flag("stage", "s"), flag("unmerged", "u"), flag("killed", "k"),
    flag(None, "z"), flag(None, "t"), flag(None, "v"), flag("exclude-standard"),
    flag("directory"), flag("no-empty-directory"), flag("full-name"),
    flag("error-unmatch"), optional("abbrev", kind=INT), flag("eol"), flag("deduplicate"),
    value("format"), value("exclude", "x", multi=True), value("exclude-per-directory"),
), refused={"-o": "is spelled `--others` here"})


def _ls_files(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, LS_FILES, caller)
    found = paths((*parsed.positionals, *(parsed.paths or ())), caller)
    return allow(build(["ls-files"], parsed.options, (), found))


LS_TREE = Syntax((
    flag(None, "d"), flag(None, "r"), flag(None, "t"), flag("long", "l"), flag(None, "z"),
    flag("name-only"), flag("name-status"), flag("object-only"), flag("full-name"),
    flag("full-tree"), optional("abbrev", kind=INT), value("format"),
))


def _ls_tree(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, LS_TREE, caller)
    words = [*parsed.positionals, *(parsed.paths or ())]
    if not words:
        raise Denied("git ls-tree needs a tree")
    tree = revs(words[:1], caller, "tree")
    # ls-tree's paths are plain positionals after the tree (it has no `--` of its own).
    return allow(build(["ls-tree"], parsed.options, (*tree, *paths(words[1:], caller))))


CAT_FILE = Syntax((
    flag(None, "t"), flag(None, "s"), flag(None, "p"), flag(None, "e"),
    optional("batch", kind=FORMAT), optional("batch-check", kind=FORMAT),
    flag("batch-all-objects"), flag("follow-symlinks"), flag("buffer"), flag("unordered"),
    flag("allow-unknown-type"),
))
OBJECT_TYPES = ("blob", "tree", "commit", "tag")


def _cat_file(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, CAT_FILE, caller)
    words = parsed.positionals
    if parsed.paths is not None:
        raise Denied("git cat-file takes no `--`")
    if parsed.has("--batch", "--batch-check"):
        no_positionals(words, "git cat-file --batch")
    elif parsed.has("-t", "-s", "-p", "-e"):
        count(words, 1, 1, "objects")
    else:
        count(words, 2, 2, "arguments (<type> <object>)")
        if words[0] not in OBJECT_TYPES:
            raise Denied(f"unknown object type `{words[0]}`")
        return allow(build(["cat-file"], parsed.options, (words[0], *revs(words[1:], caller))))
    return allow(build(["cat-file"], parsed.options, revs(words, caller)))


def _simple(sub: str, syntax: Syntax, form: str) -> Command:
    """Commands whose positionals are all revisions or ref patterns (read only)."""

    def run(args: Sequence[str], caller: Caller) -> Decision:
        parsed = parse(args, syntax, caller)
        if parsed.paths:
            raise Denied(f"git {sub} takes no paths")
        return allow(build([sub], parsed.options, revs(parsed.positionals, caller)))

    return Command(run, (form,))


DESCRIBE = Syntax((
    flag("tags"), flag("all"), flag("long"), flag("always"), value("abbrev", kind=INT),
    optional("dirty"), optional("broken"), value("match", multi=True),
    value("exclude", multi=True), flag("contains"), flag("first-parent"),
    flag("exact-match"), value("candidates", kind=INT),
))
MERGE_BASE = Syntax((
    flag("all", "a"), flag("octopus"), flag("is-ancestor"), flag("independent"),
    flag("fork-point"),
))
REF_FILTERS: tuple[Opt, ...] = (
    value("sort", multi=True), value("format", kind=FORMAT), value("points-at", kind=REV),
    value("merged", kind=REV), value("no-merged", kind=REV), value("contains", kind=REV),
    value("no-contains", kind=REV), flag("ignore-case", "i"), COLOR,
)
FOR_EACH_REF = Syntax((
    *REF_FILTERS, value("count", kind=INT), flag("shell"), flag("perl"), flag("python"),
    flag("tcl"),
))
TAG = Syntax((
    *REF_FILTERS, flag("list", "l"), optional(None, "n", INT), flag("no-column"),
))


def _tag(args: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(args, TAG, caller)
    if (parsed.positionals and not parsed.has("--list")) or parsed.paths is not None:
        raise Denied("only listing tags is allowed; patterns need `--list`")
    options = with_options(parsed, TAG.long("list"))
    return allow(build(["tag"], options, revs(parsed.positionals, caller, "pattern")))


REV_PARSE = Syntax((
    flag("show-toplevel"), flag("show-prefix"), flag("show-cdup"), flag("git-dir"),
    flag("absolute-git-dir"), flag("git-common-dir"), flag("is-inside-work-tree"),
    flag("is-inside-git-dir"), flag("is-bare-repository"), flag("is-shallow-repository"),
    flag("show-superproject-working-tree"), flag("local-env-vars"), flag("verify"),
    flag("quiet", "q"), optional("short", kind=INT),
    optional("abbrev-ref", kind=CHOICE, choices=("strict", "loose")),
    flag("symbolic"), flag("symbolic-full-name"), flag("all"), optional("branches"),
    optional("tags"), optional("remotes"), flag("revs-only"), flag("no-revs"),
    flag("flags"), flag("no-flags"),
), revisions=True)


def _rev_parse(args: Sequence[str], caller: Caller) -> Decision:
    if args[:1] == ["--sq-quote"]:
        # Everything after --sq-quote is only quoted and printed back.
        return allow(("rev-parse", *args))
    if args[:1] == ["--parseopt"]:
        return _parseopt(args)
    parsed = parse(args, REV_PARSE, caller)
    if parsed.paths is not None:
        raise Denied("git rev-parse: `--` is not supported here")
    # rev-parse prints `--end-of-options` back (git 2.39); `revs` refuses a leading `-`.
    return allow(build(["rev-parse"], parsed.options, revs(parsed.positionals, caller),
                       end_of_options=False))


def _parseopt(args: Sequence[str]) -> Decision:
    """`rev-parse --parseopt [flags] -- <args>`: parses words against a spec on stdin and
    prints shell code; it runs nothing."""
    flags = {"--keep-dashdash", "--stop-at-non-option", "--stuck-long"}
    cut = args.index("--") if "--" in args else len(args)
    for word in args[1:cut]:
        if word not in flags:
            raise Denied(f"option `{word}` is not allowed with `--parseopt`")
    return allow(("rev-parse", *args))


CONFIG = Syntax((
    flag("get"), flag("get-all"), flag("local"), flag("global"), flag("worktree"),
    flag("show-origin"), flag("show-scope"), flag("null", "z"),
    value("type", kind=CHOICE, choices=("bool", "int", "bool-or-int", "path",
                                         "expiry-date", "color")),
    flag("bool"), flag("int"), flag("bool-or-int"), flag("path"), value("default"),
    flag("includes"), flag("no-includes"), flag("fixed-value"),
), refused={
    "--list": "can print credentials kept in config; use `--get <name>`",
    "--get-regexp": "can print credentials kept in config; use `--get <name>`",
    "--file": "reads a file; use `--get <name>`", "--blob": "is not needed; use `--get`",
}, )
# Keys a sandbox may read: an allow-list, since config holds secrets under names no
# deny-list foresees (sendemail.smtppass, http.proxy with a password, remote URLs with a
# token, signing keys). `<x>` stands for any subsection name.
READABLE_KEYS = re.compile(
    r"(user\.(name|email)|init\.defaultbranch|push\.(default|autosetupremote)"
    r"|pull\.(rebase|ff)|merge\.ff|fetch\.prune|rebase\.autosquash"
    r"|core\.(autocrlf|eol|filemode|ignorecase|symlinks|precomposeunicode)"
    r"|branch\.[^\n]+\.(remote|merge|rebase)|remote\.[^\n]+\.fetch)",
    re.IGNORECASE,
)


def _config(args: Sequence[str], caller: Caller) -> Decision:
    if args[:1] == ["-l"]:
        raise Denied("`--list` can print credentials kept in config; use `--get <name>`")
    parsed = parse(args, CONFIG, caller)
    if parsed.has("--get") == parsed.has("--get-all") or parsed.paths is not None:
        raise Denied("only `git config --get|--get-all <name> [<value-pattern>]` is allowed")
    count(parsed.positionals, 1, 2, "arguments (<name> [<value-pattern>])")
    name = check_rev(parsed.positionals[0], "config name")
    if not READABLE_KEYS.fullmatch(name):
        raise Denied(f"config key `{name}` is not one a sandbox may read (it may hold a "
                     "credential); readable: user.name, user.email, branch.<x>.remote|merge, "
                     "remote.<x>.fetch, push.default, pull.rebase, core.autocrlf, ...")
    pattern = parsed.positionals[1:]
    return allow(build(["config"], parsed.options, (name, *pattern)))


REMOTE_GET_URL = Syntax((flag("push"), flag("all")))


def _remote(args: Sequence[str], caller: Caller) -> Decision:
    if list(args) in ([], ["-v"], ["--verbose"]):
        return allow(("remote", *(["--verbose"] if args else [])))
    if args[:1] != ["get-url"]:
        raise Denied("only listing remotes is allowed")
    parsed = parse(args[1:], REMOTE_GET_URL, caller)
    count(parsed.positionals, 1, 1, "remote names")
    name = check_rev(parsed.positionals[0], "remote name")
    return allow(build(["remote", "get-url"], parsed.options, (name,)))


STASH_LIST = Syntax((
    flag("oneline"), value("format", kind=FORMAT), optional("pretty", kind=FORMAT),
    value("date"), value("max-count", "n", INT), optional("stat"), flag("patch", "p"),
    flag("name-only"), flag("name-status"), NO_EXT_DIFF, NO_TEXTCONV,
), revisions=True)


def _reflog(args: Sequence[str], caller: Caller) -> Decision:
    words = list(args)
    if words[:1] == ["show"]:
        words = words[1:]
    elif words[:1] and words[0] in ("expire", "delete", "exists"):
        raise Denied("only `git reflog [show]` is allowed")
    parsed = parse(words, LOG, caller)
    if parsed.paths is not None:
        raise Denied("git reflog takes no paths")
    return allow(build(["reflog", "show"], with_options(parsed, NO_EXT_DIFF, NO_TEXTCONV),
                       revs(parsed.positionals, caller)))


READS: dict[str, Command] = {
    "status": Command(_status, ("git status [<options>] [-- <path>...]",)),
    "log": _history("log", LOG),
    "show": _history("show", LOG),
    "diff": _history("diff", DIFF),
    "rev-list": _history("rev-list", REV_LIST),
    "shortlog": Command(_shortlog, ("git shortlog [-n] [-s] [-e] [<revision>...]",)),
    "blame": Command(_blame, ("git blame [<options>] [<revision>] [--] <file>",)),
    "grep": Command(_grep, ("git grep [<options>] [-e] <pattern> [<tree>...] [-- <path>...]",
                            "(no -O/--open-files-in-pager, no --no-index)")),
    "ls-files": Command(_ls_files, ("git ls-files [<options>] [-- <path>...]",)),
    "ls-tree": Command(_ls_tree, ("git ls-tree [<options>] <tree> [<path>...]",)),
    "cat-file": Command(_cat_file, ("git cat-file (-t|-s|-p|-e) <object>",
                                    "git cat-file <type> <object>",
                                    "git cat-file --batch[-check]")),
    "describe": _simple("describe", DESCRIBE, "git describe [<options>] [<commit>...]"),
    "merge-base": _simple("merge-base", MERGE_BASE, "git merge-base [<options>] <commit>..."),
    "for-each-ref": _simple("for-each-ref", FOR_EACH_REF,
                            "git for-each-ref [<options>] [<pattern>...]"),
    "tag": Command(_tag, ("git tag [--list] [<options>] [<pattern>...]",
                          "(creating or deleting tags is not allowed)")),
    "rev-parse": Command(_rev_parse, ("git rev-parse [<options>] [<revision>...]",
                                      "git rev-parse --sq-quote <word>...",
                                      "git rev-parse --parseopt [<flags>] -- <word>...")),
    "config": Command(_config, ("git config --get|--get-all <name> [<value-pattern>]",)),
    "remote": Command(_remote, ("git remote [-v]", "git remote get-url [--push] <name>")),
    "reflog": Command(_reflog, ("git reflog [show] [<log options>] [<ref>]",)),
}
