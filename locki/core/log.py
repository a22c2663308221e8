"""Logging: structlog events, as JSON lines to a file and briefly to the console.

Events name their resource (`sandbox=`, `container=`, `worktree=`) and stage. The file
keeps everything from debug up; the console shows warnings, or info with `-v`.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
from pathlib import Path

import structlog

_shared: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class _PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """A size-rotated file whose every generation is created 0600 (logs name commands)."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


def rotating_file(path: Path, *, max_bytes: int = 5_000_000,
                  backups: int = 3) -> logging.handlers.RotatingFileHandler:
    """A handler writing to `path`, rotated to `path.1` ... `path.<backups>` at `max_bytes`."""
    return _PrivateRotatingFile(path, maxBytes=max_bytes, backupCount=backups,
                                encoding="utf-8")


def configure(log_dir: Path | None, *, verbose: bool = False,
              filename: str = "locki.jsonl") -> Path | None:
    """Send events to `log_dir/<filename>` and the console; return the file's path."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG)

    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0),
            ],
            foreign_pre_chain=_shared,
        )
    )
    root.addHandler(console)

    log_file: Path | None = None
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            log_file = log_dir / filename
            handler = rotating_file(log_file)
        except OSError:
            log_file = None
        else:
            handler.setLevel(logging.DEBUG)
            handler.setFormatter(
                structlog.stdlib.ProcessorFormatter(
                    processors=[
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.dict_tracebacks,
                        structlog.processors.JSONRenderer(),
                    ],
                    foreign_pre_chain=_shared,
                )
            )
            root.addHandler(handler)

    # Chatty libraries: their warnings are what matter.
    for name in ("asyncssh", "filelock", "watchfiles"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*_shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return log_file
