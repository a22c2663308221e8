"""The checked-in JSON Schemas match the models, and accept what locki itself writes."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

from locki.state.models import SandboxSpec
from locki.state.schemas import SCHEMAS, render
from locki.state.store import StateFile

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_checked_in_schema_is_current(name: str) -> None:
    checked_in = (ROOT / "schemas" / name).read_text()
    assert checked_in == render(SCHEMAS[name]), (
        f"schemas/{name} is stale: run `python -m locki.state.schemas schemas`"
    )


def test_written_state_carries_its_schema_and_validates(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "sandboxes.toml", tmp_path / "lock")
    with store.edit() as editor:
        editor.add("abcd1234", SandboxSpec(repo=Path("/r/x"), base="main", image="img"))
        editor.set_state("abcd1234", "removed", delete_branches=True)
    text = store.path.read_text()
    assert text.splitlines()[0] == "#:schema ./schemas/sandboxes.schema.json"
    schema = json.loads((tmp_path / "schemas" / "sandboxes.schema.json").read_text())
    jsonschema.validate(tomllib.loads(text), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"sandbox": {"abcd1234": {"repo": "/r"}}}, schema)


@pytest.mark.parametrize(
    ("name", "doc", "valid"),
    [
        ("locki-toml.schema.json", {"incus_image": "images:debian/12"}, True),
        ("locki-toml.schema.json", {"privileged": True}, False),
        ("config.schema.json", {"runtime": "incus", "incus": {"network": "br0"}}, True),
        ("config.schema.json", {"runtime": "docker"}, False),
    ],
)
def test_schemas_accept_and_reject_like_the_models(name: str, doc: dict[str, object],
                                                   valid: bool) -> None:
    schema = json.loads((ROOT / "schemas" / name).read_text())
    if valid:
        jsonschema.validate(doc, schema)
    else:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)
