"""Stand-ins for programs that cannot exist on these machines, put on PATH by tests."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent


def install_limactl(bin_dir: Path) -> Path:
    """A `limactl` in `bin_dir` that runs the fake with this interpreter."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "limactl"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'limactl.py'} \"$@\"\n")
    path.chmod(0o755)
    return path
