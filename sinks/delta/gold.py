"""The gold layer: golden records, their history, the crosswalk, match links and lineage in Delta.

:class:`GoldWriter` applies the :class:`~core.golden.GoldBatch` objects of one entity type to five
tables under ``<delta_root>/gold/``:

``golden_<entity>`` (current state, one row per golden id)
    golden_id, version, golden_status (``active`` / ``retired``), merged_into, split_from,
    merged_from, one column per canonical attribute, provenance, members, content_hash, cause,
    golden_updated_at. Attribute columns are typed by :func:`core.canonical.entity_schema` (dates,
    timestamps and decimals arrive as JSON-safe text and are converted back); attributes the
    canonical model does not know are added as string columns. The record-level columns carry a
    ``golden_`` prefix where a canonical attribute already uses the plain name (a customer has its
    own ``status`` and ``updated_at``). ``golden_updated_at`` is when the resolver emitted the
    version (not the write time), so a replay writes the very same row.
``golden_<entity>_history`` (SCD2, one row per (golden_id, version))
    golden_id, version, valid_from, valid_to (null: current), the same values and metadata as
    above, and ``changed`` (the fields that differ from the previous version).
``crosswalk`` (all entities, partitioned by ``entity``)
    entity, record_id, source_system, source_table, source_key, golden_id, score, since, deleted.
``links`` (all entities, partitioned by ``entity``)
    entity, golden_id, a, b, weight, probability, comparisons (list of {comparison, level,
    weight}), version (the golden version they were scored for, when the batch carried it).
``lineage`` (all entities, partitioned by ``entity``)
    entity, event_id, kind (``MERGED`` / ``SPLIT``), golden_id, others, at, cause.

``provenance`` is a list of ``{field, source, record_id, source_ts, rule, group, support}``
structs, one per golden field, so analysts can unnest it in polars or DuckDB.

Exactly-once in effect. Batches arrive at least once (a replay after a crash) and possibly an older
one after a newer one, so every table is written by a MERGE with a key and a guard:

* current: keyed by golden_id; a row is replaced only by a change of the same or a newer version;
* history: keyed by (golden_id, version), rows are immutable once written; a new version closes
  the previous one (``valid_to`` = the new ``valid_from``), also when a missing older version
  arrives late (its ``valid_to`` is the next version's ``valid_from``);
* crosswalk: keyed by (entity, record_id); an entry replaces the stored one only when its ``since``
  is not older; a deleted record keeps its last golden id with ``deleted`` true. (A score-only
  update keeps ``since``, so replaying older batches may show an older score of the same golden id
  until the replay reaches the newest batch);
* links: for every golden id in :attr:`GoldBatch.relinked <core.golden.GoldBatch.relinked>` (and
  every id the batch carries links for), the batch's links are the cluster's complete current set
  and replace its stored links (none: it has no scored pair left); a ``RETIRED`` golden id loses its
  links. The link set of a golden id whose change in the batch is older than the stored version is
  ignored (a replay of an old batch); links carry no version of their own, so a replayed link set of
  a golden id without a change in its batch replaces the stored one until the next batch for it;
* lineage: keyed by event_id (deterministic), insert only.

There are no Delta application transactions here: a :class:`~core.golden.GoldBatch` carries no
Kafka offsets, and the guards above make a replayed batch harmless on their own.

Within a batch duplicate keys are folded first (delta-rs MERGE fails on them). A commit that
conflicts with a concurrent writer is retried with backoff (delta-rs retries only blind appends);
other Delta or storage failures raise :class:`TransientError` (re-apply the batch: safe), a batch
that does not fit the contract :class:`TerminalError`. The current table is written last, so a
reader that sees version N there finds it in the history too.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import (
    CommitFailedError,
    DeltaError,
    DeltaProtocolError,
    SchemaMismatchError,
    TableNotFoundError,
)
from deltalake.schema import Schema as DeltaSchema

from core.canonical import entity_schema
from core.errors import TerminalError, TransientError
from core.golden import (
    Cause,
    CrosswalkEntry,
    FieldProvenance,
    GoldBatch,
    GoldenChange,
    LineageEvent,
    LinkRecord,
    split_record_id,
)
from core.metrics import GOLD_ROWS, RETRIES
from sinks.delta.maintenance import MaintenancePolicy, maintain
from sinks.delta.silver import SILVER_CONFIGURATION
from sinks.delta.silver_merge import lit, q

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = [
    "GOLD_CONFIGURATION",
    "RESERVED",
    "GoldApplyResult",
    "GoldPaths",
    "GoldWriter",
    "gold_paths",
    "read_crosswalk",
    "read_golden",
    "read_history",
    "read_lineage",
    "read_links",
]

UTC_US: Final = pl.Datetime("us", "UTC")
#: Same trade-offs as silver: random-key MERGEs leave a dead copy of the touched files per commit.
GOLD_CONFIGURATION: Final[dict[str, str | None]] = dict(SILVER_CONFIGURATION)

PROVENANCE: Final = pl.List(
    pl.Struct(
        {
            "field": pl.String(),
            "source": pl.String(),
            "record_id": pl.String(),
            "source_ts": UTC_US,
            "rule": pl.String(),
            "group": pl.String(),
            "support": pl.Float64(),
        }
    )
)
CAUSE: Final = pl.Struct(
    {
        "record_id": pl.String(),
        "lsn": pl.Int64(),
        "source_ts": UTC_US,
        "topic": pl.String(),
        "partition": pl.Int32(),
        "offset": pl.Int64(),
    }
)
COMPARISONS: Final = pl.List(
    pl.Struct({"comparison": pl.String(), "level": pl.String(), "weight": pl.Float64()})
)
_STRINGS: Final = pl.List(pl.String())

#: Columns of ``golden_<entity>`` before and after the attribute columns.
GOLDEN_HEAD: Final[Mapping[str, pl.DataType]] = {
    "golden_id": pl.String(),
    "version": pl.Int64(),
    "golden_status": pl.String(),
    "merged_into": pl.String(),
    "split_from": pl.String(),
    "merged_from": _STRINGS,
}
GOLDEN_TAIL: Final[Mapping[str, pl.DataType]] = {
    "provenance": PROVENANCE,
    "members": _STRINGS,
    "content_hash": pl.String(),
    "cause": CAUSE,
    "golden_updated_at": UTC_US,
}
HISTORY_HEAD: Final[Mapping[str, pl.DataType]] = {
    "golden_id": pl.String(),
    "version": pl.Int64(),
    "valid_from": UTC_US,
    "valid_to": UTC_US,
    "golden_status": pl.String(),
    "merged_into": pl.String(),
    "split_from": pl.String(),
    "merged_from": _STRINGS,
}
HISTORY_TAIL: Final[Mapping[str, pl.DataType]] = {
    "changed": _STRINGS,
    "provenance": PROVENANCE,
    "members": _STRINGS,
    "content_hash": pl.String(),
    "cause": CAUSE,
}
CROSSWALK: Final[Mapping[str, pl.DataType]] = {
    "entity": pl.String(),
    "record_id": pl.String(),
    "source_system": pl.String(),
    "source_table": pl.String(),
    "source_key": pl.String(),
    "golden_id": pl.String(),
    "score": pl.Float64(),
    "since": UTC_US,
    "deleted": pl.Boolean(),
}
LINKS: Final[Mapping[str, pl.DataType]] = {
    "entity": pl.String(),
    "golden_id": pl.String(),
    "a": pl.String(),
    "b": pl.String(),
    "weight": pl.Float64(),
    "probability": pl.Float64(),
    "comparisons": COMPARISONS,
    "version": pl.Int64(),
}
LINEAGE: Final[Mapping[str, pl.DataType]] = {
    "entity": pl.String(),
    "event_id": pl.String(),
    "kind": pl.String(),
    "golden_id": pl.String(),
    "others": _STRINGS,
    "at": UTC_US,
    "cause": CAUSE,
}
#: Names an attribute cannot have (they are record-level columns of the golden tables).
RESERVED: Final = (
    frozenset(GOLDEN_HEAD) | frozenset(GOLDEN_TAIL) | frozenset(HISTORY_HEAD) | frozenset(HISTORY_TAIL)
)
_ENTITY = re.compile(r"^[a-z][a-z0-9_]*$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_OP = "__gs_op"


@dataclass(frozen=True)
class GoldPaths:
    """Where the gold tables of one entity live."""

    golden: Path
    history: Path
    crosswalk: Path
    links: Path
    lineage: Path


def gold_paths(delta_root: Path, entity: str) -> GoldPaths:
    """The gold table paths of ``entity`` under ``<delta_root>/gold/``."""
    if not _ENTITY.match(entity):
        raise ValueError(f"entity names are lower-case identifiers, not {entity!r}")
    root = Path(delta_root) / "gold"
    return GoldPaths(
        golden=root / f"golden_{entity}",
        history=root / f"golden_{entity}_history",
        crosswalk=root / "crosswalk",
        links=root / "links",
        lineage=root / "lineage",
    )


@dataclass(frozen=True)
class GoldApplyResult:
    """What one :meth:`GoldWriter.apply` did (row counts from the MERGE metrics)."""

    changes_in: int
    golden_written: int
    """Current rows inserted or replaced (a replayed version replaces its row with itself)."""
    golden_ignored_stale: int
    """Changes older than the stored version of their golden id (or superseded in the batch)."""
    history_inserted: int
    history_closed: int
    """Earlier versions whose ``valid_to`` this batch set."""
    crosswalk_written: int
    crosswalk_ignored_stale: int
    links_written: int
    links_deleted: int
    lineage_inserted: int
    commits: dict[str, int] = field(default_factory=dict)
    """Table name -> version its commit created (tables without a commit are absent)."""
    attempts: int = 0
    """MERGE attempts over all tables (more than one per table after concurrent-commit conflicts)."""
    seconds: float = 0.0


# -- value conversion ---------------------------------------------------------------------------


def _ts(us: int | None) -> dt.datetime | None:
    return None if us is None else _EPOCH + dt.timedelta(microseconds=us)


def _cause(cause: Cause | None) -> dict[str, Any] | None:
    if cause is None:
        return None
    return {
        "record_id": cause.record_id,
        "lsn": cause.lsn,
        "source_ts": _ts(cause.source_ts_us),
        "topic": cause.topic,
        "partition": cause.partition,
        "offset": cause.offset,
    }


def _provenance(prov: Mapping[str, FieldProvenance]) -> list[dict[str, Any]]:
    return [
        {
            "field": name,
            "source": p.source,
            "record_id": p.record_id,
            "source_ts": _ts(p.source_ts_us),
            "rule": p.rule,
            "group": p.group,
            "support": p.support,
        }
        for name, p in sorted(prov.items())
    ]


def _text(value: object) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def _datetime(value: object) -> dt.datetime:
    parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:  # JSON-safe timestamps are UTC (core.golden.json_value)
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"not a boolean: {value!r}")


def _int(value: object) -> int:
    if isinstance(value, str):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"not an integer: {value!r}")


def _float(value: object) -> float:
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a number: {value!r}")


def _decimal(value: object) -> Decimal:
    return Decimal(str(value))


_CONVERTERS: dict[pl.DataType, Callable[[object], object]] = {}


def _converter(dtype: pl.DataType) -> Callable[[object], object]:
    """The function turning a (non-null) JSON-safe value into the Python value of a ``dtype`` column."""
    known = _CONVERTERS.get(dtype)
    if known is not None:
        return known
    conv: Callable[[object], object]
    if dtype == pl.String:
        conv = _text
    elif isinstance(dtype, pl.Datetime):
        conv = _datetime
    elif dtype == pl.Date:
        conv = _date
    elif isinstance(dtype, pl.Decimal):
        conv = _decimal
    elif dtype == pl.Boolean:
        conv = _bool
    elif dtype.is_integer():
        conv = _int
    elif dtype.is_float():
        conv = _float
    elif isinstance(dtype, pl.List):
        inner = _converter(dtype.inner if isinstance(dtype.inner, pl.DataType) else dtype.inner())

        def conv(value: object) -> object:
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"not a list: {value!r}")
            return [None if v is None else inner(v) for v in value]

    else:
        conv = _identity
    _CONVERTERS[dtype] = conv
    return conv


def _identity(value: object) -> object:
    return value


def _attribute_types(entity: str) -> dict[str, pl.DataType]:
    """Canonical attribute dtypes of ``entity`` (empty for an entity the canonical model lacks)."""
    try:
        return dict(entity_schema(entity))
    except KeyError:
        return {}


# -- folding a batch ----------------------------------------------------------------------------


def _latest(items: Iterable[T], key: Callable[[T], Any], order: Callable[[T], int]) -> list[T]:
    """One item per ``key``: the greatest ``order`` (the later one on a tie), sorted by key."""
    best: dict[Any, T] = {}
    for item in items:
        k = key(item)
        kept = best.get(k)
        if kept is None or order(item) >= order(kept):
            best[k] = item
    return [best[k] for k in sorted(best)]


def _latest_changes(changes: Iterable[GoldenChange]) -> list[GoldenChange]:
    """One change per golden id: the highest version."""
    return _latest(changes, lambda c: c.golden_id, lambda c: c.version)


def _distinct_versions(changes: Iterable[GoldenChange]) -> list[GoldenChange]:
    """One change per (golden id, version), the later one winning."""
    return _latest(changes, lambda c: (c.golden_id, c.version), lambda _: 0)


def _latest_crosswalk(entries: Iterable[CrosswalkEntry]) -> list[CrosswalkEntry]:
    """One entry per record id: the most recent ``since``."""
    return _latest(entries, lambda e: e.record_id, lambda e: e.since_us)


# -- tables -------------------------------------------------------------------------------------


def _arrow(schema: Mapping[str, pl.DataType]) -> pa.Schema:
    return pl.DataFrame(schema=dict(schema)).to_arrow().schema


def _source(rows: list[dict[str, Any]], schema: Mapping[str, pl.DataType]) -> pa.Table:
    """A MERGE source from row dicts (absent keys are null). Built by pyarrow: polars' dict
    constructor costs about as much as the whole MERGE on rows with nested provenance."""
    return pa.Table.from_pylist(rows, schema=_arrow(schema))


class _Table:
    """One Delta table: created on first use, handle kept, commits counted for maintenance."""

    def __init__(self, path: Path, schema: Mapping[str, pl.DataType], partition_by: list[str] | None) -> None:
        self.path = path
        self.uri = str(path)
        self.name = path.name
        self.schema = dict(schema)
        self.partition_by = partition_by
        self.commits = 0
        self._table: DeltaTable | None = None

    def open(self) -> DeltaTable:
        if self._table is not None:
            return self._table
        try:
            self._table = DeltaTable(self.uri)
        except TableNotFoundError:
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                self._table = DeltaTable.create(
                    self.uri,
                    _arrow(self.schema),
                    partition_by=self.partition_by,
                    mode="ignore",  # another worker may create it at the same moment
                    configuration=GOLD_CONFIGURATION,
                )
            except DeltaError:
                self._table = DeltaTable(self.uri)
        return self._table

    def reset(self) -> None:
        self._table = None

    def columns(self, table: DeltaTable) -> dict[str, pl.DataType]:
        """The stored columns (name -> polars dtype), in table order."""
        empty = pa.schema(table.schema().to_arrow()).empty_table()
        return dict(pl.DataFrame(empty).schema)

    def add_columns(self, table: DeltaTable, columns: Mapping[str, pl.DataType]) -> None:
        """Add nullable columns (metadata-only commit); a writer that added them first wins."""
        log.info("%s: adding columns %s", self.uri, list(columns))
        fields = DeltaSchema.from_arrow(_arrow(columns)).fields
        try:
            table.alter.add_columns(fields)
        except DeltaError as exc:
            table.update_incremental()
            if not set(columns) <= set(self.columns(table)):
                raise TransientError(f"{self.uri}: adding columns {list(columns)} failed: {exc}") from exc


#: A MERGE step: given the freshly updated table, run the MERGE (or return None when there is
#: nothing to write) and return delta-rs' metrics.
MergeStep = Callable[[DeltaTable], "dict[str, Any] | None"]


class GoldWriter:
    """Applies :class:`~core.golden.GoldBatch` objects of one entity type to the gold tables.

    ``maintenance`` runs :func:`~sinks.delta.maintenance.maintain` on a table after enough of its
    commits (None: never). Not thread-safe; one writer per process and entity.
    """

    def __init__(
        self,
        delta_root: Path,
        entity: str,
        *,
        maintenance: MaintenancePolicy | None = MaintenancePolicy(),  # noqa: B008 (frozen)
        max_attempts: int = 12,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.entity = entity
        self.paths = gold_paths(delta_root, entity)
        self.maintenance = maintenance
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._attributes = _attribute_types(entity)
        bad = sorted(set(self._attributes) & RESERVED)
        if bad:
            raise TerminalError(f"gold {entity}: canonical attributes {bad} clash with gold columns")
        self.golden = _Table(self.paths.golden, {**GOLDEN_HEAD, **self._attributes, **GOLDEN_TAIL}, None)
        self.history = _Table(self.paths.history, {**HISTORY_HEAD, **self._attributes, **HISTORY_TAIL}, None)
        self.crosswalk = _Table(self.paths.crosswalk, CROSSWALK, ["entity"])
        self.links = _Table(self.paths.links, LINKS, ["entity"])
        self.lineage = _Table(self.paths.lineage, LINEAGE, ["entity"])
        self._records: dict[tuple[str, int], tuple[GoldenChange, dict[str, Any]]] = {}
        self._rows = {
            (t, o): GOLD_ROWS.labels(entity=entity, table=t, outcome=o)
            for t in ("golden", "history", "crosswalk", "links", "lineage")
            for o in ("written", "stale")
        }

    # -- apply ----------------------------------------------------------------------------------

    def apply(self, batch: GoldBatch) -> GoldApplyResult:
        """Write one batch to the gold tables (idempotent: applying it again changes nothing).

        Raises :class:`TransientError` (re-apply the same batch later: safe) or
        :class:`TerminalError` (the batch does not fit the contract or the tables).
        """
        started = time.perf_counter()
        self._check(batch)
        self._records.clear()
        commits: dict[str, int] = {}
        attempts = 0

        def run(table: _Table, step: MergeStep) -> dict[str, Any]:
            nonlocal attempts
            metrics, version, tries = self._merge(table, step)
            attempts += tries
            if version is not None:
                commits[table.name] = version
            return metrics

        for t in (self.golden, self.history, self.crosswalk, self.links, self.lineage):
            self._read(t.open)  # every table exists after the first batch (readers need not guess)
        latest = _latest_changes(batch.changes)
        stored = self._stored_versions([c.golden_id for c in latest])
        fresh = [c for c in latest if c.version >= stored.get(c.golden_id, 0)]

        hist = run(self.history, lambda tb: self._merge_history(tb, _distinct_versions(batch.changes)))
        xwalk_in = _latest_crosswalk(batch.crosswalk)
        # a record that joined and was deleted within the batch still names the id it had
        traced = {e.record_id: e.golden_id for e in batch.crosswalk if e.golden_id is not None}
        xwalk = run(self.crosswalk, lambda tb: self._merge_crosswalk(tb, xwalk_in, traced))
        links = run(self.links, lambda tb: self._merge_links(tb, batch, latest, fresh))
        lineage = run(self.lineage, lambda tb: self._merge_lineage(tb, batch.lineage))
        golden = run(self.golden, lambda tb: self._merge_golden(tb, latest))

        golden_written = _rows_written(golden)
        xwalk_written = _rows_written(xwalk)
        result = GoldApplyResult(
            changes_in=len(batch.changes),
            golden_written=golden_written,
            golden_ignored_stale=len(batch.changes) - golden_written,
            history_inserted=int(hist.get("num_target_rows_inserted", 0)),
            history_closed=int(hist.get("num_target_rows_updated", 0)),
            crosswalk_written=xwalk_written,
            crosswalk_ignored_stale=len(batch.crosswalk) - xwalk_written,
            links_written=_rows_written(links),
            links_deleted=int(links.get("num_target_rows_deleted", 0)),
            lineage_inserted=int(lineage.get("num_target_rows_inserted", 0)),
            commits=commits,
            attempts=attempts,
            seconds=time.perf_counter() - started,
        )
        self._count(result)
        self._records.clear()
        return result

    def _check(self, batch: GoldBatch) -> None:
        items: Sequence[Any] = (*batch.changes, *batch.crosswalk, *batch.links, *batch.lineage)
        wrong = sorted(
            {i.entity for i in items if i.entity != self.entity} | ({batch.entity} - {self.entity})
        )
        if wrong:
            raise TerminalError(f"gold writer of {self.entity!r} handed items of entity {wrong}")

    def _count(self, r: GoldApplyResult) -> None:
        self._rows[("golden", "written")].inc(r.golden_written)
        self._rows[("golden", "stale")].inc(r.golden_ignored_stale)
        self._rows[("history", "written")].inc(r.history_inserted + r.history_closed)
        self._rows[("crosswalk", "written")].inc(r.crosswalk_written)
        self._rows[("crosswalk", "stale")].inc(r.crosswalk_ignored_stale)
        self._rows[("links", "written")].inc(r.links_written + r.links_deleted)
        self._rows[("lineage", "written")].inc(r.lineage_inserted)

    def _read(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (OSError, DeltaError, pl.exceptions.PolarsError) as exc:
            for t in (self.golden, self.history, self.crosswalk, self.links, self.lineage):
                t.reset()
            raise TransientError(f"gold {self.entity}: reading a table failed: {exc}") from exc

    def _stored_versions(self, ids: Sequence[str]) -> dict[str, int]:
        if not ids:
            return {}

        def read() -> pl.DataFrame:
            handle = self.golden.open()
            handle.update_incremental()
            # through the writer's handle: no reload of the transaction log per batch
            return (
                pl.scan_delta(handle)
                .filter(pl.col("golden_id").is_in(list(ids)))
                .select("golden_id", "version")
                .collect()
            )

        frame: pl.DataFrame = self._read(read)
        return {str(g): int(v) for g, v in frame.iter_rows()}

    def _merge(self, table: _Table, step: MergeStep) -> tuple[dict[str, Any], int | None, int]:
        """Run ``step`` until it commits, retrying concurrent-commit conflicts with backoff."""
        attempt = 0
        while True:
            attempt += 1
            handle = self._read(table.open)
            try:
                handle.update_incremental()
                before = handle.version()
                metrics = step(handle)
                if metrics is None:
                    return {}, None, attempt
                after = handle.version()
                break
            except CommitFailedError as exc:
                RETRIES.labels(operation="gold_merge").inc()
                if attempt >= self.max_attempts:
                    table.reset()
                    raise TransientError(
                        f"{table.uri}: MERGE still conflicting after {attempt} attempts: {exc}"
                    ) from exc
                delay = min(2.0, 0.05 * 2 ** (attempt - 1))
                log.info("%s: concurrent commit, retrying MERGE in %.2fs: %s", table.uri, delay, exc)
                self._sleep(random.uniform(delay / 2, delay))
            except (SchemaMismatchError, DeltaProtocolError) as exc:
                raise TerminalError(f"{table.uri}: the batch does not fit the table: {exc}") from exc
            except (OSError, DeltaError, pl.exceptions.PolarsError) as exc:
                # the commit may or may not have landed: re-applying the batch is safe
                table.reset()
                raise TransientError(f"{table.uri}: MERGE failed: {exc}") from exc
        version = after if after != before else None
        if version is not None:
            self._maybe_maintain(table, handle)
        return metrics, version, attempt

    def _maybe_maintain(self, table: _Table, handle: DeltaTable) -> None:
        policy = self.maintenance
        if policy is None:
            return
        table.commits += 1
        # insert-mostly tables (history, lineage) gain a file per commit: compact past max_files
        if table.commits < policy.every_commits and len(handle.file_uris()) <= policy.max_files:
            return
        table.commits = 0
        try:
            maintain(
                table.path,
                target_file_size=policy.target_file_size,
                retention=policy.retention,
                compact_min_files=policy.compact_min_files,
                layer="gold",
            )
        except (TransientError, TerminalError) as exc:
            # best effort: the next run (or `goldstream maintain`) catches up
            log.warning("%s: automatic maintenance failed: %s", table.uri, exc)
        table.reset()

    # -- rows -----------------------------------------------------------------------------------

    def _attribute_columns(
        self, table: _Table, handle: DeltaTable, changes: Sequence[GoldenChange]
    ) -> dict[str, pl.DataType]:
        """The table's columns after adding any attribute the changes carry that it lacks."""
        columns = table.columns(handle)
        unknown = sorted({k for c in changes for k in c.values} - set(columns))
        clash = [k for k in unknown if k in RESERVED]
        if clash:
            raise TerminalError(f"gold {self.entity}: attributes {clash} clash with gold columns")
        if unknown:
            table.add_columns(handle, dict.fromkeys(unknown, pl.String()))
            handle.update_incremental()
            columns = table.columns(handle)
        return columns

    def _values(self, change: GoldenChange, columns: Mapping[str, pl.DataType]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in change.values.items():
            try:
                out[name] = None if value is None else _converter(columns[name])(value)
            except (ValueError, TypeError, InvalidOperation) as exc:
                raise TerminalError(
                    f"gold {self.entity}: {change.golden_id} v{change.version}: {name}={value!r} "
                    f"does not fit {columns[name]}: {exc}"
                ) from exc
        return out

    def _record(self, c: GoldenChange, columns: Mapping[str, pl.DataType]) -> dict[str, Any]:
        """The columns the current and history rows of ``c`` share (built once per apply: the two
        tables type an attribute alike)."""
        key = (c.golden_id, c.version)
        known = self._records.get(key)
        if known is not None and known[0] is c:
            return known[1]
        row = self._row(c, columns)
        self._records[key] = (c, row)
        return row

    def _row(self, c: GoldenChange, columns: Mapping[str, pl.DataType]) -> dict[str, Any]:
        return {
            "golden_id": c.golden_id,
            "version": c.version,
            "golden_status": "retired" if c.kind == "RETIRED" else "active",
            "merged_into": c.merged_into,
            "split_from": c.split_from,
            "merged_from": list(c.merged_from),
            **self._values(c, columns),
            "provenance": _provenance(c.provenance),
            "members": list(c.members),
            "content_hash": c.content_hash,
            "cause": _cause(c.cause),
        }

    # -- the MERGEs -----------------------------------------------------------------------------

    def _merge_golden(self, handle: DeltaTable, latest: Sequence[GoldenChange]) -> dict[str, Any] | None:
        if not latest:
            return None
        columns = self._attribute_columns(self.golden, handle, latest)
        rows = [{**self._record(c, columns), "golden_updated_at": _ts(c.emitted_at_us)} for c in latest]
        source = _source(rows, columns)
        lo, hi = latest[0].golden_id, latest[-1].golden_id
        return dict(
            handle.merge(
                source,
                f"t.golden_id = s.golden_id AND t.golden_id >= {lit(lo)} AND t.golden_id <= {lit(hi)}",
                source_alias="s",
                target_alias="t",
            )
            .when_matched_update_all(predicate="s.version >= t.version")
            .when_not_matched_insert_all()
            .execute()
        )

    def _merge_history(self, handle: DeltaTable, changes: Sequence[GoldenChange]) -> dict[str, Any] | None:
        if not changes:
            return None
        columns = self._attribute_columns(self.history, handle, changes)
        ids = sorted({c.golden_id for c in changes})
        keys = {"golden_id": pl.String(), "version": pl.Int64(), "valid_from": UTC_US, "valid_to": UTC_US}
        stored = (
            pl.scan_delta(handle)
            .filter(pl.col("golden_id").is_in(ids))
            .select(list(keys))
            .collect()
            .cast(keys)  # type: ignore[arg-type]
        )
        new = pl.DataFrame(
            [(c.golden_id, c.version, _ts(c.emitted_at_us)) for c in changes],
            schema={k: keys[k] for k in ("golden_id", "version", "valid_from")},
            orient="row",
        ).join(stored.select("golden_id", "version"), on=["golden_id", "version"], how="anti")
        if new.height == 0:
            return None  # a replay: every version is stored already
        # every version's valid_to is the next version's valid_from, wherever the versions came from
        timeline = (
            pl.concat([stored.select("golden_id", "version", "valid_from"), new], how="vertical")
            .sort("golden_id", "version")
            .with_columns(pl.col("valid_from").shift(-1).over("golden_id").alias("expected_to"))
            .select("golden_id", "version", "expected_to")
        )
        closes = (
            stored.join(timeline, on=["golden_id", "version"])
            .filter(
                pl.col("expected_to").is_not_null()
                & (pl.col("valid_to").is_null() | (pl.col("valid_to") != pl.col("expected_to")))
            )
            .select("golden_id", "version", pl.col("expected_to").alias("valid_to"))
        )
        inserts = new.join(timeline, on=["golden_id", "version"]).rename({"expected_to": "valid_to"})
        wanted = {(g, v): to for g, v, _, to in inserts.iter_rows()}
        rows = [
            {**self._record(c, columns), "valid_from": _ts(c.emitted_at_us), "valid_to": wanted[key]}
            | {"changed": list(c.changed), _OP: "insert"}
            for c in changes
            if (key := (c.golden_id, c.version)) in wanted
        ]
        rows += [
            {"golden_id": g, "version": v, "valid_to": to, _OP: "close"} for g, v, to in closes.iter_rows()
        ]
        source = _source(rows, {**columns, _OP: pl.String()})
        names = list(columns)
        return dict(
            handle.merge(
                source,
                f"t.golden_id = s.golden_id AND t.version = s.version AND t.golden_id >= {lit(ids[0])}"
                f" AND t.golden_id <= {lit(ids[-1])}",
                source_alias="s",
                target_alias="t",
            )
            .when_matched_update({"valid_to": "s.valid_to"}, predicate=f"s.{_OP} = 'close'")
            .when_not_matched_insert({q(n): f"s.{q(n)}" for n in names}, predicate=f"s.{_OP} = 'insert'")
            .execute()
        )

    def _merge_crosswalk(
        self, handle: DeltaTable, entries: Sequence[CrosswalkEntry], traced: Mapping[str, str]
    ) -> dict[str, Any] | None:
        if not entries:
            return None
        rows = []
        for e in entries:
            try:
                system, table, key = split_record_id(e.record_id)
            except ValueError as exc:
                raise TerminalError(f"gold {self.entity}: not a record id: {e.record_id!r}") from exc
            rows.append(
                {
                    "entity": e.entity,
                    "record_id": e.record_id,
                    "source_system": system,
                    "source_table": table,
                    "source_key": key,
                    "golden_id": e.golden_id if e.golden_id is not None else traced.get(e.record_id),
                    "score": e.score,
                    "since": _ts(e.since_us),
                    "deleted": e.golden_id is None,
                }
            )
        source = _source(rows, CROSSWALK)
        update = {q(n): f"s.{q(n)}" for n in CROSSWALK}
        # a deleted record keeps the golden id it last belonged to (for tracing)
        update[q("golden_id")] = "COALESCE(s.golden_id, t.golden_id)"
        return dict(
            handle.merge(
                source,
                f"t.entity = {lit(self.entity)} AND t.entity = s.entity AND t.record_id = s.record_id",
                source_alias="s",
                target_alias="t",
            )
            .when_matched_update(update, predicate="s.since >= t.since")
            .when_not_matched_insert_all()
            .execute()
        )

    def _merge_links(
        self,
        handle: DeltaTable,
        batch: GoldBatch,
        latest: Sequence[GoldenChange],
        fresh: Sequence[GoldenChange],
    ) -> dict[str, Any] | None:
        links = batch.links
        version = {c.golden_id: c.version for c in latest}
        stale = {c.golden_id for c in latest} - {c.golden_id for c in fresh}
        replaced = ({*batch.relinked} | {link.golden_id for link in links}) - stale
        replaced |= {c.golden_id for c in fresh if c.kind == "RETIRED"}
        if not replaced:
            return None
        kept: dict[tuple[str, str, str], LinkRecord] = {}
        for link in links:
            if link.golden_id in replaced:
                a, b = sorted((link.a, link.b))
                kept[(link.golden_id, a, b)] = link
        rows = [
            {
                "entity": link.entity,
                "golden_id": g,
                "a": a,
                "b": b,
                "weight": link.weight,
                "probability": link.probability,
                "comparisons": [{"comparison": n, "level": lv, "weight": w} for n, lv, w in link.comparisons],
                "version": version.get(g),
            }
            for (g, a, b), link in sorted(kept.items())
        ]
        source = _source(rows, LINKS)
        ids = ", ".join(lit(g) for g in sorted(replaced))
        return dict(
            handle.merge(
                source,
                f"t.entity = {lit(self.entity)} AND t.entity = s.entity AND t.golden_id = s.golden_id"
                " AND t.a = s.a AND t.b = s.b",
                source_alias="s",
                target_alias="t",
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(
                predicate=f"t.entity = {lit(self.entity)} AND t.golden_id IN ({ids})"
            )
            .execute()
        )

    def _merge_lineage(self, handle: DeltaTable, events: Sequence[LineageEvent]) -> dict[str, Any] | None:
        if not events:
            return None
        unique = {e.event_id: e for e in events}
        rows = [
            {
                "entity": e.entity,
                "event_id": event_id,
                "kind": e.kind,
                "golden_id": e.golden_id,
                "others": sorted(e.others),
                "at": _ts(e.at_us),
                "cause": _cause(e.cause),
            }
            for event_id, e in sorted(unique.items())
        ]
        source = _source(rows, LINEAGE)
        return dict(
            handle.merge(
                source,
                f"t.entity = {lit(self.entity)} AND t.entity = s.entity AND t.event_id = s.event_id",
                source_alias="s",
                target_alias="t",
            )
            .when_not_matched_insert_all()
            .execute()
        )

    def close(self) -> None:
        """Drop the table handles."""
        for t in (self.golden, self.history, self.crosswalk, self.links, self.lineage):
            t.reset()


def _rows_written(metrics: Mapping[str, Any]) -> int:
    return int(metrics.get("num_target_rows_inserted", 0)) + int(metrics.get("num_target_rows_updated", 0))


# -- reading ------------------------------------------------------------------------------------


def _scan(path: Path) -> pl.LazyFrame:
    if not (path / "_delta_log").is_dir():
        raise TerminalError(f"no gold table at {path} (has the resolve flow written this entity yet?)")
    return pl.scan_delta(str(path))


def read_golden(
    delta_root: Path, entity: str, golden_id: str | None = None, *, include_retired: bool = True
) -> pl.DataFrame:
    """The current golden records of ``entity`` (one row per golden id, or only ``golden_id``'s),
    sorted by golden id.

    Raises :class:`TerminalError` when the table does not exist.
    """
    frame = _scan(gold_paths(delta_root, entity).golden)
    if golden_id is not None:
        frame = frame.filter(pl.col("golden_id") == golden_id)
    if not include_retired:
        frame = frame.filter(pl.col("golden_status") == "active")
    return frame.sort("golden_id").collect()


def read_history(delta_root: Path, entity: str, golden_id: str | None = None) -> pl.DataFrame:
    """SCD2 rows of ``entity`` (of one golden id when given), sorted by golden id and version."""
    frame = _scan(gold_paths(delta_root, entity).history)
    if golden_id is not None:
        frame = frame.filter(pl.col("golden_id") == golden_id)
    return frame.sort("golden_id", "version").collect()


def _of_entity(path: Path, entity: str, golden_id: str | None) -> pl.LazyFrame:
    frame = _scan(path).filter(pl.col("entity") == entity)
    if golden_id is not None:
        frame = frame.filter(pl.col("golden_id") == golden_id)
    return frame


def read_crosswalk(delta_root: Path, entity: str, golden_id: str | None = None) -> pl.DataFrame:
    """Crosswalk rows of ``entity`` (of one golden id when given, deleted records included)."""
    path = gold_paths(delta_root, entity).crosswalk
    return _of_entity(path, entity, golden_id).sort("record_id").collect()


def read_links(delta_root: Path, entity: str, golden_id: str | None = None) -> pl.DataFrame:
    """The current links of ``entity``'s clusters (of one golden id when given), strongest first."""
    path = gold_paths(delta_root, entity).links
    return (
        _of_entity(path, entity, golden_id)
        .sort("golden_id", "weight", "a", "b", descending=[False, True, False, False])
        .collect()
    )


def read_lineage(delta_root: Path, entity: str, golden_id: str | None = None) -> pl.DataFrame:
    """MERGED/SPLIT events of ``entity`` (naming ``golden_id`` on either side when given), by time."""
    frame = _scan(gold_paths(delta_root, entity).lineage).filter(pl.col("entity") == entity)
    if golden_id is not None:
        frame = frame.filter((pl.col("golden_id") == golden_id) | pl.col("others").list.contains(golden_id))
    return frame.sort("at", "event_id").collect()
