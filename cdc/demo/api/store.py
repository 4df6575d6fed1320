"""Storage for the demo APIs: PostgreSQL (the real thing) and an in-memory double for unit tests.

Both implement :class:`Store`: a transaction per call, tagged with the writing client, offering a few
row operations on the tables described by :class:`ResourceSpec`. The semantics that matter for
clients (ETags, no-op upserts, batches) live above this, in :mod:`cdc.demo.api.resources`, so the two
stores only have to agree on these primitives:

* every row carries ``external_id`` (unique, nullable), ``version`` and ``last_modified_by``;
* an insert sets ``version = 1``; every update, by anyone, increments it;
* every insert or update sets ``last_modified_by`` to the API client that wrote it, or to
  ``db:<database user>`` for a write that did not come through the API (load generator, psql).

In PostgreSQL the last two are a ``BEFORE INSERT OR UPDATE`` trigger, so a user's direct edit can
never keep goldstream's marker from an earlier API write (the inbound flow would take the user's
change for its own echo and drop it). The API passes its client id to the trigger in the
transaction-local setting ``demo_api.modified_by``.
"""

from __future__ import annotations

import contextlib
import copy
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, LiteralString, Protocol

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from cdc.demo.api.common import ConflictError, UnavailableError, UnprocessableError

Row = dict[str, Any]

META_COLUMNS = ("external_id", "version", "last_modified_by")
MODIFIED_BY_SETTING = "demo_api.modified_by"
TRIGGER = "demo_api_row_meta"


@dataclass(frozen=True, slots=True)
class Generated:
    """A value the store fills in itself: a SQL expression, and the same thing in Python (memory store)."""

    sql: LiteralString
    python: Callable[[], Any]


@dataclass(frozen=True)
class ResourceSpec:
    """One table exposed as an API resource."""

    name: str  # URL segment: "accounts"
    schema: str
    table: str
    key: str  # primary key column (single)
    parse_key: Callable[[str], Any]  # path text -> key value; ValueError means "no such record"
    columns: tuple[str, ...]  # every business column, key first; META_COLUMNS come on top
    required: tuple[str, ...] = ()  # needed to create a record
    not_null: frozenset[str] = frozenset()  # may never be set to null
    create_defaults: Mapping[str, Any] = field(default_factory=dict)  # the table's DEFAULTs, made explicit
    on_insert: Mapping[str, Generated] = field(default_factory=dict)  # key, created dates
    on_update: Mapping[str, Generated] = field(default_factory=dict)  # updated_at / changed_at
    references: Mapping[str, str] = field(default_factory=dict)  # column -> referenced spec name
    status: tuple[str, Any, Any] | None = None  # (column, active value, inactive value)
    ddl: tuple[LiteralString, ...] = ()  # extra idempotent DDL (a number-range sequence)

    @property
    def all_columns(self) -> tuple[str, ...]:
        """Business columns plus the API's metadata columns."""
        return (*self.columns, *META_COLUMNS)

    @property
    def qualified(self) -> str:
        """``schema.table``."""
        return f"{self.schema}.{self.table}"


class Tx(Protocol):
    """Row operations inside one transaction."""

    def get(self, spec: ResourceSpec, key: Any, *, lock: bool = False) -> Row | None:
        """The row with primary key ``key``."""
        ...

    def find(self, spec: ResourceSpec, column: str, value: Any, *, lock: bool = False) -> Row | None:
        """The row whose unique ``column`` equals ``value``."""
        ...

    def find_all(
        self, spec: ResourceSpec, column: str, values: Sequence[Any], *, lock: bool = False
    ) -> dict[Any, Row]:
        """The rows whose unique ``column`` is one of ``values``, by that value (absent: no row).

        With ``lock`` the rows are locked in primary-key order, as concurrent batches must.
        """
        ...

    def insert(self, spec: ResourceSpec, values: Row) -> Row:
        """Insert ``values`` (plus ``spec.on_insert``); the stored row."""
        ...

    def update(self, spec: ResourceSpec, key: Any, values: Row) -> Row:
        """Set ``values`` (plus ``spec.on_update``) on the row ``key``; the stored row."""
        ...

    def delete(self, spec: ResourceSpec, key: Any) -> bool:
        """Delete the row ``key`` (children cascade); False if there was none."""
        ...

    def page_after(self, spec: ResourceSpec, after: Any | None, limit: int) -> list[Row]:
        """Up to ``limit`` rows with keys greater than ``after``, in key order."""
        ...

    def page_offset(self, spec: ResourceSpec, offset: int, limit: int) -> tuple[list[Row], int]:
        """Rows ``offset .. offset+limit`` in key order, and the total count."""
        ...

    def repoint(self, table: str, column: str, old: Any, new: Any) -> int:
        """``UPDATE table SET column = new WHERE column = old``; the number of rows changed."""
        ...


class Store(Protocol):
    """A database behind one API."""

    def transaction(self, modified_by: str) -> contextlib.AbstractContextManager[Tx]:
        """One transaction whose writes are recorded as made by ``modified_by``."""
        ...

    def ping(self) -> bool:
        """True if the database answers."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# --- PostgreSQL -----------------------------------------------------------------------------------


def _adapt(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict | list) else value


def _cols(spec: ResourceSpec) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in spec.all_columns)


def _ident(spec: ResourceSpec) -> sql.Identifier:
    return sql.Identifier(spec.schema, spec.table)


Conn = psycopg.Connection[DictRow]


#: Statements as sent, by shape (encoding, table, operation, columns). Composing them with
#: ``psycopg.sql`` on every call was about a fifth of a batch upsert's CPU time in the API process.
_STATEMENTS: dict[tuple[Any, ...], bytes] = {}
_STATEMENTS_MAX = 4096  # shapes are few (column sets clients write); a bound all the same


class PgTx:
    """:class:`Tx` on one PostgreSQL connection inside a transaction."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def _statement(self, shape: tuple[Any, ...], build: Callable[[], sql.Composed]) -> bytes:
        key = (self._conn.info.encoding, *shape)
        statement = _STATEMENTS.get(key)
        if statement is None:
            if len(_STATEMENTS) >= _STATEMENTS_MAX:
                _STATEMENTS.clear()
            statement = _STATEMENTS[key] = build().as_bytes(self._conn)
        return statement

    def _one(self, query: bytes, params: Sequence[Any]) -> Row | None:
        row = self._conn.execute(query, params).fetchone()
        return dict(row) if row is not None else None

    def get(self, spec: ResourceSpec, key: Any, *, lock: bool = False) -> Row | None:
        """The row with primary key ``key``."""
        return self.find(spec, spec.key, key, lock=lock)

    def find(self, spec: ResourceSpec, column: str, value: Any, *, lock: bool = False) -> Row | None:
        """The row whose unique ``column`` equals ``value``."""
        query = self._statement(
            (spec.qualified, "find", column, lock),
            lambda: sql.SQL("SELECT {cols} FROM {t} WHERE {c} = %s{lock}").format(
                cols=_cols(spec),
                t=_ident(spec),
                c=sql.Identifier(column),
                lock=sql.SQL(" FOR UPDATE" if lock else ""),
            ),
        )
        return self._one(query, (value,))

    def find_all(
        self, spec: ResourceSpec, column: str, values: Sequence[Any], *, lock: bool = False
    ) -> dict[Any, Row]:
        """The rows whose unique ``column`` is one of ``values``, by that value: one statement."""
        if not values:
            return {}
        query = self._statement(
            (spec.qualified, "find_all", column, lock),
            lambda: sql.SQL("SELECT {cols} FROM {t} WHERE {c} = ANY(%s) ORDER BY {k}{lock}").format(
                cols=_cols(spec),
                t=_ident(spec),
                c=sql.Identifier(column),
                k=sql.Identifier(spec.key),
                lock=sql.SQL(" FOR UPDATE" if lock else ""),
            ),
        )
        rows = self._conn.execute(query, (list(values),)).fetchall()
        return {row[column]: dict(row) for row in rows}

    def insert(self, spec: ResourceSpec, values: Row) -> Row:
        """Insert ``values`` (plus ``spec.on_insert``); the stored row."""

        def build() -> sql.Composed:
            generated = {c: g for c, g in spec.on_insert.items() if c not in values}
            names = [*values, *generated]
            exprs: list[sql.Composable] = [sql.Placeholder() for _ in values]
            exprs += [sql.SQL(g.sql) for g in generated.values()]
            return sql.SQL("INSERT INTO {t} ({names}) VALUES ({exprs}) RETURNING {cols}").format(
                t=_ident(spec),
                names=sql.SQL(", ").join(sql.Identifier(n) for n in names),
                exprs=sql.SQL(", ").join(exprs),
                cols=_cols(spec),
            )

        query = self._statement((spec.qualified, "insert", *values), build)
        row = self._one(query, [_adapt(v) for v in values.values()])
        assert row is not None
        return row

    def update(self, spec: ResourceSpec, key: Any, values: Row) -> Row:
        """Set ``values`` (plus ``spec.on_update``) on the row ``key``; the stored row."""

        def build() -> sql.Composed:
            sets = [sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values]
            sets += [
                sql.SQL("{} = {}").format(sql.Identifier(c), sql.SQL(g.sql))
                for c, g in spec.on_update.items()
                if c not in values
            ]
            return sql.SQL("UPDATE {t} SET {sets} WHERE {k} = %s RETURNING {cols}").format(
                t=_ident(spec), sets=sql.SQL(", ").join(sets), k=sql.Identifier(spec.key), cols=_cols(spec)
            )

        query = self._statement((spec.qualified, "update", *values), build)
        row = self._one(query, [*(_adapt(v) for v in values.values()), key])
        if row is None:
            raise UnprocessableError(f"{spec.name} {key} disappeared during the update")
        return row

    def delete(self, spec: ResourceSpec, key: Any) -> bool:
        """Delete the row ``key`` (children cascade)."""
        cur = self._conn.execute(
            sql.SQL("DELETE FROM {t} WHERE {k} = %s").format(t=_ident(spec), k=sql.Identifier(spec.key)),
            (key,),
        )
        return cur.rowcount > 0

    def page_after(self, spec: ResourceSpec, after: Any | None, limit: int) -> list[Row]:
        """Up to ``limit`` rows with keys greater than ``after``, in key order."""
        where = (
            sql.SQL("WHERE {k} > %s").format(k=sql.Identifier(spec.key)) if after is not None else sql.SQL("")
        )
        query = sql.SQL("SELECT {cols} FROM {t} {where} ORDER BY {k} LIMIT %s").format(
            cols=_cols(spec), t=_ident(spec), where=where, k=sql.Identifier(spec.key)
        )
        params = (after, limit) if after is not None else (limit,)
        return [dict(r) for r in self._conn.execute(query, params).fetchall()]

    def page_offset(self, spec: ResourceSpec, offset: int, limit: int) -> tuple[list[Row], int]:
        """Rows ``offset .. offset+limit`` in key order, and the total count."""
        query = sql.SQL("SELECT {cols} FROM {t} ORDER BY {k} OFFSET %s LIMIT %s").format(
            cols=_cols(spec), t=_ident(spec), k=sql.Identifier(spec.key)
        )
        rows = [dict(r) for r in self._conn.execute(query, (offset, limit)).fetchall()]
        total = self._conn.execute(sql.SQL("SELECT count(*) AS n FROM {t}").format(t=_ident(spec))).fetchone()
        return rows, int(total["n"]) if total else 0

    def repoint(self, table: str, column: str, old: Any, new: Any) -> int:
        """``UPDATE table SET column = new WHERE column = old``."""
        schema, _, name = table.partition(".")
        cur = self._conn.execute(
            sql.SQL("UPDATE {t} SET {c} = %s WHERE {c} = %s").format(
                t=sql.Identifier(schema, name), c=sql.Identifier(column)
            ),
            (new, old),
        )
        return cur.rowcount


class _Pool:
    """A few autocommit connections, handed out one per transaction (psycopg_pool is not a dependency)."""

    def __init__(self, connect: Callable[[], Conn], size: int, timeout: float) -> None:
        self._connect = connect
        self._idle: queue.LifoQueue[Conn] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._timeout = timeout

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Conn]:
        if not self._slots.acquire(timeout=self._timeout if timeout is None else timeout):
            raise UnavailableError("all database connections are busy", headers={"Retry-After": "1"})
        conn: Conn | None = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            yield conn
        finally:
            if conn is not None:
                idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                if conn.closed or conn.broken or not idle:
                    conn.close()
                else:
                    self._idle.put(conn)
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _translate(exc: psycopg.Error) -> Exception:
    """A database error as the API error a client should see (no row values in the message)."""
    diag = exc.diag
    message = diag.message_primary or type(exc).__name__
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return ConflictError(f"duplicate value: {message}", details={"constraint": diag.constraint_name})
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return UnprocessableError(
            "the record references a record that does not exist", details={"constraint": diag.constraint_name}
        )
    if isinstance(exc, psycopg.errors.IntegrityError | psycopg.errors.DataError):
        return UnprocessableError(message)
    if isinstance(
        exc,
        psycopg.errors.DeadlockDetected
        | psycopg.errors.SerializationFailure
        | psycopg.errors.LockNotAvailable,
    ):
        return UnavailableError(f"concurrent update, retry: {message}", headers={"Retry-After": "1"})
    return UnavailableError(f"database error: {message}", headers={"Retry-After": "5"})


class PgStore:
    """:class:`Store` on one PostgreSQL database (the demo system's own), through a small pool."""

    def __init__(
        self, dsn: str, *, pool_size: int = 4, application_name: str = "goldstream-demo-api"
    ) -> None:
        def connect() -> Conn:
            try:
                return psycopg.connect(
                    dsn,
                    autocommit=True,
                    row_factory=dict_row,
                    application_name=application_name,
                    connect_timeout=5,
                    # A stuck lock must not hold an HTTP call (and a pool slot) forever.
                    options="-c lock_timeout=5s -c statement_timeout=30s",
                )
            except psycopg.OperationalError as exc:
                raise UnavailableError("database unreachable", headers={"Retry-After": "5"}) from exc

        self._pool = _Pool(connect, pool_size, timeout=10.0)

    @contextlib.contextmanager
    def transaction(self, modified_by: str) -> Iterator[Tx]:
        """One transaction; the trigger records ``modified_by`` on every row it writes."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT set_config(%s, %s, true)", (MODIFIED_BY_SETTING, modified_by))
                yield PgTx(conn)
        except psycopg.Error as exc:
            raise _translate(exc) from exc

    def ping(self) -> bool:
        """``SELECT 1`` within two seconds."""
        try:
            with self._pool.connection(timeout=2.0) as conn:
                conn.execute("SELECT 1")
        except (psycopg.Error, UnavailableError):
            return False
        return True

    def close(self) -> None:
        """Close idle connections."""
        self._pool.close()


def _row_meta_function(schema: str) -> sql.Composed:
    return sql.SQL(
        """CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    -- goldstream demo API: every write bumps the version and records its writer (see cdc/demo/api/store.py).
    IF TG_OP = 'UPDATE' THEN
        NEW.version := OLD.version + 1;
    ELSE
        NEW.version := 1;
    END IF;
    NEW.last_modified_by := coalesce(nullif(current_setting({setting}, true), ''), 'db:' || session_user);
    RETURN NEW;
END
$fn$"""
    ).format(fn=sql.Identifier(schema, TRIGGER), setting=sql.Literal(MODIFIED_BY_SETTING))


def ensure_schema(conn: psycopg.Connection[Any], specs: Sequence[ResourceSpec]) -> list[str]:
    """Add what the API needs to the source tables, idempotently; returns what it changed.

    Additive only: ``external_id text UNIQUE``, ``version integer NOT NULL DEFAULT 1``,
    ``last_modified_by text``, the row-meta trigger, and each spec's extra DDL. Existing columns and
    triggers are detected first, so a restart takes no table locks. Needs the table owner (superuser).
    """
    changed: list[str] = []
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '15s'")
        for spec in specs:
            for statement in spec.ddl:
                conn.execute(statement)
            have = {
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s",
                    (spec.schema, spec.table),
                )
            }
            if not have:
                raise UnavailableError(f"table {spec.qualified} does not exist (is the demo schema applied?)")
            if not set(META_COLUMNS) <= have:
                conn.execute(
                    sql.SQL(
                        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS external_id text UNIQUE, "
                        "ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1, "
                        "ADD COLUMN IF NOT EXISTS last_modified_by text"
                    ).format(t=_ident(spec))
                )
                changed.append(
                    f"{spec.qualified}: added {', '.join(c for c in META_COLUMNS if c not in have)}"
                )
            conn.execute(_row_meta_function(spec.schema))
            exists = conn.execute(
                "SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s",
                (spec.qualified, TRIGGER),
            ).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL(
                        "CREATE TRIGGER {trg} BEFORE INSERT OR UPDATE ON {t} "
                        "FOR EACH ROW EXECUTE FUNCTION {fn}()"
                    ).format(
                        trg=sql.Identifier(TRIGGER), t=_ident(spec), fn=sql.Identifier(spec.schema, TRIGGER)
                    )
                )
                changed.append(f"{spec.qualified}: trigger {TRIGGER}")
    return changed


# --- in memory ------------------------------------------------------------------------------------


class MemoryStore:
    """:class:`Store` in a dict, with the PostgreSQL store's semantics (see the module docstring).

    For unit tests of the API and of its clients (``httpx.ASGITransport``/``TestClient`` on the real
    app, no database). Transactions are serial and roll back on any exception. Foreign keys between
    specs (``references``) are checked and cascade on delete; other tables (``repoint`` targets) are
    plain row lists in :attr:`extra`.
    """

    def __init__(self, specs: Sequence[ResourceSpec]) -> None:
        self.specs = {s.name: s for s in specs}
        self.tables: dict[str, dict[Any, Row]] = {s.name: {} for s in specs}
        self.extra: dict[str, list[Row]] = {}
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self, modified_by: str) -> Iterator[Tx]:
        """A serial transaction, rolled back on any exception."""
        with self._lock:
            saved = copy.deepcopy((self.tables, self.extra))
            try:
                yield _MemoryTx(self, modified_by)
            except BaseException:
                self.tables, self.extra = saved
                raise

    def seed(self, spec: ResourceSpec, values: Row, *, modified_by: str = "db:test") -> Row:
        """Insert a row as if written directly to the database (not through the API)."""
        with self.transaction(modified_by) as tx:
            return tx.insert(spec, {**copy.deepcopy(dict(spec.create_defaults)), **values})

    def edit(self, spec: ResourceSpec, key: Any, values: Row, *, modified_by: str = "db:test") -> Row:
        """Update a row as a direct database edit would (version bump, writer recorded)."""
        with self.transaction(modified_by) as tx:
            return tx.update(spec, key, values)

    def ping(self) -> bool:
        """Always reachable."""
        return True

    def close(self) -> None:
        """Nothing to release."""


class _MemoryTx:
    def __init__(self, store: MemoryStore, modified_by: str) -> None:
        self._s = store
        self._by = modified_by

    def get(self, spec: ResourceSpec, key: Any, *, lock: bool = False) -> Row | None:
        row = self._s.tables[spec.name].get(key)
        return copy.deepcopy(row) if row is not None else None

    def find(self, spec: ResourceSpec, column: str, value: Any, *, lock: bool = False) -> Row | None:
        for row in self._s.tables[spec.name].values():
            if row.get(column) == value:
                return copy.deepcopy(row)
        return None

    def find_all(
        self, spec: ResourceSpec, column: str, values: Sequence[Any], *, lock: bool = False
    ) -> dict[Any, Row]:
        wanted = set(values)
        return {
            row[column]: copy.deepcopy(row)
            for row in self._s.tables[spec.name].values()
            if row.get(column) in wanted
        }

    def _check(self, spec: ResourceSpec, row: Row) -> None:
        for column in spec.not_null | {spec.key, "version"}:
            if row.get(column) is None:
                raise UnprocessableError(f'null value in column "{column}" of relation "{spec.table}"')
        ext = row.get("external_id")
        if ext is not None:
            for other in self._s.tables[spec.name].values():
                if other.get("external_id") == ext and other[spec.key] != row[spec.key]:
                    constraint = f"{spec.table}_external_id_key"
                    raise ConflictError(
                        f'duplicate value: duplicate key value violates unique constraint "{constraint}"',
                        details={"constraint": constraint},
                    )
        for column, target in spec.references.items():
            if row.get(column) is not None and row[column] not in self._s.tables[target]:
                raise UnprocessableError("the record references a record that does not exist")

    def insert(self, spec: ResourceSpec, values: Row) -> Row:
        row: Row = dict.fromkeys(spec.all_columns)
        row.update(copy.deepcopy(values))
        for column, gen in spec.on_insert.items():
            if column not in values:
                row[column] = gen.python()
        row["version"] = 1
        row["last_modified_by"] = self._by
        if row.get(spec.key) in self._s.tables[spec.name]:
            raise ConflictError(f"duplicate value: {spec.table}_pkey")
        self._check(spec, row)
        self._s.tables[spec.name][row[spec.key]] = row
        return copy.deepcopy(row)

    def update(self, spec: ResourceSpec, key: Any, values: Row) -> Row:
        current = self._s.tables[spec.name].get(key)
        if current is None:
            raise UnprocessableError(f"{spec.name} {key} disappeared during the update")
        row = {**current, **copy.deepcopy(values)}
        for column, gen in spec.on_update.items():
            if column not in values:
                row[column] = gen.python()
        row["version"] = current["version"] + 1
        row["last_modified_by"] = self._by
        self._check(spec, row)
        self._s.tables[spec.name][key] = row
        return copy.deepcopy(row)

    def delete(self, spec: ResourceSpec, key: Any) -> bool:
        if self._s.tables[spec.name].pop(key, None) is None:
            return False
        for child in self._s.specs.values():  # ON DELETE CASCADE
            for column, target in child.references.items():
                if target == spec.name:
                    for k in [k for k, r in self._s.tables[child.name].items() if r.get(column) == key]:
                        self.delete(child, k)
        return True

    def page_after(self, spec: ResourceSpec, after: Any | None, limit: int) -> list[Row]:
        keys = sorted(k for k in self._s.tables[spec.name] if after is None or k > after)
        return [copy.deepcopy(self._s.tables[spec.name][k]) for k in keys[:limit]]

    def page_offset(self, spec: ResourceSpec, offset: int, limit: int) -> tuple[list[Row], int]:
        keys = sorted(self._s.tables[spec.name])
        return [copy.deepcopy(self._s.tables[spec.name][k]) for k in keys[offset : offset + limit]], len(keys)

    def repoint(self, table: str, column: str, old: Any, new: Any) -> int:
        for spec in self._s.specs.values():
            if spec.qualified == table:
                keys = [k for k, r in self._s.tables[spec.name].items() if r.get(column) == old]
                for k in keys:
                    self.update(spec, k, {column: new})
                return len(keys)
        rows = [r for r in self._s.extra.get(table, []) if r.get(column) == old]
        for r in rows:
            r[column] = new
        return len(rows)
