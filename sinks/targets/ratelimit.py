"""Client-side token bucket, so a target's rate limit is respected before it answers 429."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; one request costs one token.

    ``rate <= 0`` means unlimited. :meth:`hold` empties the bucket until a moment (a ``Retry-After``
    from the target applies to every request of this client, not just the one that got it).
    Thread-safe; :meth:`acquire` sleeps outside the lock.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._at = clock()
        self._hold_until = 0.0
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now

    def try_acquire(self) -> float:
        """Take a token and return 0, or return how long to wait before trying again."""
        with self._lock:
            now = self._clock()
            if now < self._hold_until:
                return self._hold_until - now
            if self.rate <= 0:
                return 0.0
            self._refill(now)
            # Tolerance: refills are float products; 0.9999999 tokens after the computed wait is one.
            if self._tokens >= 1.0 - 1e-6:
                self._tokens = max(0.0, self._tokens - 1.0)
                return 0.0
            return (1.0 - self._tokens) / self.rate

    def acquire(self) -> float:
        """Take a token, sleeping as needed; returns the seconds slept."""
        waited = 0.0
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return waited
            self._sleep(wait)
            waited += wait

    def hold(self, seconds: float) -> None:
        """Hand out no token for ``seconds`` from now (the target said ``Retry-After``)."""
        with self._lock:
            now = self._clock()
            self._hold_until = max(self._hold_until, now + seconds)
            self._tokens = 0.0
            self._at = max(self._at, self._hold_until)
