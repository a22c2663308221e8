"""The `locki` command line and its one error boundary."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated

import anyio
import cyclopts
from cyclopts import App, Parameter

from locki import __version__
from locki.cli import commands
from locki.core import log as logging_setup
from locki.core.errors import LockiError, UsageError
from locki.core.paths import Paths
from locki.reconciler import context

EXEC_NAMES = ("exec", "x")
# Options `locki x` reads before the command; everything from the first other word on
# belongs to the command (so `locki x grep -n foo` never takes `-n` for itself).
EXEC_VALUE_OPTIONS = {"-m", "--match", "--runtime"}
EXEC_FLAG_OPTIONS = {"-n", "--new", "-i", "--interactive", "-v", "--verbose", "-h", "--help"}

app = App(
    name="locki",
    help="AI-agent sandboxes: a git worktree and an Incus system container per agent.\n\n"
    "Commands edit the desired state (~/.config/locki/sandboxes.toml) and converge it; "
    "`locki plan` previews, `locki apply` converges.",
    version=__version__,
    result_action="return_value",
    help_format="rst",
    exit_on_error=False,
    suppress_keyboard_interrupt=False,
    print_error=True,
)


class Globals:
    runtime: str | None = None
    lock_timeout: float = context.DEFAULT_LOCK_TIMEOUT
    exit_on_locki_error = 1
    argv: tuple[str, ...] = ()  # the command line as given (`run`)


def _paths() -> Paths:
    return Paths.from_env()


def _context() -> context.Context:
    return context.build(_paths(), runtime_flag=Globals.runtime,
                         lock_timeout=Globals.lock_timeout)


def _run(body: Callable[[context.Context], Awaitable[int]]) -> int:
    ctx = _context()
    return anyio.run(body, ctx)


MatchOpt = Annotated[str | None, Parameter(name=["--match", "-m"],
                                            help="Sandbox id prefix, or part of its branch.")]
JsonOpt = Annotated[bool, Parameter(name="--json", negative="", help="Print JSON.")]
InteractiveOpt = Annotated[bool, Parameter(name=["--interactive", "-i"], negative="",
                                           help="Pick the sandbox from a list.")]
ForceOpt = Annotated[bool, Parameter(name=["--force", "-f"], negative="",
                                     help="Allow actions that destroy uncommitted work.")]


@app.command(name=list(EXEC_NAMES))
def exec_(
    *command: Annotated[str, Parameter(allow_leading_hyphen=True)],
    match: MatchOpt = None,
    new: Annotated[bool, Parameter(name=["--new", "-n"], negative="",
                                   help="Run in a new sandbox of this repository.")] = False,
    interactive: InteractiveOpt = False,
) -> int:
    """Run COMMAND in a sandbox (a login shell when none is given).

    Inside a worktree folder its sandbox is used; in a repository with no sandbox one is
    created. The command's exit code is passed through (125: locki failed first).
    Options go before the command: `locki x -m feat -- pytest -x`.

    Parameters
    ----------
    command
        The command and its arguments, run in the worktree inside the container.
    """
    Globals.exit_on_locki_error = 125
    if command and command[0].startswith("-") and not _after_double_dash(command[0]):
        raise UsageError(f"`locki x` has no option `{command[0]}`",
                         hint="put locki's options (-m, -n, -i) before the command, and "
                         "`--` before a command that starts with `-`")

    async def body(ctx: context.Context) -> list[str]:
        return await commands.prepare_exec(ctx, match=match, new=new, interactive=interactive,
                                           command=list(command))

    ctx = _context()
    argv = anyio.run(body, ctx)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)


def _after_double_dash(first: str) -> bool:
    """Whether the command line put `--` before `first` (the command's first word)."""
    words = list(Globals.argv)
    start = next((i for i, w in enumerate(words) if w in EXEC_NAMES), -1) + 1
    for word in words[start:]:
        if word == "--":
            return True
        if word == first:
            return False
    return False


@app.command
def new(
    *,
    as_json: JsonOpt = False,
    branch: Annotated[str | None, Parameter(name=["--branch", "-b"])] = None,
    stopped: Annotated[bool, Parameter(negative="")] = False,
) -> int:
    """Create a new sandbox of the repository you are in, without entering it.

    Parameters
    ----------
    branch
        Start on branch BRANCH#locki-<id> instead of untitled#locki-<id>.
    stopped
        Create its container stopped (`locki x` starts it when you enter).
    """
    return _run(lambda ctx: commands.cmd_new(ctx, as_json=as_json, branch=branch,
                                             stopped=stopped))


@app.command(name=["list", "ls"])
def list_(*, as_json: JsonOpt = False) -> int:
    """List sandboxes with their state, live branch and worktree folder.

    Exits 4 when the runtime cannot be reached (the states are then `unknown`).
    """
    return _run(lambda ctx: commands.cmd_list(ctx, as_json=as_json))


@app.command
def plan(
    *,
    as_json: JsonOpt = False,
    detailed_exitcode: Annotated[bool, Parameter(negative="")] = False,
) -> int:
    """Show what `locki apply` would change, and why everything else stays.

    Parameters
    ----------
    detailed_exitcode
        Exit 0 when nothing would change, 2 when something would, 1 on any failure.
    """
    return _run(lambda ctx: commands.cmd_plan(ctx, as_json=as_json,
                                              detailed_exitcode=detailed_exitcode))


@app.command
def apply(*, force: ForceOpt = False) -> int:
    """Converge what exists to the desired state."""
    return _run(lambda ctx: commands.cmd_apply(ctx, force=force))


@app.command(name=["remove", "rm"])
def remove(
    *,
    match: MatchOpt = None,
    force: ForceOpt = False,
    delete_branch: Annotated[bool, Parameter(negative="")] = False,
    interactive: InteractiveOpt = False,
) -> int:
    """Remove a sandbox: its container, then its worktree. Branches are kept.

    Refuses when the worktree has uncommitted changes (untracked files included) or
    commits found on no other branch or remote, unless --force.

    Parameters
    ----------
    delete_branch
        Also delete the sandbox's own branches (only those ending in #locki-<id>).
    """
    return _run(lambda ctx: commands.cmd_remove(ctx, match=match, force=force,
                                                delete_branch=delete_branch,
                                                interactive=interactive))


@app.command
def status(*, as_json: JsonOpt = False) -> int:
    """Each sandbox's condition: Ready, Drifted, Degraded, Orphaned or Unknown, with the
    reason, the live branch, forwards, includes and last use. Read-only: no lock, no
    change, no git index refresh. Exits 4 when the runtime cannot be reached (every
    sandbox is then Unknown; nothing is reported absent).
    """
    from locki.cli.status import cmd_status

    return _run(lambda ctx: cmd_status(ctx, as_json=as_json))


@app.command
def gc(
    *,
    dry_run: Annotated[bool, Parameter(negative="")] = False,
    force: ForceOpt = False,
    branches: Annotated[bool, Parameter(negative="")] = False,
    as_json: JsonOpt = False,
) -> int:
    """Remove what this installation made that nothing desires any more.

    Containers and forwards of this installation without a desired entry, worktree
    folders in locki's worktrees folder that no sandbox owns, `*#locki-<id>` branches
    of no sandbox that are merged into the default branch, images it imported that
    nothing uses, and desired entries whose repository is gone. Nothing without this
    installation's labels is touched. What would lose work (uncommitted changes, commits
    found nowhere else, a container's own files) is only listed unless --force.

    Parameters
    ----------
    dry_run
        Only show what would be removed.
    branches
        Also remove unmerged `*#locki-<id>` branches of sandboxes that are gone (those
        with commits found nowhere else still need --force).
    """
    from locki.cli.gc import cmd_gc

    return _run(lambda ctx: cmd_gc(ctx, dry_run=dry_run, force=force, branches=branches,
                                   as_json=as_json))


@app.command
def check(path: Path = Path("."), *, as_json: JsonOpt = False) -> int:
    """Check a repository's locki.toml: TOML syntax, known keys and types, and that its
    image (a path or glob of an archive) resolves. Needs no runtime: made for CI.

    Parameters
    ----------
    path
        A locki.toml, or the repository folder holding one.
    """
    return commands.cmd_check(path, as_json=as_json)


@app.command(name=["port-forward", "pf"])
def port_forward(
    *specs: str,
    match: MatchOpt = None,
    show: Annotated[bool, Parameter(name="--list", negative="")] = False,
    clear: Annotated[bool, Parameter(negative="")] = False,
    remove: Annotated[tuple[str, ...], Parameter(name="--remove", negative="")] = (),
    as_json: JsonOpt = False,
) -> int:
    """Forward host ports on 127.0.0.1 and ::1 (never other interfaces) into a sandbox.

    SPEC is N (same port both sides), HOST:GUEST, or :GUEST (a free host port is
    leased). Forwards are desired state: they survive restarts and go with the sandbox.
    A host port below 1024, or held by another sandbox or process, is refused before
    anything changes. Prints http://localhost:<port> for each forward.

    Parameters
    ----------
    specs
        Forwards to add.
    show
        Only list the sandbox's forwards.
    clear
        Remove every forward (before adding SPECs).
    remove
        Remove a forward (repeatable): HOST or HOST:GUEST by its host port, :GUEST
        by the port inside.
    """
    return _run(lambda ctx: commands.cmd_port_forward(
        ctx, match=match, specs=list(specs), show=show, clear=clear, remove=list(remove),
        as_json=as_json))


@app.command
def include(
    *,
    repo: Annotated[Path | None, Parameter(name="--repo")] = None,
    this: Annotated[bool, Parameter(negative="")] = False,
    match: MatchOpt = None,
    remove: Annotated[str | None, Parameter(name="--remove")] = None,
    show: Annotated[bool, Parameter(name="--list", negative="")] = False,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> int:
    """Graft a worktree of another repository into a sandbox, at .locki/include/NAME/.

    NAME is the other repository's folder name (made unique on a clash). Its worktree
    starts on `untitled#locki-<id>` of that repository, created from its default branch;
    the sandbox may write only that repository's `*#locki-<id>` branches, through the
    bridge. A path inside a linked worktree means its main repository. Removing an
    include with uncommitted or unpushed work needs --force; its branches are kept.

    Parameters
    ----------
    repo
        The repository to include into the sandbox chosen here (or with -m).
    this
        Include the repository you are in into the sandbox named with -m.
    remove
        Take include NAME out of the sandbox.
    show
        Only list the sandbox's includes.
    """
    from locki.cli.include import cmd_include

    return _run(lambda ctx: cmd_include(ctx, match=match, repo=repo, this=this, remove=remove,
                                        show=show, force=force, as_json=as_json))


daemon = App(name="daemon", help="The host daemon that serves the sandboxes' git bridge.",
             help_format="rst")
app.command(daemon)


@daemon.command(name="status")
def daemon_status(*, as_json: JsonOpt = False) -> int:
    """Whether the bridge daemon answers, and with which version. Exit 1 when it does not."""
    return anyio.run(lambda: commands.cmd_daemon_status(_paths(), as_json=as_json))


@daemon.command(name="stop")
def daemon_stop() -> int:
    """Stop the bridge daemon (the next `locki x` or `locki apply` starts it again)."""
    return anyio.run(lambda: commands.cmd_daemon_stop(_paths()))


vm_app = App(name="vm", help="The Lima VM `locki` that holds the sandboxes (Lima runtime).",
             help_format="rst")
app.command(vm_app)


@vm_app.command(name="status")
def vm_status(*, as_json: JsonOpt = False) -> int:
    """The VM's state, size, whether its config is current and its provisioning done."""
    from locki.cli import vm

    return _run(lambda ctx: vm.cmd_status(ctx, as_json=as_json))


@vm_app.command(name="stop")
def vm_stop() -> int:
    """Stop the VM (its sandboxes with it). The next `locki x` or `locki apply` boots it."""
    from locki.cli import vm

    return _run(vm.cmd_stop)


@vm_app.command(name=["delete", "rm"])
def vm_delete(*, force: ForceOpt = False) -> int:
    """Delete the VM and the containers in it.

    Worktrees, the shared home, config.toml and the desired state are kept: the next
    `locki apply` builds the VM again from the current config and re-creates every
    sandbox's container. What was installed inside the containers is lost, so with
    sandboxes this asks on a terminal, or needs --force.
    """
    from locki.cli import vm

    return _run(lambda ctx: vm.cmd_delete(ctx, force=force))


@app.command
def doctor(*, as_json: JsonOpt = False) -> int:
    """Check what the chosen runtime needs: limactl, QEMU (Linux) and the VM for `lima`;
    the client and daemon for `incus`; git, the bridge daemon, disk space.

    Prints a fix for each problem. Exits 1 when something blocks the runtime.
    """
    from locki.cli.doctor import cmd_doctor

    return anyio.run(lambda: cmd_doctor(_paths(), flag=Globals.runtime, as_json=as_json))


bridge = App(name="bridge", help="The git bridge between sandboxes and the host.",
             help_format="rst")
app.command(bridge)


@bridge.command(name="check")
def bridge_check(
    *argv: Annotated[str, Parameter(allow_leading_hyphen=True)],
    match: MatchOpt = None,
    cwd: Path | None = None,
) -> int:
    """Say whether the bridge would allow a git or gh command from a sandbox, and why not.

    Evaluates the policy only: nothing runs, no network. Prints `allowed` and the command
    that would run on the host (a push rewritten to explicit refspecs, gh with its
    repository) with exit 0, or `denied: <reason>` with the allowed forms (exit 1).
    Example: locki bridge check -m ab12 -- git push --mirror

    Parameters
    ----------
    argv
        The command as the agent would type it, starting with `git` or `gh`.
    cwd
        The folder it would run in (default: the worktree root).
    """
    return _run(lambda ctx: commands.cmd_bridge_check(ctx, match=match, cwd=cwd,
                                                      argv=list(argv)))


@app.meta.default
def launcher(
    *tokens: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
    runtime: Annotated[str | None, Parameter(
        help="Where sandboxes run: `lima` (default) or `incus` (this host's daemon). "
        "Also LOCKI_RUNTIME or `runtime` in config.toml.")] = None,
    verbose: Annotated[bool, Parameter(name=["--verbose", "-v"], negative="",
                                       help="Show progress events.")] = False,
    lock_timeout: Annotated[float, Parameter(
        help="How many seconds a command that changes things waits while another one "
        "does (it names that one); then it exits 1. 0: do not wait.")] = (
            context.DEFAULT_LOCK_TIMEOUT),
) -> int:
    if lock_timeout < 0:
        raise UsageError(f"`--lock-timeout {lock_timeout:g}` is negative",
                         hint="give a number of seconds, 0 or more")
    Globals.runtime = runtime
    Globals.lock_timeout = lock_timeout
    Globals.exit_on_locki_error = 1
    logging_setup.configure(_paths().logs, verbose=verbose)
    result = app(_exec_tokens(list(tokens)))
    return result if isinstance(result, int) else 0


def _exec_tokens(tokens: list[str]) -> list[str]:
    """Insert `--` before the command of `locki x`, so its words are never locki's."""
    if not tokens or tokens[0] not in EXEC_NAMES or "--" in tokens:
        return tokens
    i = 1
    while i < len(tokens):
        word = tokens[i]
        if word in EXEC_VALUE_OPTIONS:
            i += 2
        elif word in EXEC_FLAG_OPTIONS or word.split("=", 1)[0] in EXEC_VALUE_OPTIONS:
            i += 1
        else:
            break
    return [*tokens[:i], "--", *tokens[i:]]


def _crash_report(exc: BaseException) -> Path | None:
    try:
        logs = _paths().logs
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # as the logs
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def run(argv: Sequence[str] | None = None) -> int:
    """Run locki; every outcome becomes an exit code here and nowhere else."""
    args = list(sys.argv[1:] if argv is None else argv)
    Globals.argv = tuple(args)
    try:
        result = app.meta(args)
        return result if isinstance(result, int) else 0
    except KeyboardInterrupt:
        print("locki: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`locki plan | head -1`): nothing more to say to it, and
        # Python's own flush at exit must not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a program killed by SIGPIPE
    except SystemExit as exc:
        if exc.code == 130:
            print("locki: interrupted", file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        code = _failure(exc)
    # `plan --detailed-exitcode` keeps 2 for "changes": every failure, usage included, is 1
    # so CI never mistakes a typo for drift.
    return 1 if "--detailed-exitcode" in args else code


def _failure(exc: BaseException) -> int:
    """Report a failure and choose its exit code."""
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _failure(exc.exceptions[0])  # one failed task of a task group
    if isinstance(exc, cyclopts.CycloptsError):
        return 2  # cyclopts has printed the problem and the usage already
    if isinstance(exc, LockiError):
        _say(exc)
        if isinstance(exc, UsageError) or exc.exit_code != 1:
            return exc.exit_code
        return Globals.exit_on_locki_error
    report = _crash_report(exc)
    where = f"; details in {report}" if report else ""
    print(f"locki: unexpected error: {exc!r}{where}", file=sys.stderr)
    return 3


def _say(exc: LockiError) -> None:
    print(f"locki: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)


def main() -> None:
    try:
        code = run()
    except KeyboardInterrupt:  # a second Ctrl-C landing while the first is reported
        code = 130
    sys.exit(code)
