"""The three failure classes every goldstream component raises.

Every failure is classified so the caller knows what to do with it:

* :class:`TransientError` -- worth retrying with backoff (a broker not reachable yet, a commit race).
* :class:`TerminalError` -- retrying cannot help; stop and tell the operator (bad config, lost data).
* :class:`InvalidInputError` -- one input record is bad; send it to the dead-letter path with the
  reason and its source position, and keep going.
"""

from __future__ import annotations


class GoldstreamError(Exception):
    """Base class of all goldstream errors."""


class TransientError(GoldstreamError):
    """A failure that may succeed when retried later."""


class TerminalError(GoldstreamError):
    """A failure that retrying cannot fix; the operation must stop."""


class ConfigError(TerminalError):
    """Configuration is missing or invalid. The message names the file and the key path."""


class InvalidInputError(GoldstreamError):
    """A single input record cannot be processed; it belongs in quarantine, not in a crash."""

    def __init__(self, reason: str, *, detail: str = "") -> None:
        super().__init__(reason if not detail else f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
