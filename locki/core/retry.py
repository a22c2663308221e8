"""Retrying transient failures, and nothing else.

Only `TransientError` is retried; attempts and elapsed time are both bounded and the
last real error is re-raised. The sleep is injectable so tests run without waiting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from locki.core.errors import TransientError

T = TypeVar("T")
log = structlog.get_logger("locki.retry")

MAX_ATTEMPTS = 5
MAX_SECONDS = 60.0


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "retry",
        attempt=state.attempt_number,
        max=MAX_ATTEMPTS,
        wait=round(state.next_action.sleep, 2) if state.next_action else None,
        cause=str(exc),
    )


async def retry_transient(
    fn: Callable[[], Awaitable[T]],
    *,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> T:
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(MAX_ATTEMPTS) | stop_after_delay(MAX_SECONDS),
        wait=wait_exponential(multiplier=0.25, max=5),
        sleep=sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
    return await retrying(fn)
