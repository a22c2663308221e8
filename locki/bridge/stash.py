"""`git stash` for a sandbox: its own stash ref, never the shared `refs/stash`.

Each sandbox's stashes are the reflog of `refs/locki/stash/<id>`, which only that
sandbox writes (through the daemon, one command at a time). `stash@{N}` always means
entry N of the caller's own reflog, so no index can shift onto the user's or another
sandbox's stash, and the user's `git stash list` never shows a sandbox's. The policy
here only parses; `locki.bridge.stash_run` carries out the `StashPlan` with host git.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from locki.bridge.commands import Command, no_positionals
from locki.bridge.model import Caller, Decision, Denied, StashPlan, allow
from locki.bridge.options import Syntax, emit_options, flag, parse, value, with_options
from locki.bridge.reads import DIFF_OPTIONS, NO_EXT_DIFF, NO_TEXTCONV, STASH_LIST

# Shortcoming: `-u`, `-k`, `-S` and pathspecs need the stash commit built by hand (git's
# `stash create` covers tracked changes only); they go once that is written.
_LATER = "is not supported for sandbox stashes yet (tracked changes only)"
PUSH = Syntax((value("message", "m"), flag("quiet", "q")), refused={
    "--include-untracked": _LATER, "-u": _LATER, "--all": _LATER, "-a": _LATER,
    "--keep-index": _LATER, "-k": _LATER, "--staged": _LATER, "-S": _LATER,
    "--patch": "is interactive", "-p": "is interactive", "--pathspec-from-file": _LATER,
})
APPLY = Syntax((flag("index"), flag("quiet", "q")))
DROP = Syntax((flag("quiet", "q"),))
SHOW = Syntax((*DIFF_OPTIONS,), revisions=True)
_ENTRY = re.compile(r"(?:stash@\{([0-9]{1,6})\}|([0-9]{1,6}))")


def stash_ref(caller: Caller) -> str:
    return f"refs/locki/stash/{caller.sandbox_id}"


def _entry(words: Sequence[str], caller: Caller) -> int:
    if not words:
        return 0
    if len(words) > 1:
        raise Denied("name one stash entry (`stash@{N}`)")
    found = _ENTRY.fullmatch(words[0])
    if found is None:
        raise Denied(f"`{words[0]}` is not one of this sandbox's stashes; name it "
                     "`stash@{N}` as `git stash list` shows it (the user's and other "
                     "sandboxes' stashes are not reachable)")
    return int(found.group(1) or found.group(2))


def _plan(op: str, caller: Caller, *, entry: int = 0, options: tuple[str, ...] = (),
          message: str | None = None, writes: bool = True) -> Decision:
    plan = StashPlan(op, stash_ref(caller), entry, options, message)
    # What `locki bridge check` shows, in the agent's own terms (and parsed back to the
    # same plan); the daemon runs the plan, never this.
    named = (f"stash@{{{entry}}}",) if op in ("show", "apply", "pop", "drop") else ()
    text = (f"--message={message}",) if message is not None else ()
    return allow(("stash", op, *text, *options, *named), writes=writes, stash=plan)


def _push(words: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(words, PUSH, caller)
    no_positionals([*parsed.positionals, *(parsed.paths or ())], "git stash push")
    message = parsed.get("--message")
    if message is not None and ("\n" in message or not message.strip()):
        raise Denied("a stash message is one non-empty line")
    quiet = ("--quiet",) if parsed.has("--quiet") else ()
    return _plan("push", caller, options=quiet, message=message)


def _pick(op: str, words: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(words, DROP if op == "drop" else APPLY, caller)
    if parsed.paths is not None:
        raise Denied(f"git stash {op} takes no `--`")
    options = tuple(emit_options(parsed.options))
    return _plan(op, caller, entry=_entry(parsed.positionals, caller), options=options)


def _show(words: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(words, SHOW, caller)
    if parsed.paths:
        raise Denied("git stash show takes no paths")
    options = tuple(emit_options(with_options(parsed, NO_EXT_DIFF, NO_TEXTCONV)))
    return _plan("show", caller, entry=_entry(parsed.positionals, caller), options=options,
                 writes=False)


def _list(words: Sequence[str], caller: Caller) -> Decision:
    parsed = parse(words, STASH_LIST, caller)
    no_positionals([*parsed.positionals, *(parsed.paths or ())], "git stash list")
    options = tuple(emit_options(with_options(parsed, NO_EXT_DIFF, NO_TEXTCONV)))
    return _plan("list", caller, options=options, writes=False)


def _stash(args: Sequence[str], caller: Caller) -> Decision:
    op, rest = (args[0], list(args[1:])) if args and not args[0].startswith("-") else (
        "push", list(args))
    if op == "push":
        return _push(rest, caller)
    if op in ("apply", "pop", "drop"):
        return _pick(op, rest, caller)
    if op == "show":
        return _show(rest, caller)
    if op == "list":
        return _list(rest, caller)
    if op == "clear":
        no_positionals(rest, "git stash clear")
        return _plan("clear", caller)
    if op == "save":
        raise Denied("`git stash save` is spelled `git stash push -m <message>` here")
    raise Denied(f"git stash {op} is not allowed (push, list, show, apply, pop, drop, "
                 "clear of this sandbox's own stashes are)")


STASH = Command(_stash, (
    "git stash [push] [-m <message>] [-q]", "git stash list [<log options>]",
    "git stash show [<diff options>] [stash@{N}]",
    "git stash apply|pop [--index] [-q] [stash@{N}]", "git stash drop [-q] [stash@{N}]",
    "git stash clear", "(this sandbox's own stashes only; tracked changes only)",
))
