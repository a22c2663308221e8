"""The bridge's allow-list: decide whether a sandbox's `git` argv may run on the host.

The daemon calls `check_git` with the argv the in-container shim sent (without the
leading `git`) and the `Caller` it established from the credential. It executes only
`Decision.argv`, a canonical argv rebuilt from the parse, never the raw words; `locki
bridge check` prints `explain(decision)`. Pure: no I/O, no repository access.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from locki.bridge.commands import Command
from locki.bridge.model import Caller, Decision, Denied
from locki.bridge.reads import READS
from locki.bridge.remotes import REMOTES
from locki.bridge.stash import STASH
from locki.bridge.writes import WRITES

__all__ = ["COMMANDS", "Caller", "Decision", "check_git", "explain"]


COMMANDS: dict[str, Command] = {**READS, **WRITES, **REMOTES, "stash": STASH}

# Global options that change nothing the daemon does not already decide (it never
# attaches a pager, and sets GIT_OPTIONAL_LOCKS itself); they are dropped. Every other
# global option (-c, -C, --git-dir, --exec-path, ...) could point git elsewhere.
HARMLESS_GLOBALS = frozenset({"--no-pager", "-P", "--no-optional-locks"})


def check_git(args: Sequence[str], caller: Caller) -> Decision:
    """Allow or deny one git invocation; `args` is argv without the leading `git`."""
    command: Command | None = None
    try:
        _check_words(args)
        sub, rest = _subcommand(args)
        command = COMMANDS.get(sub)
        if command is None:
            raise Denied(f"git {sub} is not on the allow-list")
        if rest in (["--help"], ["-h"]):
            # `-h` prints the usage text and nothing else: no man page, pager or browser
            # (help.format=web) is ever started on the host.
            return Decision(True, "allowed", (sub, "-h"))
        return command.run(rest, caller)
    except Denied as denial:
        forms = command.forms if command else ()
        return Decision(False, denial.reason, (), allowed_forms=forms)


def _check_words(args: Sequence[str]) -> None:
    for word in args:
        if "\0" in word:
            raise Denied("an argument contains a NUL byte")
        if word.startswith("ext::"):
            # ext:: URLs run a command; nothing allowed here takes a URL, and refusing
            # the word everywhere keeps it out of any future push/fetch handler too.
            raise Denied("`ext::` transports are refused")


def _subcommand(args: Sequence[str]) -> tuple[str, list[str]]:
    words = list(args)
    while words and words[0].startswith("-"):
        if words[0] not in HARMLESS_GLOBALS:
            raise Denied(f"global option `{words[0]}` is not allowed; "
                         "the subcommand must come first")
        words.pop(0)
    if not words:
        raise Denied("no git subcommand given")
    return words[0], words[1:]


def explain(decision: Decision, program: str = "") -> str:
    """`allowed`, or `denied: <reason>` followed by the allowed forms, for humans. With
    `program`, an allowed answer also says what runs on the host."""
    if decision.allowed:
        if not program:
            return "allowed"
        runs = shlex.join([program, *decision.argv])
        if decision.stash is not None:
            runs += f" (host git steps on the sandbox's own `{decision.stash.ref}`)"
        lines = ["allowed", f"runs on the host: {runs}"]
        if decision.pr_check:
            lines.append(f"(first, the daemon checks that the head of PR `{decision.pr_check}` "
                         "is one of this sandbox's branches)")
        return "\n".join(lines)
    lines = [f"denied: {decision.reason}"]
    if decision.allowed_forms:
        lines.append("allowed forms:")
        lines.extend(f"  {form}" for form in decision.allowed_forms)
    return "\n".join(lines)
