"""Database plumbing for the demo: connections, bulk COPY, identity sequences, the seed marker."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from cdc.demo.systems.base import Conn, Row, Table
from cdc.pg import admin_dsn
from core.settings import Settings

_MARKER_PREFIX = "goldstream demo seed "


def connect(settings: Settings, dbname: str) -> Conn:
    """A superuser connection to one source database (autocommit off)."""
    return psycopg.connect(admin_dsn(settings, dbname), application_name="goldstream-demo")


def copy_rows(conn: Conn, table: Table, rows: Iterable[Row]) -> int:
    """Bulk-load ``rows`` into ``table`` with COPY; returns the number of rows."""
    stmt = sql.SQL("COPY {t} ({cols}) FROM STDIN").format(
        t=table.ident(), cols=sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    )
    n = 0
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for row in rows:
            copy.write_row(table.values(row))
            n += 1
    return n


def sync_identity(conn: Conn, table: Table) -> None:
    """Move an identity sequence past the explicitly seeded ids, so DEFAULT inserts do not collide."""
    if table.identity is None:
        return
    conn.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence({name}, {col}), coalesce(max({c}), 0) + 1, false) FROM {t}"
        ).format(
            name=sql.Literal(table.qualified),
            col=sql.Literal(table.identity),
            c=sql.Identifier(table.identity),
            t=table.ident(),
        )
    )


def row_counts(conn: Conn, tables: Sequence[Table]) -> dict[str, int]:
    """Exact row count per table name."""
    out: dict[str, int] = {}
    for t in tables:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {t}").format(t=t.ident())).fetchone()
        out[t.name] = int(row[0]) if row else 0
    return out


def truncate(conn: Conn, tables: Sequence[Table]) -> None:
    """Empty the tables and restart their identities (Debezium sees a truncate)."""
    conn.execute(
        sql.SQL("TRUNCATE {ts} RESTART IDENTITY CASCADE").format(
            ts=sql.SQL(", ").join(t.ident() for t in tables)
        )
    )


def read_marker(conn: Conn) -> dict[str, Any] | None:
    """The seed parameters recorded on the current database, if it was seeded by us."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    text = row[0] if row else None
    if not text or not str(text).startswith(_MARKER_PREFIX):
        return None
    try:
        value = json.loads(str(text)[len(_MARKER_PREFIX) :])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def write_marker(conn: Conn, info: dict[str, Any]) -> None:
    """Record the seed parameters as the database comment, in the seeding transaction.

    A comment rather than a table: it is invisible to CDC and travels with the database.
    """
    dbname = conn.info.dbname
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {db} IS {text}").format(
            db=sql.Identifier(dbname), text=sql.Literal(_MARKER_PREFIX + json.dumps(info, sort_keys=True))
        )
    )


def keys_as_text(conn: Conn, table: Table) -> set[str]:
    """Every primary key of ``table`` in truth form (composite keys joined by ``|``)."""
    expr = sql.SQL("concat_ws('|', {cols})").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in table.key)
    )
    rows = conn.execute(sql.SQL("SELECT {e} FROM {t}").format(e=expr, t=table.ident())).fetchall()
    return {str(r[0]) for r in rows}
