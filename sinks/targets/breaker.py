"""A circuit breaker per target: stop sending (and consuming) while the target is down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from core.metrics import TARGET_BREAKER_STATE

BreakerState = Literal["closed", "open", "half_open"]
_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` consecutive failures; open -> half-open after the
    reset timeout (one probe may go); a failed probe re-opens with the timeout doubled (up to
    ``max_reset_timeout_s``), a successful one closes it.

    Failures here are whole requests that still failed after the client's own retries, so an open
    breaker means "the target is down", not "one record was bad".
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 5.0,
        max_reset_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._base_timeout = reset_timeout_s
        self._max_timeout = max(max_reset_timeout_s, reset_timeout_s)
        self._timeout = reset_timeout_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()
        self._gauge = TARGET_BREAKER_STATE.labels(target=name)
        self._gauge.set(0)

    @property
    def state(self) -> BreakerState:
        """The current state (open turns half-open by itself when the timeout has passed)."""
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._timeout:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a request go now? (closed, or half-open for the probe)."""
        return self.state != "open"

    def retry_in(self) -> float:
        """Seconds until a probe may go (0 when closed or half-open)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self._opened_at + self._timeout - self._clock())

    def record_success(self) -> None:
        """A request went through: close."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._timeout = self._base_timeout
        self._gauge.set(_STATE_VALUE["closed"])

    def record_failure(self) -> None:
        """A request failed (after retries): count it; open at the threshold or on a failed probe."""
        with self._lock:
            state = self._state_locked()
            self._failures += 1
            if state == "half_open":
                self._timeout = min(self._timeout * 2, self._max_timeout)
                self._opened_at = self._clock()
            elif state == "closed" and self._failures >= self._threshold:
                self._opened_at = self._clock()
        self._gauge.set(_STATE_VALUE[self.state])
