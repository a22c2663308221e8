"""JSON Schemas of locki's files, generated from the models.

The checked-in copies under `schemas/` are regenerated with
`python -m locki.state.schemas schemas/` (a test fails when they are stale). Files locki
writes start with a `#:schema` line so editors that read it (taplo, Even Better TOML)
validate as you type; the schema is kept beside them in `schemas/`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from locki.state.models import DesiredState, RepoConfig, UserConfig

SCHEMAS: dict[str, type[BaseModel]] = {
    "sandboxes.schema.json": DesiredState,
    "config.schema.json": UserConfig,
    "locki-toml.schema.json": RepoConfig,
}


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def directive(name: str) -> str:
    return f"#:schema ./schemas/{name}"


def install_beside(target: Path, name: str) -> None:
    """Keep `schemas/<name>` next to `target` current, for the `#:schema` line."""
    path = target.parent / "schemas" / name
    text = render(SCHEMAS[name])
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_all(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in SCHEMAS.items():
        (folder / name).write_text(render(model))


if __name__ == "__main__":
    write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas"))
