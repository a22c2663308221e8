"""The denied-commands log stays bounded: long argv words are cut (and say so), and the
file rotates like the other logs, so a hostile sandbox cannot fill the host's disk."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from locki.bridge import server
from locki.core.paths import Paths


def test_denied_log_cuts_long_words_and_rotates(home: Path) -> None:
    paths = Paths.from_env()
    bridge = server.Bridge(paths, server.allow_list, "test")
    try:
        _fill(bridge, paths)
    finally:
        bridge.close()


def _fill(bridge: server.Bridge, paths: Paths) -> None:
    log = paths.state_dir / "denied-commands.log"
    huge = "x" * 60_000
    for _ in range(40):
        bridge.deny_log("abcd1234", "/w", ["git", "hash-object", huge], f"no `{huge}`")
    entry = json.loads(log.read_text().splitlines()[0])
    cut = entry["argv"][2]
    assert cut.startswith("x" * server.DENY_LOG_WORD)
    assert cut.endswith(f"...[{60_000 - server.DENY_LOG_WORD} more characters not logged]")
    assert entry["argv"][:2] == ["git", "hash-object"]
    assert len(entry["reason"]) < server.DENY_LOG_REASON + 60
    assert log.stat().st_size < 40 * 2_000  # not 2.4 MB
    assert stat.S_IMODE(log.stat().st_mode) == 0o600

    many = [str(n) for n in range(1000)]
    bridge.deny_log("abcd1234", "/w", many, "too many")
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["argv"][:server.DENY_LOG_WORDS] == many[:server.DENY_LOG_WORDS]
    assert last["argv"][-1] == f"...[{1000 - server.DENY_LOG_WORDS} more words not logged]"

    # Past DENY_LOG_BYTES the file rotates; three generations are kept, each private.
    widest = ["x" * 10_000] * 100  # each entry as large as an entry gets, about 17 kB
    for _ in range(server.DENY_LOG_BYTES // 17_000 * 4):
        bridge.deny_log("abcd1234", "/w", widest, "z" * 10_000)
    generations = sorted(p.name for p in paths.state_dir.glob("denied-commands.log*"))
    assert generations == [f"denied-commands.log{s}" for s in ("", ".1", ".2", ".3")]
    for path in paths.state_dir.glob("denied-commands.log*"):
        assert path.stat().st_size <= server.DENY_LOG_BYTES
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for line in path.read_text().splitlines():
            assert json.loads(line)["sandbox"] == "abcd1234"
