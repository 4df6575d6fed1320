"""Schema drift: the source table no longer looks like its mapping says.

Debezium sends no DDL events, so drift shows up in the row images themselves: a column the mapping
does not declare (added), a declared column no image carries (removed), or a value whose JSON type
is not what the declared type produces (retyped, e.g. an ``int`` column that now holds strings).

What happens then is the mapping's ``options.drift`` policy:

========  ==================================================================================
evolve    (default) report; unknown columns and unreadable values are kept in the record's
          ``extras`` JSON column, so nothing is lost; the mapping can be updated later.
lenient   report; unknown columns are ignored, missing ones and unreadable values are null.
ignore    like ``lenient``, but nothing is reported.
fail      raise :class:`~core.errors.TerminalError` naming the table and the column(s).
========  ==================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.errors import TerminalError

Change = Literal["added", "removed", "retyped"]


@dataclass(frozen=True, order=True)
class DriftFinding:
    """One column that differs from the mapping, in one batch."""

    system: str
    schema: str
    table: str
    column: str
    change: Change
    expected: str | None
    """The declared column type (None for an added column)."""
    observed: str | None
    """For a retyped column the JSON types of its unreadable values (``string|number``); else None."""
    rows: int
    """Rows affected: holding the added column, lacking the removed one, or with an unreadable value."""
    policy: str
    action: str
    """What the engine did about it."""

    def message(self) -> str:
        """One line for logs and the quarantine detail."""
        what = {
            "added": f"new column {self.column!r}",
            "removed": f"column {self.column!r} missing",
            "retyped": f"column {self.column!r} is {self.observed}, mapping says {self.expected}",
        }[self.change]
        return f"{self.system}.{self.schema}.{self.table}: {what} in {self.rows} row(s); {self.action}"


ACTIONS: dict[tuple[str, Change], str] = {
    ("evolve", "added"): "kept in extras",
    ("evolve", "removed"): "mapped as null",
    ("evolve", "retyped"): "unreadable values null, kept in extras",
    ("lenient", "added"): "ignored",
    ("lenient", "removed"): "mapped as null",
    ("lenient", "retyped"): "unreadable values null",
    ("ignore", "added"): "ignored",
    ("ignore", "removed"): "mapped as null",
    ("ignore", "retyped"): "unreadable values null",
}


def apply_policy(findings: list[DriftFinding]) -> list[DriftFinding]:
    """Sorted findings for the result; raises for policy ``fail``; nothing for ``ignore``."""
    if not findings:
        return []
    policy = findings[0].policy
    if policy == "ignore":
        return []
    findings = sorted(findings)
    if policy == "fail":
        raise TerminalError(
            "schema drift with policy 'fail' (update the mapping, then restart): "
            + "; ".join(f.message() for f in findings)
        )
    return findings


def json_type_name(value: object) -> str:
    """The JSON type of a decoded value, for findings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
