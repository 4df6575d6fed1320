"""The ingest flow's silver step: MERGEs beside the flow, the current rows passed on at once.

Why: a silver MERGE rewrites every file of the source table it touches (copy-on-write), so on a busy
machine one takes a second or more, and entity resolution used to wait for it and for a read of the
rows back before every batch. Here the MERGEs run on a writer thread per entity
(:class:`~flows.engine.background.BackgroundWriter`, batches that queued up combined into one MERGE)
and the step works out, for every key a batch touches, the row silver will hold once the batch is
merged, without reading silver:

* **Fast path**, the usual case: the key's newest change in the batch is newer than anything silver
  has for the key (a per-key index of the newest applied sequence, loaded once per source table)
  and newer than the table's last truncate, and it is a delete or a data change that carried every
  field (no TOAST placeholder) and every column the table has. Then the MERGE takes all of it, and
  the row is the folded change itself (``sinks.delta.silver_batch.fold``: the same fold the writer
  runs).
* **Slow path**, for everything else (late or replayed changes, unchanged-TOAST fields, truncates, a
  batch without some of the table's columns): wait for the writer to merge what is queued, then read
  those keys back from silver, as the flow always did.

Either way the output is what the read-back gave: the current row of every touched key.

Exactly once: the step is keyed by entity (one writer per silver table, so MERGEs never conflict);
its recovery snapshot holds the batches submitted and not yet merged, which a resume merges again
as the step is rebuilt at start-up, not on its next item (the MERGE is idempotent: transaction ids
and the sequence guard; the source resumes after those batches, so nothing else brings them). A resume
reloads the index from silver after those are merged, so silver may be ahead of the resumed
resolver: replayed changes are then "late" and take the slow path, which hands the resolver the
current rows, as before.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import polars as pl
from bytewax.operators import StatefulBatchLogic

from core.canonical import record_schema
from core.golden import Cause, RecordChange, json_value, record_id
from core.metrics import EVENTS_OUT, RETRIES, SILVER_ROWS_PATH, STAGE_SECONDS
from core.retry import retry_transient
from flows.engine.background import BackgroundWriter
from sinks.delta.silver import Engine, SchemaLike, SilverWriter, read_rows
from sinks.delta.silver_batch import (
    DATA_OPS,
    HELPER_PREFIX,
    KEY_COLUMNS,
    ROW_STATE,
    SEQ,
    TRUNCATE_KEY,
    Truncate,
    data_columns,
    fold,
    normalize,
    sequence,
)

log = logging.getLogger(__name__)

#: Lineage/state columns of a silver row that are not canonical attributes.
_NOT_ATTRIBUTES = frozenset({"mapping_version", "extras", "unavailable"})


def record_changes(entity: str, rows: pl.DataFrame, cause_of: dict[str, Cause]) -> list[RecordChange]:
    """Silver rows (soft-deleted included) as the resolve stage's input."""
    attrs = [c for c in data_columns(rows.columns) if c not in _NOT_ATTRIBUTES]
    out = []
    for r in rows.iter_rows(named=True):
        rid = record_id(r["source_system"], r["source_table"], r["source_key"])
        ts = r["source_ts"]
        ts_us = int(ts.timestamp() * 1_000_000) if ts is not None else 0
        values = None
        if not r["deleted"]:
            values = {a: json_value(r[a]) for a in attrs}
            # matching may compare a record's own key with another's reference (parent_ref);
            # golden records only take the entity's attributes, so these never reach gold
            values["source_system"], values["source_key"] = r["source_system"], r["source_key"]
        cause = cause_of.get(r["source_key"]) or Cause(
            rid, r["lsn"], ts_us, r["topic"], r["partition"], r["offset"]
        )
        out.append(RecordChange(entity, rid, r["source_system"], values, ts_us, cause))
    return out


def causes(system: str, table: str, part: pl.DataFrame) -> dict[str, Cause]:
    """Per key of one source table's records: its last change in the batch (what caused the row)."""
    last = part.unique("source_key", keep="last", maintain_order=True)
    return {
        r["source_key"]: Cause(
            record_id(system, table, r["source_key"]),
            r["lsn"],
            int(r["source_ts"].timestamp() * 1_000_000),
            r["topic"],
            r["partition"],
            r["offset"],
        )
        for r in last.select("source_key", "lsn", "source_ts", "topic", "partition", "offset").iter_rows(
            named=True
        )
        if r["source_key"] is not None
    }


@dataclass(frozen=True)
class MappedRecords:
    """Valid canonical records of one entity from one step activation (any source tables and
    Kafka partitions), bound for silver."""

    entity: str
    records: pl.DataFrame


class SeqIndex:
    """The newest change sequence silver holds per key of one source table, and its last truncate."""

    def __init__(self, seqs: dict[str, str], truncate: Truncate | None, columns: frozenset[str]) -> None:
        self.seqs = seqs
        self.truncate = truncate
        self.columns = columns
        """The silver table's data columns when the index was loaded."""

    @classmethod
    def load(cls, path: Path, system: str, table: str, initial: frozenset[str]) -> SeqIndex:
        """Read the index of ``system.table`` from the silver table at ``path``; if there is none
        yet, an empty index for a table that will be created with the data columns ``initial``."""
        if not (path / "_delta_log").is_dir():
            return cls({}, None, initial)
        scan = pl.scan_delta(str(path))
        names = scan.collect_schema().names()
        rows = (
            scan.filter((pl.col("source_system") == system) & (pl.col("source_table") == table))
            .select("source_key", *ROW_STATE)
            .collect()
        )
        truncate = None
        marks = rows.filter(pl.col("source_key") == TRUNCATE_KEY)
        if marks.height:
            mark = marks.row(0, named=True)
            truncate = Truncate(system, table, {c: mark[c] for c in ROW_STATE})
        keyed = rows.filter(pl.col("source_key") != TRUNCATE_KEY)
        seqs = dict(zip(keyed["source_key"].to_list(), keyed[SEQ].to_list(), strict=True))
        return cls(seqs, truncate, frozenset(data_columns(names)))


class SilverFeed:
    """Submits one entity's records to silver (in the background) and works out their current rows."""

    def __init__(
        self,
        delta_root: Path,
        entity: str,
        *,
        resolve: bool,
        write_interval_s: float = 0.0,
        resume: Sequence[MappedRecords] = (),
        schema: SchemaLike | Literal["entity"] | None = "entity",
        engine: Engine = "delta-rs",
    ) -> None:
        self.entity = entity
        self.resolve = resolve
        # "entity": the table is created with the canonical entity's columns (the flows' case)
        table_schema = record_schema(entity) if schema == "entity" else schema
        self.writer = SilverWriter(delta_root, entity, schema=table_schema, engine=engine)
        self._initial = frozenset(
            data_columns(list(pl.Schema(table_schema).names())) if table_schema is not None else ()
        )
        self._background = BackgroundWriter(
            self._write, name=f"silver-{entity}", min_interval_s=write_interval_s
        )
        self._index: dict[tuple[str, str], SeqIndex] = {}
        for item in resume:
            # merged before the crash or not: the MERGE is idempotent, so merge them again
            self._background.submit(item)
        if resume:
            # the index must be read from a silver that holds them
            self._background.flush()

    @property
    def path(self) -> Path:
        """The silver table."""
        return self.writer.path

    def _write(self, items: list[MappedRecords]) -> None:
        frames = [i.records for i in items if i.records.height]
        # frames of one schema merge together; a column added between two batches keeps them apart
        for records in concat_alike(frames):
            with STAGE_SECONDS.labels(stage="silver_merge").time():
                result = retry_transient(
                    partial(self.writer.apply, records),
                    operation=f"silver apply {self.entity}",
                    on_retry=lambda _e, _n: RETRIES.labels(operation="silver_apply").inc(),
                )
            EVENTS_OUT.labels(stage="silver").inc(result.rows_applied)

    def pending(self) -> list[MappedRecords]:
        """The batches submitted and not yet merged (the recovery snapshot)."""
        return self._background.pending()

    def flush(self) -> None:
        """Wait until everything submitted is merged."""
        self._background.flush()

    def apply(self, item: MappedRecords) -> list[RecordChange]:
        """Submit ``item`` to silver; with ``resolve``, return the current row of every key it
        touches (soft-deleted ones included) as :class:`~core.golden.RecordChange`, else nothing."""
        self._background.submit(item)
        if not self.resolve or item.records.height == 0:
            return []
        prepared = normalize(item.records).with_columns(sequence().alias(SEQ))
        out: list[RecordChange] = []
        for (system, table), part in prepared.group_by(
            ["source_system", "source_table"], maintain_order=True
        ):
            cause_of = causes(str(system), str(table), part)
            for rows in self._table_rows(str(system), str(table), part):
                out.extend(record_changes(self.entity, rows, cause_of))
        return out

    def _index_of(self, system: str, table: str) -> SeqIndex:
        index = self._index.get((system, table))
        if index is None:
            # everything this feed submitted for the table so far must be in silver first
            self.flush()
            index = self._index[(system, table)] = SeqIndex.load(self.path, system, table, self._initial)
        return index

    def _table_rows(self, system: str, table: str, part: pl.DataFrame) -> list[pl.DataFrame]:
        index = self._index_of(system, table)
        remembered = {(system, table): index.truncate} if index.truncate is not None else {}
        folded = fold(part, applied_at=dt.datetime.now(dt.UTC), remembered=remembered)
        rows = folded.rows.filter(pl.col("source_key") != TRUNCATE_KEY)
        data = list(folded.data)
        if folded.sweeps or not index.columns <= set(data):
            # a truncate touches the whole table; a table column the batch lacks keeps a value
            # only silver knows: read the rows back
            return [self._read_back(system, table, None if folded.sweeps else rows)]
        seqs = index.seqs
        # the batch's keys looked up in the index (not the index joined: it holds the whole table)
        known = pl.Series("__gs_known", [seqs.get(k, "") for k in rows["source_key"].to_list()], pl.String())
        helpers = [c for c in rows.columns if c.startswith(f"{HELPER_PREFIX}p")]
        newer = pl.col(SEQ) > pl.col("__gs_known")
        if index.truncate is not None:
            newer = newer & (pl.col(SEQ) > index.truncate.seq)
        complete = pl.all_horizontal([pl.col(h).is_null() for h in helpers]) if helpers else pl.lit(True)
        fast = newer & ((pl.col("op") == "d") | (pl.col("op").is_in(DATA_OPS) & complete))
        tagged = rows.with_columns(known).with_columns(fast.alias("__gs_fast"))
        quick = tagged.filter(pl.col("__gs_fast")).select(*KEY_COLUMNS, *data, *ROW_STATE)
        rest = tagged.filter(~pl.col("__gs_fast"))
        out = [quick] if quick.height else []
        SILVER_ROWS_PATH.labels(path="fast").inc(quick.height)
        SILVER_ROWS_PATH.labels(path="read_back").inc(rest.height)
        if rest.height:
            out.append(self._read_back(system, table, rest))
        for key, seq in zip(rows["source_key"].to_list(), rows[SEQ].to_list(), strict=True):
            if seq > index.seqs.get(key, ""):
                index.seqs[key] = seq
        index.columns |= set(data)  # the MERGE adds the batch's new columns to the table
        return out

    def _read_back(self, system: str, table: str, rows: pl.DataFrame | None) -> pl.DataFrame:
        """Merge what is queued, then read ``rows``' keys (None: the whole table) from silver."""
        with STAGE_SECONDS.labels(stage="silver_read_back").time():
            self.flush()
            keys = None if rows is None else rows["source_key"].to_list()
            current = read_rows(self.path, system, table, keys)
        if rows is None:
            # a truncate: the index of the whole table is rebuilt from silver
            self._index[(system, table)] = SeqIndex.load(self.path, system, table, self._initial)
        else:
            index = self._index[(system, table)]
            for key, seq in zip(current["source_key"].to_list(), current[SEQ].to_list(), strict=True):
                index.seqs[key] = seq
        return current


def concat_alike(frames: list[pl.DataFrame]) -> list[pl.DataFrame]:
    """``frames`` with each run of frames of one schema concatenated (order kept).

    Frames of different schemas (a column added by drift between two batches) stay apart: filling
    a missing column with nulls would overwrite stored values the change never carried.
    """
    runs: list[list[pl.DataFrame]] = []
    for frame in frames:
        if runs and runs[-1][0].schema == frame.schema:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    # one concatenation per run (concatenating pairwise would copy the run once per frame)
    return [run[0] if len(run) == 1 else pl.concat(run, how="vertical") for run in runs]


class SilverLogic(StatefulBatchLogic[MappedRecords, list[RecordChange], list[MappedRecords]]):
    """The silver step for one entity (Bytewax does not tell a builder its key: a fresh step builds
    its feed on the first item, a resumed one at once from its snapshot's batches).

    ``schema``: the silver table's columns when it is created (:class:`SilverFeed`'s argument).
    """

    def __init__(
        self,
        delta_root: Path,
        resolve: frozenset[str],
        write_interval_s: float,
        resume: list[MappedRecords] | None,
        *,
        schema: SchemaLike | Literal["entity"] | None = "entity",
        engine: Engine = "delta-rs",
    ) -> None:
        self._root = delta_root
        self._engine: Engine = engine
        self._resolve = resolve
        self._interval = write_interval_s
        self._schema = schema
        self._feed: SilverFeed | None = None
        if resume:
            # Merge the batches the crashed process had queued now, not when this entity's next
            # item arrives: Bytewax builds a resumed step at start-up, but after a crash at the end
            # of a burst no further item may come for hours, and the source has already moved past
            # these batches, so until then silver would lack them (and a restart would not help).
            self._feed = self._new_feed(resume[0].entity, resume)

    def _new_feed(self, entity: str, resume: Sequence[MappedRecords]) -> SilverFeed:
        return SilverFeed(
            self._root,
            entity,
            resolve=entity in self._resolve,
            write_interval_s=self._interval,
            resume=resume,
            schema=self._schema,
            engine=self._engine,
        )

    def _feed_for(self, entity: str) -> SilverFeed:
        if self._feed is None:
            self._feed = self._new_feed(entity, ())
        return self._feed

    def on_batch(self, values: list[MappedRecords]) -> tuple[Iterable[list[RecordChange]], bool]:
        """Submit every batch; pass on the current rows of the keys they touch (one item, if any)."""
        out: list[RecordChange] = []
        with STAGE_SECONDS.labels(stage="silver").time():
            for item in values:
                out.extend(self._feed_for(item.entity).apply(item))
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[list[RecordChange]], bool]:
        """Merge what is queued before the flow ends."""
        if self._feed is not None:
            self._feed.flush()
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> list[MappedRecords]:
        """The batches submitted and not yet merged (a resume merges them again)."""
        return self._feed.pending() if self._feed is not None else []
