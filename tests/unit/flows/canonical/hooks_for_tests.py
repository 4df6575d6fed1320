"""Hooks used by the test mappings (referenced as ``tests.unit.flows.canonical.hooks_for_tests:...``)."""

from __future__ import annotations


def initials(first: str | None, last: str | None) -> str | None:
    """'Ada', 'Lovelace' -> 'A.L.'; fails (None) on names without a letter, raises on 'boom'."""
    if first == "boom":
        raise RuntimeError("hooks must not crash the flow")
    letters = [p[0] for p in (first, last) if p and p[0].isalpha()]
    return ".".join(letters) + "." if letters else None


def wrong_kind(value: str | None) -> object:
    """Returns an int where text is declared: a mapping failure, not a crash."""
    return 42


def two_args(a: str | None, b: str | None) -> str | None:
    """Needs exactly two arguments."""
    return a or b
