"""Checking mappings against the live source database's catalog (``goldstream mappings check --live``).

The comparison is pure: the CLI queries ``information_schema.columns`` and ``pg_class`` and hands
the rows here, so the rules are unit-tested without a database.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.canonical.compile import Mapping
from flows.canonical.kinds import ColumnType

# PostgreSQL data_type -> the declarations that read it correctly under our Debezium settings.
_PG_TYPES: dict[str, frozenset[ColumnType]] = {
    "text": frozenset({ColumnType.TEXT}),
    "character varying": frozenset({ColumnType.TEXT}),
    "character": frozenset({ColumnType.TEXT}),
    "uuid": frozenset({ColumnType.UUID, ColumnType.TEXT}),
    "USER-DEFINED": frozenset({ColumnType.ENUM, ColumnType.TEXT}),
    "json": frozenset({ColumnType.JSON}),
    "jsonb": frozenset({ColumnType.JSON}),
    "numeric": frozenset({ColumnType.DECIMAL}),
    "smallint": frozenset({ColumnType.INT}),
    "integer": frozenset({ColumnType.INT}),
    "bigint": frozenset({ColumnType.INT}),
    "real": frozenset({ColumnType.FLOAT}),
    "double precision": frozenset({ColumnType.FLOAT}),
    "boolean": frozenset({ColumnType.BOOL}),
    "date": frozenset({ColumnType.DATE}),
    "timestamp with time zone": frozenset({ColumnType.TIMESTAMPTZ}),
}
_REPLICA_IDENTITY = {"f": "full", "d": "default", "i": "default", "n": "default"}

COLUMNS_SQL = """
SELECT column_name, data_type, datetime_precision
  FROM information_schema.columns
 WHERE table_schema = %s AND table_name = %s
 ORDER BY ordinal_position
"""
REPLICA_IDENTITY_SQL = """
SELECT c.relreplident
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = %s
"""


@dataclass(frozen=True)
class LiveColumn:
    """One row of ``information_schema.columns``."""

    name: str
    data_type: str
    datetime_precision: int | None = None


def expected_types(col: LiveColumn) -> frozenset[ColumnType]:
    """The column types a mapping may declare for a live column (empty: unsupported)."""
    if col.data_type == "timestamp without time zone":
        # time.precision.mode=adaptive: timestamp(0..3) arrives as millis, (4..6) as micros.
        precision = 6 if col.datetime_precision is None else col.datetime_precision
        return frozenset({ColumnType.TIMESTAMP_MS if precision <= 3 else ColumnType.TIMESTAMP})
    return _PG_TYPES.get(col.data_type, frozenset())


def compare(mapping: Mapping, columns: list[LiveColumn], relreplident: str | None) -> list[str]:
    """Problems between a mapping and its live table, one sentence each (empty: they agree)."""
    where = f"{mapping.path}: {mapping.database}.{mapping.schema}.{mapping.table}"
    if not columns or relreplident is None:
        return [f"{where}: table not found in the database"]
    problems = []
    live = {c.name: c for c in columns}
    for name, declared in mapping.columns.items():
        col = live.get(name)
        if col is None:
            problems.append(f"{where}: column {name!r} is declared but not in the table")
            continue
        allowed = expected_types(col)
        if declared not in allowed:
            want = " or ".join(sorted(allowed)) or "(unsupported type)"
            problems.append(
                f"{where}: column {name!r} is {col.data_type}: declare it as {want}, not {declared}"
            )
    for name in live:
        if name not in mapping.columns:
            problems.append(f"{where}: column {name!r} exists but is not declared (add it to source.columns)")
    actual = _REPLICA_IDENTITY.get(relreplident, "default")
    if actual != mapping.replica_identity:
        problems.append(
            f"{where}: replica identity is {actual} in the database, "
            f"the mapping says {mapping.replica_identity}"
        )
    return problems
