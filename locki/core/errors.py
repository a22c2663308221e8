"""The one error family. The CLI boundary turns these into a message and an exit code.

Expected failures raise `LockiError` (or a subclass) with a message that names the
thing and a hint for the next step; anything else is a bug and exits 3.
"""

from __future__ import annotations


class LockiError(Exception):
    """An expected failure: one line for the user, exit code 1."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(LockiError):
    """The command line itself is wrong."""

    exit_code = 2


class RuntimeUnreachable(LockiError):
    """The container runtime did not answer, so what exists is unknown."""

    exit_code = 4


class Interrupted(LockiError):
    """Stopped by Ctrl-C at a step boundary: the message says what was done and what not."""

    exit_code = 130


class TransientError(LockiError):
    """A failure worth retrying: a busy daemon, a runtime still starting."""


class CommandFailed(LockiError):
    """A child process exited non-zero where success was required."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        super().__init__(f"`{_name(argv)}` failed with exit code {returncode}: {detail}")
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class TimedOut(LockiError):
    """A child process ran past its time limit and was stopped."""

    def __init__(self, argv: list[str], seconds: float) -> None:
        super().__init__(f"`{_name(argv)}` did not finish within {seconds:g} s and was "
                         "stopped")
        self.argv = argv


def _name(argv: list[str]) -> str:
    """The program and its subcommand, skipping options (`git -c x=y status` -> git status)."""
    words = [argv[0].rsplit("/", 1)[-1]] if argv else []
    skip = False
    for word in argv[1:]:
        if skip:
            skip = False
        elif word in ("-c", "--project"):
            skip = True
        elif not word.startswith("-"):
            words.append(word)
            if len(words) == 3:
                break
    return " ".join(words)
