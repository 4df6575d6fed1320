"""`goldstream run`: start a dataflow."""

from __future__ import annotations


def run() -> None:
    """Run the bronze dataflow."""
    raise SystemExit("not implemented yet")
