"""Reading and editing the TOML files behind the models.

Edits go through tomlkit so the user's comments and layout survive, under an exclusive
OS-level lock (it dies with its holder), and land with an atomic rename: a reader sees
the old file or the new one, never half of either. Bad files raise an error that names
the file and the key path, and nothing is written.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import tomlkit
from pydantic import BaseModel, ValidationError
from tomlkit.exceptions import ParseError
from tomlkit.toml_document import TOMLDocument

from locki.core import lock
from locki.core.errors import LockiError
from locki.core.files import remove_stale_temporaries, write_atomically
from locki.state import schemas
from locki.state.models import DesiredState, Forward, Include, SandboxSpec

M = TypeVar("M", bound=BaseModel)

SCHEMA = "sandboxes.schema.json"
HEADER = (
    "locki desired state. Edit by hand if you like, then `locki plan` shows what would\n"
    "change and `locki apply` makes it so."
)


def parse(path: Path, text: str) -> TOMLDocument:
    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        raise LockiError(
            f"`{path}` is not valid TOML: {_toml_problem(text, exc)}",
            hint=f"fix line {exc.line} of `{path}`",
        ) from exc


def _toml_problem(text: str, exc: ParseError) -> str:
    """The clearer of the two parsers' messages (tomlkit's can name a NUL at line 1 for
    an array left open at the end of the file)."""
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as strict:
        return str(strict)
    return str(exc)


def validate(path: Path, data: dict[str, Any], model: type[M]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Unknown keys first: `imag = ...` also makes `image` missing, and the typo is
        # the thing to fix.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        first = errors[0]
        key = _key(first)
        if len(errors) > 1:
            problems = "; ".join(_problem(model, e) for e in errors[:MAX_PROBLEMS])
            more = f"; and {len(errors) - MAX_PROBLEMS} more" if len(errors) > MAX_PROBLEMS \
                else ""
            raise LockiError(f"`{path}` has {len(errors)} problems: {problems}{more}",
                             hint=f"edit `{path}` and fix each") from exc
        if first["type"] == "extra_forbidden":
            known = ", ".join(_known_keys(model, first["loc"][:-1])) or "none"
            raise LockiError(
                f"`{path}`: unknown key `{key}`",
                hint=f"remove it or fix its spelling; keys allowed there: {known}",
            ) from exc
        raise LockiError(
            f"`{path}`: key `{key}`: {first['msg'].removeprefix('Value error, ')}",
            hint=f"edit `{path}` and fix `{key}`",
        ) from exc


MAX_PROBLEMS = 10


def _key(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def _problem(model: type[BaseModel], error: Any) -> str:
    if error["type"] == "extra_forbidden":
        known = ", ".join(_known_keys(model, error["loc"][:-1])) or "none"
        return f"unknown key `{_key(error)}` (keys allowed there: {known})"
    return f"key `{_key(error)}`: {error['msg'].removeprefix('Value error, ')}"


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the table at `loc` (dict levels such as sandbox ids skipped)."""
    current: Any = model
    parts = list(loc)
    while parts:
        if get_origin(current) is dict:
            current = get_args(current)[1]  # the next part is a key such as a sandbox id
            parts.pop(0)
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(parts.pop(0)))
        if field is None:
            return []
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _text(path: Path) -> str | None:
    """The text of `path`, or None when it does not exist."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockiError(f"cannot read `{path}`: {exc}") from exc


def load(path: Path, model: type[M]) -> M:
    """The model in `path`, or the model's defaults when the file does not exist."""
    text = _text(path)
    if text is None:
        return model()
    return validate(path, parse(path, text).unwrap(), model)


class DesiredEditor:
    """Changes to `sandboxes.toml` made inside `StateFile.edit()`."""

    def __init__(self, doc: TOMLDocument, state: DesiredState) -> None:
        self.doc = doc
        self.state = state

    def _sandboxes(self) -> Any:
        if "sandbox" not in self.doc:
            self.doc.add(tomlkit.nl())
            self.doc["sandbox"] = tomlkit.table(is_super_table=True)
        return self.doc["sandbox"]

    def add(self, sandbox_id: str, spec: SandboxSpec) -> None:
        table = tomlkit.table()
        table["repo"] = str(spec.repo)
        table["base"] = spec.base
        table["image"] = spec.image
        table["state"] = spec.state
        if spec.branch is not None:
            table["branch"] = spec.branch
        self._sandboxes()[sandbox_id] = table

    def set_state(self, sandbox_id: str, state: str, *, delete_branches: bool = False,
                  discard_work: bool = False) -> None:
        entry = self._sandboxes()[sandbox_id]
        entry["state"] = state
        for key, value in (("delete_branches", delete_branches),
                           ("discard_work", discard_work)):
            if value:
                entry[key] = True
            elif key in entry:
                del entry[key]

    def set_forwards(self, sandbox_id: str, forwards: list[Forward]) -> None:
        entry = self._sandboxes()[sandbox_id]
        if not forwards:
            if "forwards" in entry:
                del entry["forwards"]
            return
        array = tomlkit.array()
        for item in forwards:
            table = tomlkit.inline_table()
            table.update({"host": item.host, "guest": item.guest})
            array.append(table)
        entry["forwards"] = array

    def add_include(self, sandbox_id: str, name: str, include: Include) -> None:
        entry = self._sandboxes()[sandbox_id]
        if "include" not in entry:
            entry["include"] = tomlkit.table(is_super_table=True)
        table = tomlkit.table()
        table["repo"] = str(include.repo)
        table["base"] = include.base
        if include.branch is not None:
            table["branch"] = include.branch
        table["state"] = include.state
        entry["include"][name] = table

    def set_include_state(self, sandbox_id: str, name: str, state: str) -> None:
        self._sandboxes()[sandbox_id]["include"][name]["state"] = state

    def forget_include(self, sandbox_id: str, name: str) -> None:
        entry = self._sandboxes().get(sandbox_id)
        includes = entry.get("include") if entry is not None else None
        if includes is None or name not in includes:
            return
        del includes[name]
        if not includes:
            del entry["include"]

    def forget(self, sandbox_id: str) -> None:
        sandboxes = self._sandboxes()
        if sandbox_id in sandboxes:
            del sandboxes[sandbox_id]


def _ledger(path: Path) -> dict[str, frozenset[str]]:
    """Sandbox id -> the repositories it worked in, per line `<id>` or `<id>\t<JSON list>`
    (the older form, ids alone, still reads)."""
    out: dict[str, frozenset[str]] = {}
    for line in (_text(path) or "").splitlines():
        sid, _, repos = line.strip().partition("\t")
        if not sid:
            continue
        try:
            listed = json.loads(repos) if repos else []
        except ValueError:
            listed = []
        found = frozenset(r for r in listed if isinstance(r, str)) if isinstance(listed, list) \
            else frozenset()
        out[sid] = out.get(sid, frozenset()) | found
    return out


def read_ledger(path: Path) -> frozenset[str]:
    """The sandbox ids in the ledger at `path` (none when it does not exist yet)."""
    return frozenset(_ledger(path))


def ledger_repos(path: Path) -> frozenset[Path]:
    """Every repository a sandbox in the ledger worked in (its own and its includes')."""
    return frozenset(Path(r) for repos in _ledger(path).values() for r in repos)


class StateFile:
    """`sandboxes.toml`, and beside it (when given) the ledger of every sandbox id ever
    written to it: an entry's removal does not remove its id there, so `gc` can still
    tell this installation's leftover branches from anyone else's."""

    def __init__(self, path: Path, lock_path: Path, *, lock_timeout: float = 300.0,
                 ledger: Path | None = None) -> None:
        self.path = path
        self.lock_path = lock_path
        self.lock_timeout = lock_timeout
        self.ledger = ledger

    def _record(self, state: DesiredState) -> None:
        """Add the sandboxes of `state` and their repositories to the ledger (under the
        lock, before the state naming them lands)."""
        if self.ledger is None:
            return
        known = _ledger(self.ledger)
        merged = dict(known)
        for sid, spec in state.sandbox.items():
            repos = {str(spec.repo), *(str(inc.repo) for inc in spec.include.values())}
            merged[sid] = merged.get(sid, frozenset()) | repos
        if merged == known:
            return
        lines = [f"{sid}\t{json.dumps(sorted(repos))}" for sid, repos in sorted(merged.items())]
        write_atomically(self.ledger, ("\n".join(lines) + "\n").encode(), mode=0o600)

    def read(self) -> DesiredState:
        return load(self.path, DesiredState)

    def _document(self) -> TOMLDocument:
        try:
            return parse(self.path, self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            lines = [schemas.directive(SCHEMA), *(f"# {line}" for line in HEADER.splitlines())]
            return tomlkit.parse("\n".join(lines) + "\n")

    def _target(self) -> Path:
        # A symlinked file (dotfile managers do that) is written where it points.
        return self.path.resolve() if self.path.is_symlink() else self.path

    def tidy(self) -> None:
        """Remove drafts a writer killed mid-write left beside the file (under the lock)."""
        with lock.exclusive(self.lock_path, timeout=self.lock_timeout,
                            purpose="editing the desired state"):
            remove_stale_temporaries(self._target())

    @contextmanager
    def edit(self) -> Iterator[DesiredEditor]:
        """Hold the lock, yield an editor, then validate and write if anything changed."""
        with lock.exclusive(self.lock_path, timeout=self.lock_timeout,
                            purpose="editing the desired state"):
            target = self._target()
            remove_stale_temporaries(target)  # a writer killed mid-write left its draft
            doc = self._document()
            before = doc.as_string()
            editor = DesiredEditor(doc, validate(self.path, doc.unwrap(), DesiredState))
            yield editor
            after = doc.as_string()
            if after != before:
                self._record(validate(self.path, doc.unwrap(), DesiredState))
                schemas.install_beside(target, SCHEMA)
                write_atomically(target, after.encode())
