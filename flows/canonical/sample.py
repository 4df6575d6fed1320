"""Bronze-shaped change rows built from plain Python rows, as Debezium would have written them.

For tests, benchmarks and experiments: a row as the source database holds it (``date``,
``datetime``, ``Decimal``, ``UUID``, dicts for jsonb) becomes the JSON text our Debezium settings
produce (days since epoch, wall-clock micros, ISO strings, decimal strings, JSON-in-a-string), and a
list of such changes becomes the ``events`` frame :func:`flows.canonical.map_batch` takes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from collections.abc import Mapping as AbstractMapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import polars as pl

from flows.canonical.compile import Mapping
from flows.canonical.kinds import ColumnType

_EPOCH_DAY = dt.date(1970, 1, 1)
_EPOCH = dt.datetime(1970, 1, 1)

EVENT_SCHEMA = pl.Schema(
    {
        "system": pl.String(),
        "db": pl.String(),
        "schema": pl.String(),
        "table": pl.String(),
        "op": pl.String(),
        "key": pl.String(),
        "before": pl.String(),
        "after": pl.String(),
        "lsn": pl.Int64(),
        "tx_id": pl.Int64(),
        "source_ts": pl.Datetime("us", "UTC"),
        "snapshot": pl.String(),
        "topic": pl.String(),
        "partition": pl.Int32(),
        "offset": pl.Int64(),
    }
)


def _micros(value: dt.datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def debezium_value(ctype: ColumnType, value: Any) -> Any:
    """One column value as Debezium's JSON converter writes it for ``ctype``."""
    if value is None:
        return None
    if ctype == ColumnType.DATE and isinstance(value, dt.date):
        return (value - _EPOCH_DAY).days
    if ctype in (ColumnType.TIMESTAMP, ColumnType.TIMESTAMP_MS) and isinstance(value, dt.datetime):
        naive = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
        us = _micros(naive)
        return us if ctype == ColumnType.TIMESTAMP else us // 1000
    if ctype == ColumnType.TIMESTAMPTZ and isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if ctype == ColumnType.JSON and not isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Decimal | UUID):
        return str(value)
    return value


def image_json(mapping: Mapping, row: AbstractMapping[str, Any]) -> str:
    """The ``after``/``before`` JSON of ``row`` (declared columns; missing ones null)."""
    doc = {c: debezium_value(t, row.get(c)) for c, t in mapping.columns.items()}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def key_json(mapping: Mapping, row: AbstractMapping[str, Any]) -> str:
    """The message key JSON of ``row``."""
    doc = {c: debezium_value(mapping.columns[c], row.get(c)) for c in mapping.key}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Change:
    """One change to turn into an event row (texts given verbatim, else built from ``row``)."""

    op: str
    row: AbstractMapping[str, Any] | None = None
    key: str | None = None
    before: str | None = None
    after: str | None = None


def events_frame(mapping: Mapping, changes: Iterable[Change], *, first_offset: int = 0) -> pl.DataFrame:
    """Bronze event rows for ``changes`` of ``mapping``'s table, offsets and LSNs ascending."""
    out: list[dict[str, Any]] = []
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for i, ch in enumerate(changes):
        row = ch.row or {}
        key = ch.key if ch.key is not None or ch.op == "t" or not row else key_json(mapping, row)
        after = (
            ch.after if ch.after is not None or ch.op in ("d", "t") or not row else image_json(mapping, row)
        )
        out.append(
            {
                "system": mapping.system,
                "db": mapping.database,
                "schema": mapping.schema,
                "table": mapping.table,
                "op": ch.op,
                "key": key,
                "before": ch.before,
                "after": after,
                "lsn": 1_000 + i,
                "tx_id": 500 + i,
                "source_ts": base + dt.timedelta(seconds=i),
                "snapshot": "true" if ch.op == "r" else "false",
                "topic": f"{mapping.system}.{mapping.schema}.{mapping.table}",
                "partition": 0,
                "offset": first_offset + i,
            }
        )
    return pl.DataFrame(out, schema=EVENT_SCHEMA, orient="row") if out else pl.DataFrame(schema=EVENT_SCHEMA)
