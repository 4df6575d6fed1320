"""Retrying transient failures with capped exponential backoff and jitter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from core.errors import TerminalError, TransientError

T = TypeVar("T")
log = logging.getLogger(__name__)


def retry_transient(
    fn: Callable[[], T],
    *,
    operation: str,
    deadline_s: float = 300.0,
    initial_s: float = 0.2,
    max_delay_s: float = 10.0,
    on_retry: Callable[[TransientError, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``fn`` until it succeeds, retrying :class:`TransientError` with backoff.

    Other exceptions propagate at once. When the deadline passes the last transient error is
    raised as a :class:`TerminalError`, so a dependency that stays down stops the job loudly
    instead of spinning forever.
    """
    end = clock() + deadline_s
    delay = initial_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except TransientError as exc:
            if on_retry is not None:
                on_retry(exc, attempt)
            wait = random.uniform(delay / 2, delay)
            if clock() + wait > end:
                raise TerminalError(f"{operation}: still failing after {attempt} attempts: {exc}") from exc
            log.warning("%s failed (attempt %d), retrying in %.1fs: %s", operation, attempt, wait, exc)
            sleep(wait)
            delay = min(delay * 2, max_delay_s)
