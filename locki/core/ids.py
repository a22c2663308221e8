"""Random identifiers: sandbox ids and the installation id."""

from __future__ import annotations

import re
import secrets
import string

ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 8
SANDBOX_ID = re.compile(r"^[a-z0-9]{8}$")


def new_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH))


def is_sandbox_id(value: str) -> bool:
    return SANDBOX_ID.fullmatch(value) is not None
