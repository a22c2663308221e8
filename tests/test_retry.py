"""Only transient failures are retried, with bounded attempts and an injected sleep."""

from __future__ import annotations

import anyio
import pytest

from locki.core.errors import LockiError, TransientError
from locki.core.retry import MAX_ATTEMPTS, retry_transient


def test_transient_failures_are_retried_until_success() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("incusd busy")
        return "ok"

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    assert anyio.run(lambda: retry_transient(flaky, sleep=fake_sleep)) == "ok"
    assert len(calls) == 3
    assert len(sleeps) == 2


def test_permanent_failures_are_not_retried() -> None:
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise LockiError("image not found")

    async def no_sleep(seconds: float) -> None:
        raise AssertionError("must not sleep")

    with pytest.raises(LockiError, match="image not found"):
        anyio.run(lambda: retry_transient(broken, sleep=no_sleep))
    assert calls == [1]


def test_retries_stop_and_reraise_the_real_error() -> None:
    calls: list[int] = []

    async def always_busy() -> None:
        calls.append(1)
        raise TransientError(f"busy #{len(calls)}")

    async def fake_sleep(seconds: float) -> None:
        return None

    with pytest.raises(TransientError, match=f"busy #{MAX_ATTEMPTS}"):
        anyio.run(lambda: retry_transient(always_busy, sleep=fake_sleep))
    assert len(calls) == MAX_ATTEMPTS
