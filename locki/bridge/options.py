"""A parser for git subcommand arguments that agrees with git's own, and its inverse.

Each subcommand declares the options it accepts (`Syntax`). `parse` reads argv the way
git would — parse-options clusters and `--opt value`, or the stricter shapes of the
revision walker used by log/diff/show — but accepts only the exact spellings declared:
git's unique-prefix abbreviations (`--upload` for `--upload-pack`) and its automatic
`--no-*` negations are refused, so there is no second interpretation of any word.
`emit` rebuilds argv from the parse in one canonical spelling (`--long=value`), which is
what the daemon runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from locki.bridge.model import Caller, Denied
from locki.bridge.names import check_own_branch, check_rev, resolve_inside


class Arity(Enum):
    NONE = "none"
    REQUIRED = "required"
    OPTIONAL = "optional"
    """Value only as `--opt=value` or glued `-Xvalue`, never the next word (as in git)."""


class Kind(Enum):
    TEXT = "text"
    REV = "rev"
    OWN_BRANCH = "own-branch"
    PATH = "path"
    INT = "int"
    FORMAT = "format"
    CHOICE = "choice"


@dataclass(frozen=True)
class Opt:
    long: str | None = None
    short: str | None = None
    arity: Arity = Arity.NONE
    kind: Kind = Kind.TEXT
    choices: frozenset[str] = frozenset()
    multi: bool = False

    @property
    def name(self) -> str:
        return f"--{self.long}" if self.long else f"-{self.short}"


def flag(long: str | None, short: str | None = None) -> Opt:
    return Opt(long, short)


def value(
    long: str | None, short: str | None = None, kind: Kind = Kind.TEXT, *,
    choices: Sequence[str] = (), multi: bool = False,
) -> Opt:
    return Opt(long, short, Arity.REQUIRED, kind, frozenset(choices), multi)


def optional(
    long: str | None, short: str | None = None, kind: Kind = Kind.TEXT, *,
    choices: Sequence[str] = (),
) -> Opt:
    return Opt(long, short, Arity.OPTIONAL, kind, frozenset(choices))


# Why notorious options are refused, so the agent gets a reason rather than "unknown".
_RUNS_PROGRAM = "runs a program on the host"
REFUSED: dict[str, str] = {
    "--upload-pack": _RUNS_PROGRAM, "--receive-pack": _RUNS_PROGRAM,
    "--exec": _RUNS_PROGRAM, "--ext-diff": _RUNS_PROGRAM, "--textconv": _RUNS_PROGRAM,
    "--open-files-in-pager": _RUNS_PROGRAM, "--show-signature": _RUNS_PROGRAM,
    "--filters": _RUNS_PROGRAM, "--recurse-submodules": "reads nested repositories' config",
    "--output": "writes a file on the host", "--no-index": "reads files outside the repo",
    "--interactive": "needs an editor on the host", "--edit": "needs an editor on the host",
    "--patch": "is interactive", "--autostash": "uses the shared stash",
    "--update-refs": "rewrites branches other than the sandbox's own",
    "--no-verify": "skips the repository's hooks",
    "--git-dir": "is a global option", "--work-tree": "is a global option",
}


@dataclass(frozen=True)
class Syntax:
    options: tuple[Opt, ...]
    revisions: bool = False
    """Parsed by git's revision walker (log, show, diff, rev-list, rev-parse): no short
    clusters, long values only as `--opt=value`, and the first `--` splits paths off
    before anything else is looked at."""
    max_count_digits: bool = False
    """`-5` means `--max-count=5` (log and friends)."""
    refused: dict[str, str] = field(default_factory=dict)
    _longs: dict[str, Opt] = field(init=False, repr=False, compare=False)
    _shorts: dict[str, Opt] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_longs", {o.long: o for o in self.options if o.long})
        object.__setattr__(self, "_shorts", {o.short: o for o in self.options if o.short})

    def long(self, name: str) -> Opt:
        found = self._longs.get(name)
        if found is None:
            spelled = f"--{name}"
            why = self.refused.get(spelled) or REFUSED.get(spelled) or "is not allowed here"
            raise Denied(f"option `{spelled}` {why}")
        return found

    def short(self, char: str) -> Opt:
        found = self._shorts.get(char)
        if found is None:
            why = self.refused.get(f"-{char}", "is not allowed here")
            raise Denied(f"option `-{char}` {why}")
        return found


@dataclass(frozen=True)
class Parsed:
    options: tuple[tuple[Opt, str | None], ...]
    positionals: tuple[str, ...]
    paths: tuple[str, ...] | None
    """Words after `--`; None when there was no `--`."""
    stdin_from: Path | None = None

    def has(self, *names: str) -> bool:
        return any(opt.name in names for opt, _ in self.options)

    def get(self, name: str) -> str | None:
        return next((v for opt, v in self.options if opt.name == name), None)

    def only(self, allowed: Sequence[str], context: str) -> None:
        """Refuse options outside `allowed` for one form of a command."""
        for opt, _ in self.options:
            if opt.name not in allowed:
                raise Denied(f"option `{opt.name}` is not allowed {context}")


class _Reader:
    """One pass over argv, in git's order, collecting options and positionals."""

    def __init__(self, args: Sequence[str], syntax: Syntax, caller: Caller) -> None:
        self.args = list(args)
        self.syntax = syntax
        self.caller = caller
        self.i = 0
        self.options: list[tuple[Opt, str | None]] = []
        self.positionals: list[str] = []

    def next_word(self, opt: Opt) -> str:
        if self.i >= len(self.args):
            raise Denied(f"option `{opt.name}` needs a value")
        word = self.args[self.i]
        self.i += 1
        return word

    def add(self, opt: Opt, raw: str | None) -> None:
        if not opt.multi and any(o is opt for o, _ in self.options):
            # git keeps the last (or all) of a repeated option; refusing repeats means no
            # check here can look at one occurrence while git acts on another.
            raise Denied(f"option `{opt.name}` given more than once")
        self.options.append((opt, None if raw is None else check_value(opt, raw, self.caller)))

    def long(self, word: str) -> None:
        name, eq, raw = word[2:].partition("=")
        opt = self.syntax.long(name)
        if opt.arity is Arity.NONE:
            if eq:
                raise Denied(f"option `--{name}` takes no value")
            self.add(opt, None)
        elif opt.arity is Arity.OPTIONAL or eq:
            self.add(opt, raw if eq else None)
        elif self.syntax.revisions:
            raise Denied(f"write `--{name}=<value>` (one word)")
        else:
            self.add(opt, self.next_word(opt))

    def short(self, word: str) -> None:
        if self.syntax.max_count_digits and word[1:].isdigit():
            self.add(self.syntax.long("max-count"), word[1:])
            return
        pos = 1
        while pos < len(word):
            opt = self.syntax.short(word[pos])
            rest = word[pos + 1:]
            if opt.arity is Arity.NONE:
                if rest and self.syntax.revisions:
                    raise Denied(f"write short options separately, not `{word}`")
                self.add(opt, None)
                pos += 1
                continue
            if opt.arity is Arity.OPTIONAL:
                self.add(opt, rest or None)
            else:
                self.add(opt, rest or self.next_word(opt))
            return

    def run(self) -> tuple[str, ...] | None:
        while self.i < len(self.args):
            word = self.args[self.i]
            self.i += 1
            if word == "--end-of-options":
                return self.end_of_options()
            if word == "--":
                return tuple(self.args[self.i:])
            if word.startswith("--"):
                self.long(word)
            elif word.startswith("-") and word != "-":
                self.short(word)
            else:
                self.positionals.append(word)
        return None

    def end_of_options(self) -> tuple[str, ...] | None:
        rest = self.args[self.i:]
        if "--" in rest:
            # What a later `--` means after `--end-of-options` differs between git
            # commands; refusing it avoids guessing.
            raise Denied("`--` after `--end-of-options` is not accepted")
        self.positionals.extend(rest)
        return None


def check_value(opt: Opt, raw: str, caller: Caller) -> str:
    """Validate an option's value by its kind; returns the value to emit."""
    if opt.kind is Kind.REV:
        return check_rev(raw, f"value of `{opt.name}`")
    if opt.kind is Kind.OWN_BRANCH:
        return check_own_branch(raw, caller)
    if opt.kind is Kind.PATH:
        return raw if raw == "-" else str(resolve_inside(raw, caller, f"`{opt.name}` file"))
    if opt.kind is Kind.INT and not raw.isdigit():
        raise Denied(f"option `{opt.name}` needs a number, not {raw!r}")
    if opt.kind is Kind.CHOICE and raw not in opt.choices:
        raise Denied(f"option `{opt.name}` accepts {', '.join(sorted(opt.choices))}")
    if opt.kind is Kind.FORMAT and "%G" in raw:
        # %G? and friends verify signatures, running gpg/ssh-keygen on host against
        # content the sandbox wrote.
        raise Denied(f"format placeholders `%G…` are not allowed in `{opt.name}`")
    return raw


def parse(args: Sequence[str], syntax: Syntax, caller: Caller) -> Parsed:
    words = list(args)
    paths: tuple[str, ...] | None = None
    if syntax.revisions and "--" in words:
        # The revision walker splits at the first `--` before reading any option, so
        # `--author -- x` never gives `--author` the value `--`; mirror that.
        cut = words.index("--")
        words, paths = words[:cut], tuple(words[cut + 1:])
    reader = _Reader(words, syntax, caller)
    after = reader.run()
    if after is not None:
        paths = after
    return _stdin_plan(Parsed(tuple(reader.options), tuple(reader.positionals), paths))


def _stdin_plan(parsed: Parsed) -> Parsed:
    """Turn the one path-valued option into `-`, with the daemon feeding the file."""
    readers = [(o, v) for o, v in parsed.options if o.kind is Kind.PATH]
    if not readers:
        return parsed
    if len(readers) > 1:
        raise Denied("only one file or stdin argument per command")
    opt, val = readers[0]
    if val == "-" or val is None:
        return parsed
    options = tuple((o, "-" if o is opt else v) for o, v in parsed.options)
    return Parsed(options, parsed.positionals, parsed.paths, Path(val))


def emit_options(options: Sequence[tuple[Opt, str | None]]) -> list[str]:
    out: list[str] = []
    for opt, val in options:
        if val is None:
            out.append(opt.name)
        elif opt.long:
            out.append(f"--{opt.long}={val}")
        elif val == "":
            # An empty value cannot be glued (`-e` alone would take the next word):
            # it is its own, empty, word.
            out.extend([f"-{opt.short}", ""])
        else:
            # Short-only options keep their value glued (`-e--exec`): one word per option,
            # so no reader can take the value for an option of its own.
            out.append(f"-{opt.short}{val}")
    return out


def with_options(parsed: Parsed, *extra: Opt) -> tuple[tuple[Opt, str | None], ...]:
    """The parsed options plus hardening flags the policy adds (once)."""
    added = tuple((o, None) for o in extra if not parsed.has(o.name))
    return added + parsed.options
