"""What every demo source system provides: its tables, seed rows, and load-generator operations."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, LiteralString, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from cdc.demo.truth import TruthRow, source_key
from cdc.demo.world import Person

Row = dict[str, Any]
K = TypeVar("K", bound=Hashable)
Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Table:
    """One source table: its columns in COPY order, primary key, and identity column if any."""

    schema: str
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    identity: str | None = None  # sequence to move past explicitly seeded ids

    @property
    def qualified(self) -> str:
        """``schema.name`` for messages."""
        return f"{self.schema}.{self.name}"

    def ident(self) -> sql.Identifier:
        """The table as a quoted SQL identifier."""
        return sql.Identifier(self.schema, self.name)

    def key_of(self, row: Row) -> str:
        """The row's primary key as truth text."""
        return source_key(*(row[c] for c in self.key))

    def values(self, row: Row) -> tuple[Any, ...]:
        """The row's values in column order, JSON documents wrapped for jsonb."""
        return tuple(Jsonb(v) if isinstance(v, dict | list) else v for v in (row[c] for c in self.columns))

    def insert_sql(self) -> LiteralString:
        """``INSERT INTO schema.table (all columns) VALUES (%s, ...)``."""
        cols = ", ".join(self.columns)
        marks = ", ".join(["%s"] * len(self.columns))
        return f"INSERT INTO {self.schema}.{self.name} ({cols}) VALUES ({marks})"


@dataclass
class SeedData:
    """Rows to COPY per table (dicts keyed by column) plus the truth they carry."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    truth: list[TruthRow] = field(default_factory=list)

    def add(self, table: Table, row: Row, person_id: str | None = None, *, system: str = "") -> None:
        """Queue ``row`` for ``table``; with ``person_id``, record whose row it is."""
        self.rows.setdefault(table.name, []).append(row)
        if person_id is not None:
            self.truth.append(TruthRow(system, table.schema, table.name, table.key_of(row), person_id))


Op = str  # 'insert' | 'update' | 'delete'


@dataclass(frozen=True, slots=True)
class Stmt:
    """One row-level change the load generator sends: counted as one event."""

    table: str
    op: Op
    sql: LiteralString
    params: tuple[Any, ...]


class KeyPool(Generic[K]):
    """Live primary keys of one table: O(1) random pick, add, remove and rename.

    Optionally indexes children by parent key so a cascading delete can forget them too.
    """

    def __init__(self) -> None:
        self._keys: list[K] = []
        self._pos: dict[K, int] = {}
        self._parent: dict[K, Hashable] = {}
        self._children: dict[Hashable, set[K]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._pos

    def add(self, key: K, parent: Hashable | None = None) -> None:
        """Track a new key (idempotent)."""
        if key in self._pos:
            return
        self._pos[key] = len(self._keys)
        self._keys.append(key)
        if parent is not None:
            self._parent[key] = parent
            self._children.setdefault(parent, set()).add(key)

    def remove(self, key: K) -> None:
        """Forget a key (no-op if unknown)."""
        pos = self._pos.pop(key, None)
        if pos is None:
            return
        last = self._keys.pop()
        if last != key:
            self._keys[pos] = last
            self._pos[last] = pos
        parent = self._parent.pop(key, None)
        if parent is not None:
            self._children.get(parent, set()).discard(key)

    def remove_children(self, parent: Hashable) -> None:
        """Forget every key whose parent is ``parent`` (after ON DELETE CASCADE)."""
        for key in list(self._children.pop(parent, ())):
            self.remove(key)

    def children_of(self, parent: Hashable) -> frozenset[K]:
        """The keys recorded under ``parent``."""
        return frozenset(self._children.get(parent, ()))

    def reparent_children(self, old: Hashable, new: Hashable) -> None:
        """Move every child of ``old`` under ``new`` (after ON UPDATE CASCADE of a parent key)."""
        moved = self._children.pop(old, set())
        for key in moved:
            self._parent[key] = new
        if moved:
            self._children.setdefault(new, set()).update(moved)

    def rename(self, old: K, new: K) -> None:
        """Replace a key, keeping its parent."""
        parent = self._parent.get(old)
        self.remove(old)
        self.add(new, parent)

    def pick(self, rng: random.Random) -> K | None:
        """A random live key, or None if the pool is empty."""
        return self._keys[rng.randrange(len(self._keys))] if self._keys else None

    def parent_of(self, key: K) -> Hashable | None:
        """The parent recorded with ``key``."""
        return self._parent.get(key)


class IdBlocks:
    """Hands out ids from a table's identity sequence in blocks, one round trip per block.

    The load generator needs new ids before it sends the INSERTs (child rows reference them), and
    asking the sequence keeps it consistent with anyone else inserting with DEFAULT.
    """

    def __init__(self, conn: Conn, table: Table, block: int = 200) -> None:
        assert table.identity is not None
        self._conn = conn
        self._seq = sql.SQL(
            "SELECT nextval(pg_get_serial_sequence({t}, {c})) FROM generate_series(1, {n})"
        ).format(
            t=sql.Literal(f"{table.schema}.{table.name}"), c=sql.Literal(table.identity), n=sql.Literal(block)
        )
        self._free: list[int] = []

    def next(self) -> int:
        """The next unused id."""
        if not self._free:
            rows = self._conn.execute(self._seq).fetchall()
            self._conn.commit()  # sequences are non-transactional; do not hold a transaction open
            self._free = [int(r[0]) for r in reversed(rows)]
        return self._free.pop()


@dataclass(frozen=True, slots=True)
class Rename:
    """A primary-key change of a truth-mapped row."""

    system: str
    schema: str
    table: str
    old_key: str
    new_key: str


@dataclass
class TruthLog:
    """Changes the load generator made to the truth, in the order they happened."""

    changes: list[TruthRow | Rename] = field(default_factory=list)

    def add(self, system: str, table: Table, row: Row, person_id: str) -> None:
        """Record that a newly inserted row belongs to ``person_id``."""
        self.changes.append(TruthRow(system, table.schema, table.name, table.key_of(row), person_id))

    def rename(self, system: str, table: Table, old_key: str, new_key: str) -> None:
        """Record a primary-key change."""
        self.changes.append(Rename(system, table.schema, table.name, old_key, new_key))


class SystemLoad(ABC):
    """Load-generator operations for one system.

    Each call returns the statements of one logical change (e.g. an order and its lines), possibly
    none when there is nothing to change, and updates the in-memory key pools as if they had run.
    """

    system: str

    def __init__(self, conn: Conn, truth: TruthLog, next_person: Callable[[str], Person]) -> None:
        self.conn = conn
        self.truth = truth
        self.next_person = next_person  # system -> a person to insert there (new, or new here)

    @abstractmethod
    def prepare(self) -> None:
        """Load the live keys from the database."""

    @abstractmethod
    def insert(self, rng: random.Random) -> Sequence[Stmt]:
        """Statements creating new rows (a customer, an order with lines...)."""

    @abstractmethod
    def update(self, rng: random.Random) -> Sequence[Stmt]:
        """Statements changing existing rows."""

    @abstractmethod
    def delete(self, rng: random.Random) -> Sequence[Stmt]:
        """Statements deleting rows (children go by ON DELETE CASCADE)."""


def insert_stmt(table: Table, row: Row) -> Stmt:
    """The INSERT of one row dict."""
    return Stmt(table.name, "insert", table.insert_sql(), table.values(row))
