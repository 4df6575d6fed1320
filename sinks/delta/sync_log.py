"""The propagation tables: ``sync_log`` (every attempt), ``sync/pushed`` (what each target holds) and
``sync/ledger`` (terminal failures, for ``goldstream sync replay``).

* ``<root>/sync_log``: one row per operation attempt on a target record -- golden id, version, target,
  operation, the *names* of the fields sent (values stay out: they are personal data and live in gold
  already), status, error (the target's error code and message, never a credential), attempt,
  latency, time, and the golden topic position that caused it.
* ``<root>/sync/pushed``: per push, the full target state we left the record in (JSON), its echo
  fingerprint (``content_hash``) and the target's own key. ``phase=intent`` rows are written *before*
  the API call (so an echo that beats our commit is still recognised), ``phase=done`` rows after it
  succeeded. The done rows are the diff base after a restart; both feed the echo filter.
* ``<root>/sync/ledger``: terminal failures with the golden change that caused them (``status=open``)
  and their later resolution by a replay (``status=resolved``); append-only.

Exactly once in effect: every append carries a Delta application transaction ``(app_id, version)``
with ``app_id = <table>:<target>:<topic>:<partition>`` and ``version`` = the last golden-topic offset
the rows cover (:class:`~sinks.delta.appender.IdempotentAppender`), so a chunk replayed after a crash
adds nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from sinks.delta.appender import AppendResult, IdempotentAppender

UTC_US = pa.timestamp("us", tz="UTC")

_POSITION = [
    pa.field("topic", pa.string(), nullable=False),
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
]

SYNC_LOG_SCHEMA = pa.schema(
    [
        pa.field("golden_id", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("operation", pa.string(), nullable=False),
        pa.field("fields", pa.list_(pa.string()), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("attempt", pa.int32(), nullable=False),
        pa.field("latency_ms", pa.float64()),
        pa.field("at", UTC_US, nullable=False),
        pa.field("target_key", pa.string()),
        pa.field("idempotency_key", pa.string(), nullable=False),
        *_POSITION,
    ]
)

PUSHED_SCHEMA = pa.schema(
    [
        pa.field("target", pa.string(), nullable=False),
        pa.field("system", pa.string(), nullable=False),
        pa.field("golden_id", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("phase", pa.string(), nullable=False),
        pa.field("target_key", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("echo_fields", pa.list_(pa.string()), nullable=False),
        pa.field("origin", pa.string()),
        pa.field("state", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("merged_into", pa.string()),
        pa.field("at", UTC_US, nullable=False),
        *_POSITION,
    ]
)

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("target", pa.string(), nullable=False),
        pa.field("golden_id", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("operation", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("change", pa.binary()),
        pa.field("at", UTC_US, nullable=False),
        *_POSITION,
    ]
)


def sync_log_path(root: Path) -> Path:
    """``<delta_root>/sync_log``."""
    return root / "sync_log"


def pushed_path(root: Path) -> Path:
    """``<delta_root>/sync/pushed``."""
    return root / "sync" / "pushed"


def ledger_path(root: Path) -> Path:
    """``<delta_root>/sync/ledger``."""
    return root / "sync" / "ledger"


def app_id(table: str, target: str, topic: str, partition: int) -> str:
    """The Delta application id of one (table, target, golden-topic partition) stream."""
    return f"{table}:{target}:{topic}:{partition}"


@dataclass(frozen=True)
class SyncLogRow:
    """One attempt on a target record."""

    golden_id: str
    version: int
    target: str
    operation: str
    fields: tuple[str, ...]
    status: str
    error: str | None
    attempt: int
    latency_ms: float | None
    at: dt.datetime
    target_key: str | None
    idempotency_key: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class PushedRow:
    """The state one target record was (about to be) left in by us."""

    target: str
    system: str
    golden_id: str
    version: int
    phase: str
    target_key: str | None
    content_hash: str | None
    echo_fields: tuple[str, ...]
    """The canonical fields ``content_hash`` covers."""
    origin: str | None
    """The ``last_modified_by`` marker the target records for our writes."""
    state: str
    status: str
    merged_into: str | None
    at: dt.datetime
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class LedgerRow:
    """A terminal failure (``open``) or its resolution by a replay (``resolved``)."""

    target: str
    golden_id: str
    version: int
    operation: str
    status: str
    error: str | None
    change: bytes | None
    at: dt.datetime
    topic: str
    partition: int
    offset: int


def to_arrow(rows: Sequence[Any], schema: pa.Schema) -> pa.Table:
    """Dataclass rows as an Arrow table of ``schema`` (column order from the schema)."""
    cols = {f.name: [getattr(r, f.name) for r in rows] for f in schema}
    lists = {f.name for f in schema if pa.types.is_list(f.type)}
    cols = {k: ([list(x) for x in v] if k in lists else v) for k, v in cols.items()}
    return pa.Table.from_pydict(cols, schema=schema)


class SyncTables:
    """Appends to the three propagation tables, each append under its transaction id."""

    def __init__(self, delta_root: Path) -> None:
        self.root = delta_root
        self.log = IdempotentAppender(sync_log_path(delta_root), SYNC_LOG_SCHEMA)
        self.pushed = IdempotentAppender(pushed_path(delta_root), PUSHED_SCHEMA)
        self.ledger = IdempotentAppender(ledger_path(delta_root), LEDGER_SCHEMA)

    def append(self, which: str, rows: Sequence[Any], *, stream: str, version: int) -> AppendResult:
        """Append ``rows`` to ``which`` (``log``, ``pushed``, ``ledger``) under ``stream``@``version``.

        Rows must be ordered by ``offset`` (the appender drops those at or below the committed
        version when a chunk is replayed). Raises :class:`~core.errors.TransientError` on commit
        failures (safe to retry).
        """
        appender: IdempotentAppender = getattr(self, which)
        schema = {"log": SYNC_LOG_SCHEMA, "pushed": PUSHED_SCHEMA, "ledger": LEDGER_SCHEMA}[which]
        return appender.append(to_arrow(rows, schema), app_id=f"{which}:{stream}", version=version)


def read_table(path: Path, *, filter_column: str | None = None, value: str | None = None) -> pa.Table | None:
    """A whole table (optionally rows with ``filter_column == value``), or None if it does not exist."""
    try:
        table = DeltaTable(str(path))
    except TableNotFoundError:
        return None
    data = table.to_pyarrow_table()
    if filter_column is not None:
        data = data.filter(pc.equal(data[filter_column], pa.scalar(value)))
    return data


def table_version(path: Path) -> int | None:
    """The current version of a Delta table, or None if it does not exist."""
    try:
        return DeltaTable(str(path)).version()
    except TableNotFoundError:
        return None


def latest_pushed(delta_root: Path, target: str) -> list[dict[str, Any]]:
    """The newest ``done`` row per golden id of ``target`` (the diff base after a restart)."""
    data = read_table(pushed_path(delta_root), filter_column="target", value=target)
    if data is None or data.num_rows == 0:
        return []
    data = data.filter(pc.equal(data["phase"], "done"))
    if data.num_rows == 0:
        return []
    # The table keeps every push ever made, so pick the newest row per golden id, the greatest
    # (version, at), in Arrow and turn only those into Python dicts. (An exact tie is one push
    # written twice by a replayed batch: the same row.)
    data = data.sort_by([("golden_id", "ascending"), ("version", "descending"), ("at", "descending")])
    ids = data["golden_id"]
    first = pc.not_equal(ids.slice(1), ids.slice(0, data.num_rows - 1))
    keep = pa.concat_arrays([pa.array([True]), *first.chunks]) if data.num_rows > 1 else pa.array([True])
    newest: list[dict[str, Any]] = data.filter(keep).to_pylist()
    return newest


def open_ledger(delta_root: Path, target: str | None = None) -> list[dict[str, Any]]:
    """Ledger entries still open (no later ``resolved`` row for the same target/golden id/version)."""
    data = read_table(ledger_path(delta_root))
    if data is None:
        return []
    rows = data.to_pylist()
    resolved = {(r["target"], r["golden_id"], r["version"]) for r in rows if r["status"] == "resolved"}
    latest: dict[tuple[str, str, int, str, int], dict[str, Any]] = {}
    for r in rows:
        if r["status"] != "open" or (r["target"], r["golden_id"], r["version"]) in resolved:
            continue
        if target is not None and r["target"] != target:
            continue
        # A replay that fails again appends the same entry again: list it once (the latest error).
        key = (r["target"], r["golden_id"], r["version"], r["operation"], r["offset"])
        if key not in latest or r["at"] >= latest[key]["at"]:
            latest[key] = r
    return sorted(latest.values(), key=lambda r: (r["target"], r["golden_id"], r["version"]))


PLAN_SCHEMA = pa.schema(
    [
        pa.field("target", pa.string(), nullable=False),
        pa.field("golden_id", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("operation", pa.string(), nullable=False),
        pa.field("fields", pa.list_(pa.string()), nullable=False),
        pa.field("other", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("idempotency_key", pa.string(), nullable=False),
        pa.field("planned_at", UTC_US, nullable=False),
        *_POSITION,
    ]
)


@dataclass(frozen=True)
class PlanRow:
    """One operation ``goldstream sync plan`` would send."""

    target: str
    golden_id: str
    version: int
    operation: str
    fields: tuple[str, ...]
    other: str | None
    reason: str | None
    idempotency_key: str
    planned_at: dt.datetime
    topic: str
    partition: int
    offset: int


def plan_path(root: Path) -> Path:
    """``<delta_root>/sync/plan``: the last dry run's intended operations."""
    return root / "sync" / "plan"


def write_plan(root: Path, rows: Sequence[PlanRow]) -> Path:
    """Replace the plan table with ``rows`` (a dry run's result; not a change log)."""
    from deltalake import write_deltalake

    path = plan_path(root)
    path.mkdir(parents=True, exist_ok=True)
    write_deltalake(str(path), to_arrow(rows, PLAN_SCHEMA), mode="overwrite", schema_mode="overwrite")
    return path
