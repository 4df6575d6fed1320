"""The silver layer: current canonical state per (source system, source table, source key).

One Delta table per canonical entity at ``<delta_root>/silver/<entity>``, partitioned by
``(source_system, source_table)``, holding for every key the state after the newest change applied:

    source_system, source_table, source_key      the key (the first two are the partition columns)
    <the entity's data columns>                   canonical values, from the mapping engine
    deleted, op, snapshot                         soft-delete marker and the last applied change
    lsn, tx_id, source_ts, mapping_version        lineage of that change
    topic, partition, offset                      its Kafka position
    change_seq                                    its sequence (see ``silver_batch``): the MERGE guard
    applied_at                                    when the writer committed it (UTC)

Table properties: change data feed on, a checkpoint every 20 commits, 15 minutes of deleted-file
retention (a random-key MERGE leaves a dead copy of the table per commit: see ``maintenance``).

A batch is applied with one MERGE (one Delta commit):

* rows at or below the committed application-transaction version of their Kafka partition are
  dropped first; the commit carries one ``Transaction(app_id, version=last offset)`` per
  (topic, partition) of the batch, read and written through the same :class:`DeltaTable` object;
* the rest is folded to one row per key (``silver_batch.fold``); a matched row is updated only when
  the folded change is newer (``s.change_seq > t.change_seq``), so a replay that got past the
  transaction check cannot regress state, late events are ignored and a soft-deleted row is revived
  only by a newer change; values the change does not carry (TOAST, deletes) come from the newest
  change in the batch that has them if that is newer than the row, else stay;
* a truncate adds a ``WHEN NOT MATCHED BY SOURCE`` clause that soft-deletes the other rows of its
  source table older than the truncate;
* the target scan is limited to the batch's partitions (and key range, without truncates), so a
  batch of one source table rewrites at most that table's files and writers of different source
  tables never conflict;
* a conflicting concurrent commit is retried (re-read, re-check transactions, re-merge) with
  backoff; other Delta or storage failures raise :class:`TransientError`, contract and schema
  violations :class:`TerminalError`, bad rows :class:`InvalidInputError`.

Batches of one Kafka partition must be applied in offset order (a later batch committed first would
make the earlier one look already committed).

Two engines apply the MERGE, with the same result (property-tested: rows, versions and change
data feed):

* ``rewrite`` (the default): the rows of the files the batch can touch are read with polars, merged
  by ``silver_rewrite.merge_rows`` and written back, and ``log_commit`` commits the new files, the
  change data files and the transactions itself (put-if-absent, as delta-rs commits). Files
  without a changed row are kept. Used for local tables whose protocol it honours
  (``log_commit.unsupported_reason``) and partition values that need no escaping in a path.
* ``delta-rs``: ``DeltaTable.merge`` with the clauses of ``silver_merge``; the fallback for every
  other table (logged once per reason).

Cost (``bench/silver``, 2 cores): both are copy-on-write, so a batch with random keys rewrites
every file of its source table. A 500k-row batch into a 1M-row table took delta-rs 9.3 s with the
change data feed on (4.6 s with it off: the feed costs as much as the MERGE) and the rewrite engine
3.4-5.9 s, about half of it writing Parquet (the table's files and the feed). Hence apply few,
large batches; per-commit cost grows with the source table, not the batch.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties
from deltalake.exceptions import (
    CommitFailedError,
    DeltaError,
    DeltaProtocolError,
    SchemaMismatchError,
    TableNotFoundError,
)
from deltalake.schema import Schema as DeltaSchema

from core.errors import TerminalError, TransientError
from core.metrics import RETRIES, SILVER_ROWS
from sinks.delta.log_commit import (
    CommitConflictError,
    commit,
    file_path,
    indexed_columns,
    partition_dir,
    remove_action,
    unsupported_reason,
    write_file,
)
from sinks.delta.maintenance import MaintenancePolicy, MaintenanceReport, maintain
from sinks.delta.silver_batch import (
    FIELD_SEQ_PREFIX,
    KEY_COLUMNS,
    ROW_STATE,
    SEQ,
    STATE_COLUMNS,
    TRUNCATE_KEY,
    Folded,
    Truncate,
    check_data_names,
    data_columns,
    delta_dtype,
    fold,
    latest_truncates,
    normalize,
    raise_if_invalid,
    sequence,
    split_invalid,
)
from sinks.delta.silver_merge import clauses, missing_columns, scope
from sinks.delta.silver_rewrite import FILE, merge_rows, source_tables

log = logging.getLogger(__name__)

__all__ = [
    "SILVER_CONFIGURATION",
    "SILVER_PARTITION_BY",
    "ApplyResult",
    "SilverWriter",
    "read_current",
    "read_rows",
    "silver_app_id",
    "silver_path",
    "split_invalid",
]

SILVER_PARTITION_BY = ["source_system", "source_table"]
SILVER_CONFIGURATION: dict[str, str | None] = {
    "delta.enableChangeDataFeed": "true",
    # a load replays at most 19 JSON commits after the last checkpoint (~1-2 ms each)
    "delta.checkpointInterval": "20",
    # see sinks.delta.maintenance: every random-key MERGE leaves a dead copy of its partitions
    # (~110 MB per commit at 1M rows), so the window is short; longer than any read of the table
    # and than the lag of change-data-feed readers, which need the files of unread versions
    "delta.deletedFileRetentionDuration": "interval 15 minutes",
    # time travel and CDF cannot go further back than the files anyway; bounds _delta_log listing
    "delta.logRetentionDuration": "interval 1 days",
}
_ENTITY = re.compile(r"^[a-z][a-z0-9_]*$")

SchemaLike: TypeAlias = pa.Schema | Mapping[str, pl.DataType]
Engine: TypeAlias = Literal["rewrite", "delta-rs"]
ENGINES: Final = ("rewrite", "delta-rs")
#: Rows per data file the rewrite engine writes (a 1M-row source table: 4 files of ~40 MB).
REWRITE_FILE_ROWS: Final = 250_000


def silver_path(delta_root: Path, entity: str) -> Path:
    """Where the silver table of ``entity`` lives."""
    if not _ENTITY.match(entity):
        raise ValueError(f"entity names are lower-case identifiers, not {entity!r}")
    return Path(delta_root) / "silver" / entity


def silver_app_id(entity: str, topic: str, partition: int) -> str:
    """The Delta application-transaction id of one Kafka partition's stream into a silver table."""
    return f"goldstream.silver.{entity}:{topic}:{partition}"


@dataclass(frozen=True)
class ApplyResult:
    """What one :meth:`SilverWriter.apply` did."""

    rows_in: int
    rows_applied: int
    """Silver rows inserted or updated by the commit (including rows a truncate soft-deleted)."""
    rows_ignored_stale: int
    """Folded changes older than (or equal to) the silver row: no effect. A lower bound when the
    batch held a truncate (delta-rs counts its sweep together with the updates)."""
    rows_skipped_committed: int
    """Rows at or below their partition's committed transaction version (applied before)."""
    commit_version: int | None
    """The table version created, or None when nothing changed."""
    seconds: float
    rows_superseded: int = 0
    """Changes replaced by a later change of the same key within the batch."""
    attempts: int = 0
    """MERGE attempts (more than 1 after concurrent-commit conflicts)."""
    maintenance: MaintenanceReport | None = None
    """Set when this call ran the automatic maintenance."""
    steps: Mapping[str, float] = field(default_factory=dict)
    """Seconds per step of the last attempt: ``prepare`` (transaction check, fold), then
    ``read``, ``merge``, ``write``, ``commit`` (rewrite engine) or ``merge`` (delta-rs)."""


def _schema_dtypes(schema: SchemaLike | None) -> dict[str, pl.DataType] | None:
    """The data columns (name -> stored dtype) of an explicit schema argument."""
    if schema is None:
        return None
    if isinstance(schema, pa.Schema):
        pl_schema = pl.DataFrame(schema.empty_table()).schema
    else:
        pl_schema = pl.Schema(schema)
    names = data_columns(list(pl_schema.names()))
    check_data_names(names)
    return {n: delta_dtype(n, pl_schema[n]) for n in names}


def _arrow_schema(data: Mapping[str, pl.DataType]) -> pa.Schema:
    columns: dict[str, pl.DataType] = {k: pl.String() for k in KEY_COLUMNS}
    columns.update(data)
    columns.update(STATE_COLUMNS)
    return pl.DataFrame(schema=columns).to_arrow().schema


class _NotRewritable(Exception):  # noqa: N818 (a signal to fall back, not an error)
    """The rewrite engine cannot apply this batch; delta-rs's MERGE will."""


def _by_partition(frame: pl.DataFrame) -> list[tuple[tuple[str, str], pl.DataFrame]]:
    """``frame`` split by source table."""
    tables = source_tables(frame)
    if len(tables) == 1:
        return [(tables[0], frame)]
    return [
        (
            (system, table),
            frame.filter((pl.col("source_system") == system) & (pl.col("source_table") == table)),
        )
        for system, table in tables
    ]


def _location(system: str, source_table: str) -> tuple[dict[str, str], str | None]:
    """The partition values of a source table and their directory (None: it needs escaping)."""
    values = {"source_system": system, "source_table": source_table}
    return values, partition_dir(values, SILVER_PARTITION_BY)


class SilverWriter:
    """Applies batches of canonical records of one entity to its silver table.

    ``schema`` gives the entity's data columns (a ``pyarrow.Schema``, a polars schema or a mapping of
    names to polars dtypes; contract columns in it are ignored); without it the first batch (or the
    existing table) decides. Data columns a later batch adds are added to the table; columns a batch
    lacks keep their values. ``maintenance`` runs :func:`~sinks.delta.maintenance.maintain` after
    enough commits (None: never; run ``goldstream maintain`` instead). ``engine`` picks the MERGE
    (module docstring): ``rewrite`` falls back to ``delta-rs`` where it cannot commit, and
    ``writer_properties`` apply to the delta-rs MERGE only (the rewrite engine writes Snappy Parquet).
    """

    def __init__(
        self,
        delta_root: Path,
        entity: str,
        *,
        schema: SchemaLike | None = None,
        maintenance: MaintenancePolicy | None = MaintenancePolicy(),  # noqa: B008 (frozen)
        max_attempts: int = 12,
        writer_properties: WriterProperties | None = None,
        sleep: Callable[[float], None] = time.sleep,
        engine: Engine = "rewrite",
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"silver engine must be one of {ENGINES}, not {engine!r}")
        self.engine = engine
        self.entity = entity
        self.path = silver_path(delta_root, entity)
        self.uri = str(self.path)
        self.maintenance = maintenance
        self.max_attempts = max_attempts
        self.writer_properties = writer_properties
        self._sleep = sleep
        self._schema = _schema_dtypes(schema)
        self._table: DeltaTable | None = None
        self._commits_since_maintenance = 0
        self._watermark_cache: dict[str, pl.DataFrame | None] = {}
        self._fallback_reason: str | None = None
        self._steps: dict[str, float] = {}
        self._out = {
            outcome: SILVER_ROWS.labels(entity=entity, outcome=outcome)
            for outcome in ("applied", "stale", "superseded", "already_committed")
        }

    # -- table ----------------------------------------------------------------------------------

    def _open(self, batch_data: Mapping[str, pl.DataType]) -> DeltaTable:
        if self._table is not None:
            return self._table
        try:
            self._table = DeltaTable(self.uri)
        except TableNotFoundError:
            data = dict(self._schema) if self._schema is not None else {}
            for name, dtype in batch_data.items():
                data.setdefault(name, dtype)
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                self._table = DeltaTable.create(
                    self.uri,
                    _arrow_schema(data),
                    partition_by=SILVER_PARTITION_BY,
                    mode="ignore",  # another worker may create it at the same moment
                    configuration=SILVER_CONFIGURATION,
                )
            except DeltaError:
                self._table = DeltaTable(self.uri)
        return self._table

    @staticmethod
    def _target(table: DeltaTable) -> tuple[dict[str, pl.DataType], set[str]]:
        """Data columns of the table (name -> polars dtype), and those with a ``seq__`` column."""
        schema = pa.schema(table.schema().to_arrow())
        pl_schema = pl.DataFrame(schema.empty_table()).schema
        names = list(pl_schema.names())
        tracked = {n[len(FIELD_SEQ_PREFIX) :] for n in names if n.startswith(FIELD_SEQ_PREFIX)}
        return {n: pl_schema[n] for n in data_columns(names)}, tracked

    # -- apply ----------------------------------------------------------------------------------

    def apply(self, records: pl.DataFrame) -> ApplyResult:
        """Apply one batch of canonical records (any mix of keys, source tables and partitions).

        Raises :class:`TransientError` (retry the same batch: safe), :class:`TerminalError` (input
        or table does not fit the contract) or :class:`InvalidInputError` (a row breaks the
        contract; use :func:`split_invalid` first to quarantine such rows instead).
        """
        started = time.perf_counter()
        self._steps = {}
        rows_in = records.height
        if rows_in == 0:
            return ApplyResult(0, 0, 0, 0, None, 0.0)
        frame = normalize(records, self._schema)
        raise_if_invalid(frame)
        batch_data = {n: frame.schema[n] for n in data_columns(frame.columns)}
        attempt = 0
        while True:
            attempt += 1
            if attempt > self.max_attempts + 1:  # +1: a schema change costs one extra round
                raise TransientError(f"{self.uri}: no MERGE after {attempt - 1} rounds")
            table = self._open(batch_data)
            try:
                table.update_incremental()
                target, tracked = self._target(table)
                fresh = self._uncommitted(table, frame)
            except (OSError, DeltaError) as exc:
                self._table = None
                raise TransientError(f"{self.uri}: reading the table failed: {exc}") from exc
            skipped = rows_in - fresh.height
            if fresh.height == 0:
                self._out["already_committed"].inc(skipped)
                return ApplyResult(
                    rows_in, 0, 0, skipped, None, time.perf_counter() - started, attempts=attempt
                )
            try:
                remembered = self._remembered(table)
            except (OSError, DeltaError, pl.exceptions.PolarsError) as exc:
                self._table = None
                raise TransientError(f"{self.uri}: reading truncate watermarks failed: {exc}") from exc
            prepared = normalize(fresh, target).with_columns(sequence().alias(SEQ))
            absent = [c for c in target if c not in prepared.columns]
            if absent:  # the batch does not carry these fields: they keep their values
                prepared = prepared.with_columns(
                    *[pl.lit(None, target[c]).alias(c) for c in absent],
                    pl.concat_list("unavailable", *[pl.lit(c) for c in absent]).alias("unavailable"),
                )
            folded = fold(prepared, applied_at=dt.datetime.now(dt.UTC), remembered=remembered)
            self._steps["prepare"] = time.perf_counter() - started
            version_before = table.version()
            try:
                missing = missing_columns(folded, target, tracked)
                if missing:
                    self._add_columns(table, missing)
                    continue  # re-read the schema
                metrics = self._merge(table, folded, target, tracked, fresh)
                break
            except (CommitFailedError, CommitConflictError) as exc:
                RETRIES.labels(operation="silver_merge").inc()
                if attempt >= self.max_attempts:
                    self._table = None
                    raise TransientError(
                        f"{self.uri}: MERGE still conflicting after {attempt} attempts: {exc}"
                    ) from exc
                delay = min(2.0, 0.05 * 2 ** (attempt - 1))
                log.info("%s: concurrent commit, retrying MERGE in %.2fs: %s", self.uri, delay, exc)
                self._sleep(random.uniform(delay / 2, delay))
            except (SchemaMismatchError, DeltaProtocolError) as exc:
                raise TerminalError(f"{self.uri}: the batch does not fit the table: {exc}") from exc
            except (OSError, DeltaError) as exc:
                # the commit may or may not have landed: the retry re-reads the transactions
                self._table = None
                raise TransientError(f"{self.uri}: MERGE failed: {exc}") from exc
        version_after = table.version()
        committed = version_after if version_after != version_before else None
        inserted = int(metrics.get("num_target_rows_inserted", 0))
        updated = int(metrics.get("num_target_rows_updated", 0))
        stale = max(0, folded.rows.height - inserted - updated)
        self._out["applied"].inc(inserted + updated)
        self._out["stale"].inc(stale)
        self._out["superseded"].inc(folded.superseded)
        self._out["already_committed"].inc(skipped)
        report = self._maybe_maintain(table) if committed is not None else None
        return ApplyResult(
            rows_in=rows_in,
            rows_applied=inserted + updated,
            rows_ignored_stale=stale,
            rows_skipped_committed=skipped,
            commit_version=committed,
            seconds=time.perf_counter() - started,
            rows_superseded=folded.superseded,
            steps=dict(self._steps),
            attempts=attempt,
            maintenance=report,
        )

    def _remembered(self, table: DeltaTable) -> dict[tuple[str, str], Truncate]:
        """The truncate watermark rows of the table, per source table.

        Only files whose smallest key is :data:`TRUNCATE_KEY` hold one (it sorts before every real
        key), so a table that never saw a truncate costs nothing; files are immutable, so what a
        file holds is read once.
        """
        actions = pa.table(table.get_add_actions(flatten=True))
        if "min.source_key" not in actions.column_names:
            return {}
        found = actions.filter(pc.equal(actions["min.source_key"], TRUNCATE_KEY))
        paths = found["path"].to_pylist()
        self._watermark_cache = {p: self._watermark_cache.get(p) for p in paths}
        rows: list[pl.DataFrame] = []
        for path, system, source_table in zip(
            paths,
            found["partition.source_system"].to_pylist(),
            found["partition.source_table"].to_pylist(),
            strict=True,
        ):
            cached = self._watermark_cache[path]
            if cached is None:
                cached = (
                    pl.scan_parquet(self.path / path)
                    .filter(pl.col("source_key") == TRUNCATE_KEY)
                    .select(list(ROW_STATE))
                    .collect()
                    .with_columns(
                        pl.lit(system, pl.String).alias("source_system"),
                        pl.lit(source_table, pl.String).alias("source_table"),
                    )
                )
                self._watermark_cache[path] = cached
            rows.append(cached)
        if not rows:
            return {}
        return latest_truncates(pl.concat(rows, how="vertical_relaxed"))

    def _uncommitted(self, table: DeltaTable, frame: pl.DataFrame) -> pl.DataFrame:
        """Rows above the committed transaction version of their (topic, partition)."""
        streams = frame.select("topic", "partition").unique().rows()
        floors: list[tuple[str, int, int]] = []
        for topic, partition in streams:
            version: Any = table.transaction_version(silver_app_id(self.entity, topic, partition))
            if version is not None:
                floors.append((topic, partition, int(version)))
        if not floors:
            return frame
        committed = pl.DataFrame(
            floors,
            schema={"topic": pl.String(), "partition": pl.Int32(), "__gs_floor": pl.Int64()},
            orient="row",
        )
        return (
            frame.join(committed, on=["topic", "partition"], how="left", maintain_order="left")
            .filter(pl.col("__gs_floor").is_null() | (pl.col("offset") > pl.col("__gs_floor")))
            .drop("__gs_floor")
        )

    def _add_columns(self, table: DeltaTable, columns: Mapping[str, pl.DataType]) -> None:
        """Add nullable columns (a metadata-only commit); a writer that added them first wins."""
        log.info("%s: adding columns %s", self.uri, list(columns))
        fields = DeltaSchema.from_arrow(pl.DataFrame(schema=dict(columns)).to_arrow().schema).fields
        try:
            table.alter.add_columns(fields)
        except DeltaError as exc:
            table.update_incremental()
            present = set(pa.schema(table.schema().to_arrow()).names)
            if not set(columns) <= present:
                raise TransientError(f"{self.uri}: adding columns {list(columns)} failed: {exc}") from exc

    def _merge(
        self,
        table: DeltaTable,
        folded: Folded,
        target: Mapping[str, pl.DataType],
        tracked: set[str],
        fresh: pl.DataFrame,
    ) -> dict[str, Any]:
        versions = fresh.group_by("topic", "partition").agg(pl.col("offset").max()).sort("topic", "partition")
        transactions = [
            (silver_app_id(self.entity, topic, partition), int(offset))
            for topic, partition, offset in versions.iter_rows()
        ]
        custom = {
            "goldstream.writer": "silver",
            "goldstream.entity": self.entity,
            "goldstream.offsets": ",".join(f"{app}@{v}" for app, v in transactions),
        }
        if self.engine == "rewrite":
            reason = unsupported_reason(table) or self._unsafe_partition(folded)
            if reason is None:
                try:
                    return self._rewrite(table, folded, tracked, transactions, custom)
                except _NotRewritable as exc:  # found while reading, before anything was written
                    reason = str(exc)
            if reason != self._fallback_reason:
                log.warning("%s: MERGE through delta-rs, not the rewrite engine: %s", self.uri, reason)
                self._fallback_reason = reason
        props = CommitProperties(
            app_transactions=[Transaction(app_id=app, version=v) for app, v in transactions],
            custom_metadata=custom,
        )
        merge = clauses(folded, target, tracked)
        merger = table.merge(
            folded.rows.to_arrow(),
            merge.predicate,
            source_alias="s",
            target_alias="t",
            writer_properties=self.writer_properties,
            commit_properties=props,
        )
        merger = merger.when_matched_update(merge.update, predicate=merge.update_predicate)
        merger = merger.when_not_matched_insert(merge.insert)
        for updates, predicate in merge.sweeps:
            merger = merger.when_not_matched_by_source_update(updates, predicate=predicate)
        t0 = time.perf_counter()
        result: dict[str, Any] = merger.execute()
        self._steps["merge"] = time.perf_counter() - t0
        return result

    # -- the rewrite engine (sinks.delta.silver_rewrite + sinks.delta.log_commit) -----------------

    @staticmethod
    def _unsafe_partition(folded: Folded) -> str | None:
        """A partition value the rewrite engine would have to escape in a path (None: all plain)."""
        for system, source_table in source_tables(folded.rows):
            if _location(system, source_table)[1] is None:
                return f"partition value {system!r}/{source_table!r} needs escaping"
        return None

    def _candidates(self, table: DeltaTable, folded: Folded) -> pl.DataFrame:
        """The files the batch's keys can be in: per source table of the batch, the files whose
        ``source_key`` range meets the batch's (all of them for a truncated source table)."""
        actions = pl.from_arrow(pa.table(table.get_add_actions(flatten=True)))
        assert isinstance(actions, pl.DataFrame)
        if actions.height == 0:
            return actions
        truncated = {t.table for t in folded.sweeps}
        ranges = folded.rows.group_by(SILVER_PARTITION_BY).agg(
            pl.col("source_key").min().alias("lo"), pl.col("source_key").max().alias("hi")
        )
        has_stats = "min.source_key" in actions.columns and "max.source_key" in actions.columns
        picked: list[pl.DataFrame] = []
        for system, source_table, lo, hi in ranges.iter_rows():
            rows = actions.filter(
                (pl.col("partition.source_system") == system)
                & (pl.col("partition.source_table") == source_table)
            )
            if has_stats and (system, source_table) not in truncated:
                # a file without statistics may hold any key
                rows = rows.filter(
                    (pl.col("min.source_key").is_null() | (pl.col("min.source_key") <= hi))
                    & (pl.col("max.source_key").is_null() | (pl.col("max.source_key") >= lo))
                )
            picked.append(rows)
        return pl.concat(picked) if picked else actions.clear()

    def _read_files(self, files: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
        """The rows of ``files`` in the table's columns (a column a file predates is null), with
        the file's index in ``files`` as :data:`~sinks.delta.silver_rewrite.FILE`."""
        frames = []
        for i, (path, system, source_table) in enumerate(
            files.select("path", "partition.source_system", "partition.source_table").iter_rows()
        ):
            frame = pl.read_parquet(file_path(self.path, path))
            frames.append(
                frame.select(
                    *[
                        pl.col(n).cast(d) if n in frame.columns else pl.lit(None, d).alias(n)
                        for n, d in schema.items()
                        if n not in SILVER_PARTITION_BY
                    ],
                    pl.lit(system, pl.String).alias("source_system"),
                    pl.lit(source_table, pl.String).alias("source_table"),
                    pl.lit(i, pl.Int64).alias(FILE),
                ).select(*schema.names(), FILE)
            )
        if not frames:
            return pl.DataFrame(schema={**dict(schema), FILE: pl.Int64()})
        return pl.concat(frames)

    def _rewrite(
        self,
        table: DeltaTable,
        folded: Folded,
        tracked: set[str],
        transactions: list[tuple[str, int]],
        custom: Mapping[str, str],
    ) -> dict[str, Any]:
        """The MERGE computed with polars and committed by this writer (change data feed included)."""
        read_version = table.version()
        schema = pl.DataFrame(pa.schema(table.schema().to_arrow()).empty_table()).schema
        t0 = time.perf_counter()
        files = self._candidates(table, folded)
        try:
            target = self._read_files(files, schema)
        except ValueError as exc:  # a file outside the table's folder (file_path)
            raise _NotRewritable(str(exc)) from exc
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise TransientError(f"{self.uri}: reading the files to rewrite failed: {exc}") from exc
        t1 = time.perf_counter()
        result = merge_rows(target, folded, tracked, schema)
        t2 = time.perf_counter()
        self._steps.update(read=t1 - t0, merge=t2 - t1)
        if result.inserted == 0 and result.updated == 0:
            # nothing to write: no commit, as delta-rs does (the sequence guard stops a replay anyway)
            return {"num_target_rows_inserted": 0, "num_target_rows_updated": 0}
        columns = [c for c in schema.names() if c not in SILVER_PARTITION_BY]
        stats_columns = indexed_columns(table, columns)
        now_ms = int(time.time() * 1000)
        written: list[Path] = []
        actions: list[dict[str, Any]] = []
        try:
            for (system, source_table), part in _by_partition(result.rows):
                values, directory = _location(system, source_table)
                assert directory is not None  # checked by _unsafe_partition
                data = part.select(columns)
                for start in range(0, data.height, REWRITE_FILE_ROWS):
                    added = write_file(
                        self.path,
                        data.slice(start, REWRITE_FILE_ROWS),
                        values,
                        directory,
                        change_data=False,
                        stats_columns=stats_columns,
                    )
                    written.append(self.path / added.path)
                    actions.append(added.add(now_ms))
            for (system, source_table), part in _by_partition(result.changes):
                values, directory = _location(system, source_table)
                assert directory is not None
                cdc = write_file(
                    self.path, part.drop(SILVER_PARTITION_BY), values, directory, change_data=True
                )
                written.append(self.path / cdc.path)
                actions.append(cdc.cdc())
            replaced = files.with_row_index("__i").filter(pl.col("__i").is_in(list(result.changed_files)))
            for path, system, source_table, size in replaced.select(
                "path", "partition.source_system", "partition.source_table", "size_bytes"
            ).iter_rows():
                actions.append(remove_action(path, _location(system, source_table)[0], int(size), now_ms))
            t3 = time.perf_counter()
            self._steps["write"] = t3 - t2
            commit(
                table,
                actions,
                read_version=read_version,
                operation="MERGE",
                parameters={"predicate": scope(folded), "engine": "goldstream rewrite"},
                metrics={
                    "num_source_rows": folded.rows.height,
                    "num_target_rows_inserted": result.inserted,
                    "num_target_rows_updated": result.updated,
                    "num_target_files_scanned": files.height,
                    "num_target_files_removed": len(result.changed_files),
                    "num_target_files_added": sum("add" in a for a in actions),
                },
                app_transactions=transactions,
                custom_metadata=custom,
            )
            self._steps["commit"] = time.perf_counter() - t3
        except BaseException:
            for path in written:  # never committed: nothing refers to them
                path.unlink(missing_ok=True)
            raise
        return {
            "num_target_rows_inserted": result.inserted,
            "num_target_rows_updated": result.updated,
        }

    # -- maintenance ----------------------------------------------------------------------------

    def _maybe_maintain(self, table: DeltaTable) -> MaintenanceReport | None:
        policy = self.maintenance
        if policy is None:
            return None
        self._commits_since_maintenance += 1
        due = self._commits_since_maintenance >= policy.every_commits
        if not due and len(table.file_uris()) <= policy.max_files:
            return None
        self._commits_since_maintenance = 0
        try:
            return maintain(
                self.path,
                target_file_size=policy.target_file_size,
                zorder_by=policy.zorder_by,
                retention=policy.retention,
                compact_min_files=policy.compact_min_files,
                layer="silver",
            )
        except (TransientError, TerminalError) as exc:
            # best effort: the next run (or `goldstream maintain`) catches up
            log.warning("%s: automatic maintenance failed: %s", self.uri, exc)
            return None

    def close(self) -> None:
        """Drop the table handle."""
        self._table = None


def read_current(path: str | Path, include_deleted: bool = False) -> pl.DataFrame:
    """The current state of a silver table, in table column order: key, data, state.

    Soft-deleted rows only when ``include_deleted``; never the truncate watermark rows (key
    :data:`~sinks.delta.silver_batch.TRUNCATE_KEY`, ``deleted`` true: other readers that filter on
    ``deleted`` skip them too).
    """
    frame = pl.scan_delta(str(path)).filter(pl.col("source_key") != TRUNCATE_KEY)
    if not include_deleted:
        frame = frame.filter(~pl.col("deleted"))
    names = frame.collect_schema().names()
    data = data_columns(names)
    order = [*KEY_COLUMNS, *data, *[c for c in STATE_COLUMNS if c in names]]
    return frame.select(order).collect()


def read_rows(
    path: str | Path, source_system: str, source_table: str, keys: list[str] | None = None
) -> pl.DataFrame:
    """Current rows of one source table in a silver table, soft-deleted ones included.

    ``keys`` limits the read to those source keys (None: the whole source table, e.g. after a
    truncate). The partition columns prune the scan to that source table's files.
    """
    frame = pl.scan_delta(str(path)).filter(
        (pl.col("source_system") == source_system)
        & (pl.col("source_table") == source_table)
        & (pl.col("source_key") != TRUNCATE_KEY)
    )
    if keys is not None:
        frame = frame.filter(pl.col("source_key").is_in(keys))
    return frame.collect()
