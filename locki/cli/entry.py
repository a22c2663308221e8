"""The `locki` executable. Imports nothing until it knows which path a command takes:
`--version` answers at once, `x` tries the lean path, the rest loads the full CLI."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        _main()
    except KeyboardInterrupt:  # Ctrl-C before the full CLI's own handling is in place
        print("locki: interrupted", file=sys.stderr)
        sys.exit(130)


def _main() -> None:
    tokens = sys.argv[1:]
    if tokens == ["--version"]:
        from locki import __version__

        print(__version__)
        sys.exit(0)
    if tokens and tokens[0] in ("x", "exec"):
        from locki.cli.fast import try_fast_exec

        try_fast_exec(tokens[1:])  # returns only when the full path must run
    from locki.cli.main import main as full_main

    full_main()
