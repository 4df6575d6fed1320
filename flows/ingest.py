"""The ingest dataflow: bronze, canonical mapping and silver, feeding entity resolution.

    Kafka (one Bytewax partition per Kafka partition, batches)
      -> decode (cdc.envelope)                     tombstones/heartbeats counted, bad messages rejected
      -> bronze   (BronzeWriter)                   raw change log per source table, quarantine + DLQ
      -> silver   (SilverStage)                    config/mappings -> canonical records -> silver MERGE;
                                                   mapping rejects -> quarantine (stage "mapping") + DLQ;
                                                   schema drift handled by each mapping's policy
      -> RecordChange batches                      the silver state of every key the batch touched,
                                                   minus the echo of our own pushes (flows.propagate.echo)
      -> resolve  (flows.resolve.operator)         keyed by entity type: matching, clustering, golden
                                                   records (entities with matching + survivorship config);
                  or (flows.resolve.staged_operator) with dataflow.resolve_mode: staged, the parallel
                                                   stages: records, blocks, pairs (key groups), cluster
                                                   (entity type), values, golden (golden id key groups)
      -> golden_publish                            the golden.<entity> topic (what propagation waits for)
      -> gold (flows.engine.background)            gold Delta tables on a writer thread per entity;
                                                   what is not yet written is in the recovery snapshot

Every stage is idempotent per Kafka partition (Delta transaction ids + silver's sequence guard), so
the at-least-once replay after a crash or a rescale changes nothing twice. Stages with side effects
are ``map`` steps holding per-worker writers: items of one Kafka partition stay on one worker and in
offset order, which the silver writer requires.

What the resolve stage receives is read back from silver after the MERGE, not taken from the batch:
silver's guard may have ignored a late or duplicated change, and TOAST placeholders are only filled
there, so the silver row is the one truth about a record's current state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import polars as pl
import pyarrow as pa
from bytewax import operators as op
from bytewax.dataflow import Dataflow

from cdc.connectors import ConnectorFile
from cdc.topics import ensure_topics
from core.canonical import record_schema
from core.events import ChangeBatch, Rejected
from core.golden import (
    Cause,
    GoldBatch,
    RecordChange,
    combine_batches,
    golden_topic,
    json_value,
    record_id,
    split_record_id,
)
from core.metrics import EVENTS_IN, EVENTS_OUT, RETRIES, SCHEMA_DRIFT, SKIPPED, STAGE_SECONDS
from core.retry import retry_transient
from core.settings import Settings
from flows.bronze import BronzeWriter, Quarantine, decoded_changes
from flows.canonical import MappedBatch, MappingSet, compile_mappings, map_batch
from flows.engine.background import BackgroundWriter, write_in_background
from flows.engine.sink import WriterSink
from flows.propagate.echo import EchoFilter
from flows.resolve.operator import resolve
from flows.resolve.staged_operator import resolve_staged
from sinks.delta.gold import GoldWriter
from sinks.delta.silver import SilverWriter, read_rows, split_invalid
from sinks.delta.silver_batch import data_columns
from sinks.dlq import DeadLetterProducer
from sinks.golden_topic import GoldenPublisher

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Lineage/state columns of a silver row that are not canonical attributes.
_NOT_ATTRIBUTES = frozenset({"mapping_version", "extras", "unavailable"})
_CAUSE_COLUMNS = ("source_key", "lsn", "source_ts", "topic", "partition", "offset")


class PerWorker(Generic[T]):
    """One lazily built object per worker thread (Bytewax runs each worker in its own thread).

    Writers hold open Delta tables and Kafka producers, which are neither picklable nor meant to be
    shared between threads, so ``map`` steps with side effects fetch theirs from here.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._local = threading.local()

    def get(self) -> T:
        """This thread's object (built on first use)."""
        obj: T | None = getattr(self._local, "obj", None)
        if obj is None:
            obj = self._factory()
            self._local.obj = obj
        return obj


def _raw_messages(bronze: pl.DataFrame) -> dict[int, tuple[bytes | None, bytes | None, int]]:
    """Kafka key, value and timestamp (ms) per offset, rebuilt from bronze rows.

    Quarantine keeps the original message so ``goldstream dlq replay`` can re-send it as it was.
    """
    out = {}
    for r in bronze.select("offset", "key", "envelope", "kafka_ts").iter_rows(named=True):
        ts = r["kafka_ts"]
        key = r["key"].encode() if r["key"] is not None else None
        val = r["envelope"].encode() if r["envelope"] is not None else None
        out[r["offset"]] = (key, val, int(ts.timestamp() * 1000) if ts is not None else 0)
    return out


def mapping_rejects(frame: pl.DataFrame, bronze: pl.DataFrame) -> tuple[Rejected, ...]:
    """Quarantine entries for the mapping engine's rejects (:data:`flows.canonical.REJECT_SCHEMA`)."""
    raw = _raw_messages(bronze)
    out = []
    for r in frame.iter_rows(named=True):
        key, val, ts = raw.get(r["offset"], (r["key"], r["value"], 0))
        out.append(
            Rejected(
                reason=r["reason"],
                detail=r["detail"],
                topic=r["topic"],
                partition=r["partition"],
                offset=r["offset"],
                kafka_ts_ms=ts,
                key=key,
                value=val,
                stage=r["stage"],
            )
        )
    return tuple(out)


def invalid_rejects(bad: pl.DataFrame, bronze: pl.DataFrame) -> tuple[Rejected, ...]:
    """Quarantine entries for canonical records the silver contract refuses (``split_invalid``)."""
    raw = _raw_messages(bronze)
    out = []
    for r in bad.select("reason", "topic", "partition", "offset", "source_key").iter_rows(named=True):
        key, val, ts = raw.get(r["offset"], (None, None, 0))
        out.append(
            Rejected(
                reason="invalid_record",
                detail=f"{r['reason']} (source key {r['source_key']!r})",
                topic=r["topic"],
                partition=r["partition"],
                offset=r["offset"],
                kafka_ts_ms=ts,
                key=key,
                value=val,
                stage="validation",
            )
        )
    return tuple(out)


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


BronzeTables = dict[tuple[str, str, str], pa.Table]
"""A batch's bronze rows per source table ``(system, schema, table)``."""


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


def nonempty(changes: list[RecordChange]) -> list[list[RecordChange]]:
    """One downstream item holding ``changes``, or none when nothing changed."""
    return [changes] if changes else []


class SilverStage:
    """Maps bronze rows to canonical records, applies them to silver, reports what changed.

    ``resolve_entities``: entities whose changed records are read back and emitted for entity
    resolution (others are only written to silver).
    """

    def __init__(
        self,
        delta_root: Path,
        mappings: MappingSet,
        quarantine: Quarantine,
        *,
        resolve_entities: Iterable[str] = (),
    ) -> None:
        self._root = delta_root
        self._mappings = mappings
        self._quarantine = quarantine
        self._resolve = frozenset(resolve_entities)
        self._writers: dict[str, SilverWriter] = {}
        self._unmapped_logged: set[tuple[str, str, str]] = set()

    def _writer(self, entity: str) -> SilverWriter:
        if entity not in self._writers:
            self._writers[entity] = SilverWriter(self._root, entity, schema=record_schema(entity))
        return self._writers[entity]

    def apply(self, batch: ChangeBatch, tables: BronzeTables) -> list[RecordChange]:
        """Map and apply one decoded batch's bronze rows; return the changed records to resolve."""
        return self.apply_many([(batch, tables)])

    def apply_many(self, written: Sequence[tuple[ChangeBatch, BronzeTables]]) -> list[RecordChange]:
        """Map the bronze rows of several decoded batches, then apply them to silver together.

        Each batch's rejects are quarantined with that batch's position. The records of one source
        table from all the batches (the partitions of its topic read in one activation) go to silver
        in one MERGE: with keys spread over the table a MERGE rewrites most of its files whatever
        its size, so one MERGE per partition batch multiplied that cost on the critical path.
        (Different partitions never hold the same key, and the MERGE orders by sequence anyway.)
        """
        pending: dict[tuple[str, str, str], list[pl.DataFrame]] = {}
        entity_of: dict[tuple[str, str, str], str] = {}
        for batch, tables in written:
            for ident, data in tables.items():
                mapped = self._map(batch, ident, data)
                if mapped is not None:
                    entity_of[ident], records = mapped
                    pending.setdefault(ident, []).append(records)
        out: list[RecordChange] = []
        for ident, frames in pending.items():
            for records in concat_alike(frames):
                out.extend(self._commit(entity_of[ident], records))
        return out

    def _map(
        self, batch: ChangeBatch, ident: tuple[str, str, str], data: pa.Table
    ) -> tuple[str, pl.DataFrame] | None:
        """``(entity, valid canonical records)`` of a source table's bronze rows; None: nothing to apply."""
        mapping = self._mappings.for_table(*ident)
        if mapping is None:
            SKIPPED.labels(reason="unmapped_table").inc(data.num_rows)
            if ident not in self._unmapped_logged:
                self._unmapped_logged.add(ident)
                log.info("%s.%s.%s has no mapping: bronze only", *ident)
            return None
        bronze = pl.from_arrow(data)
        assert isinstance(bronze, pl.DataFrame)
        EVENTS_IN.labels(stage="canonical").inc(bronze.height)
        mapped = map_batch(mapping, bronze)
        self._report_drift(mapped)
        self._quarantine_mapping(batch, mapped, bronze)
        records, bad = split_invalid(mapped.records)
        if bad.height:
            self._quarantine.send(
                invalid_rejects(bad, bronze),
                topic=batch.topic,
                partition=batch.partition,
                version=batch.last_offset,
            )
        EVENTS_OUT.labels(stage="canonical").inc(records.height)
        return (mapping.entity, records) if records.height else None

    def _commit(self, entity: str, records: pl.DataFrame) -> list[RecordChange]:
        writer = self._writer(entity)
        result = retry_transient(
            lambda: writer.apply(records),
            operation=f"silver apply {entity}",
            on_retry=lambda _e, _n: RETRIES.labels(operation="silver_apply").inc(),
        )
        EVENTS_OUT.labels(stage="silver").inc(result.rows_applied)
        if entity not in self._resolve:
            return []
        with STAGE_SECONDS.labels(stage="silver_read_back").time():
            return self._read_back(entity, records)

    def _report_drift(self, mapped: MappedBatch) -> None:
        for f in mapped.drift:
            SCHEMA_DRIFT.labels(
                system=f.system,
                table=f"{f.schema}.{f.table}",
                column=f.column,
                change=f.change,
                action=f.action,
            ).inc(f.rows)
            log.warning("schema drift: %s", f.message())

    def _quarantine_mapping(self, batch: ChangeBatch, mapped: MappedBatch, bronze: pl.DataFrame) -> None:
        if mapped.rejects.height == 0:
            return
        self._quarantine.send(
            mapping_rejects(mapped.rejects, bronze),
            topic=batch.topic,
            partition=batch.partition,
            version=batch.last_offset,
        )

    def _read_back(self, entity: str, records: pl.DataFrame) -> list[RecordChange]:
        """The silver rows of every key ``records`` touched (a truncate touches its whole table)."""
        out: list[RecordChange] = []
        path = self._writer(entity).path
        for (system, table), part in records.group_by(["source_system", "source_table"]):
            truncated = bool((part.get_column("op") == "t").any())
            keys = None if truncated else part.get_column("source_key").drop_nulls().unique().to_list()
            last = part.unique("source_key", keep="last", maintain_order=True)
            causes = {
                r["source_key"]: Cause(
                    record_id(str(system), str(table), r["source_key"]),
                    r["lsn"],
                    int(r["source_ts"].timestamp() * 1_000_000),
                    r["topic"],
                    r["partition"],
                    r["offset"],
                )
                for r in last.select(
                    "source_key", "lsn", "source_ts", "topic", "partition", "offset"
                ).iter_rows(named=True)
                if r["source_key"] is not None
            }
            rows = read_rows(path, str(system), str(table), keys)
            out.extend(record_changes(entity, rows, causes))
        return out


class IngestStage:
    """The per-worker bronze + silver stage of the ingest flow.

    ``echo``: drops the echo of our own pushes to the CRM/ERP before it reaches matching (it is
    still written to bronze and silver: it is the target system's real state).
    """

    def __init__(self, bronze: BronzeWriter, silver: SilverStage, echo: EchoFilter | None = None) -> None:
        self.bronze = bronze
        self.silver = silver
        self.echo = echo

    def process(self, batch: ChangeBatch) -> list[RecordChange]:
        """Bronze first (the raw log never waits for mapping), then canonical + silver."""
        return self.process_many([batch])

    def process_many(self, batches: Sequence[ChangeBatch]) -> list[RecordChange]:
        """:meth:`process` for the batches of one activation: bronze per batch (each commit carries
        its partition's offset), then silver once per source table for all of them."""
        written: list[tuple[ChangeBatch, BronzeTables]] = []
        for batch in batches:
            with STAGE_SECONDS.labels(stage="bronze").time():
                written.append((batch, self.bronze.write(batch)))
        with STAGE_SECONDS.labels(stage="silver").time():
            changes = self.silver.apply_many(written)
        if self.echo is None or not changes:
            return changes
        return [c for c in changes if not self._is_echo(c)]

    def _is_echo(self, change: RecordChange) -> bool:
        if change.values is None:
            return False
        assert self.echo is not None
        system, _table, key = split_record_id(change.record_id)
        return self.echo.is_echo(system, key, change.values)


class GoldenPublish:
    """Sends each golden batch's changes to ``golden.<entity>`` (delivery confirmed), per worker.

    The topic comes before the gold Delta tables: it is what the propagation flow waits for, while
    the gold tables are written beside the flow (:class:`GoldApply`). A crash replays the epochs
    after the last snapshot: the resolver, restored from it, produces the same versions again, the
    topic gets them a second time (consumers deduplicate on golden id and version), and the gold
    MERGEs, guarded by version, write them once (with the batches the snapshot held unwritten).
    """

    def __init__(self, bootstrap: str, topics: dict[str, str] | None = None) -> None:
        self._bootstrap = bootstrap
        self._topics = topics or {}
        self._publishers: dict[str, GoldenPublisher] = {}

    def publish(self, batch: GoldBatch) -> GoldBatch:
        """Publish ``batch.changes``; return the batch for the gold tables."""
        if not batch.changes:
            return batch
        entity = batch.entity
        if entity not in self._publishers:
            self._publishers[entity] = GoldenPublisher(
                self._bootstrap, entity, topic=self._topics.get(entity)
            )
        publisher = self._publishers[entity]
        with STAGE_SECONDS.labels(stage="golden_publish").time():
            retry_transient(
                lambda: publisher.publish(batch.changes),
                operation=f"golden publish {entity}",
                on_retry=lambda _e, _n: RETRIES.labels(operation="golden_publish").inc(),
            )
        return batch


class GoldApply:
    """Applies golden batches of one entity to the gold Delta tables, several at once.

    Runs on a :class:`~flows.engine.background.BackgroundWriter` thread: batches that queued up
    while the previous write ran are combined (:func:`core.golden.combine_batches`) into one set of
    commits, so the gold tables keep up however small the ingest batches are.
    """

    def __init__(self, delta_root: Path, entity: str) -> None:
        self.writer = GoldWriter(delta_root, entity)
        self.entity = entity

    def __call__(self, batches: list[GoldBatch]) -> None:
        """Write ``batches`` (in order) durably, retrying transient failures."""
        batch = combine_batches(batches)
        with STAGE_SECONDS.labels(stage="gold").time():
            retry_transient(
                lambda: self.writer.apply(batch),
                operation=f"gold apply {self.entity}",
                on_retry=lambda _e, _n: RETRIES.labels(operation="gold_apply").inc(),
            )


class _Discard:
    """The end of the flow when nothing is resolved: silver was the last effect."""

    def write(self, item: object) -> None:
        """Drop ``item``."""

    def close(self) -> None:
        """Nothing to release."""


def build_ingest_flow(
    settings: Settings,
    connectors: list[ConnectorFile],
    *,
    start: str = "earliest",
    dlq: bool = True,
    resolve_entities: bool = True,
    publish: bool = True,
) -> Dataflow:
    """The ingest dataflow over every table the connectors capture.

    ``resolve_entities``: also run entity resolution and the gold sinks for entities with a
    matching and a survivorship config; ``publish``: send golden changes to ``golden.<entity>``.
    """
    mappings = compile_mappings(settings.config_dir)
    flow = Dataflow("goldstream_ingest")
    decoded = decoded_changes(flow, settings, connectors, start=start)
    root = settings.delta_root
    bootstrap, dlq_topic = settings.kafka.bootstrap_servers, settings.dataflow.dlq_topic
    entities = resolvable_entities(settings.config_dir) if resolve_entities else ()

    def make_stage() -> IngestStage:
        producer = DeadLetterProducer(bootstrap, dlq_topic) if dlq else None
        quarantine = Quarantine(root, producer)
        return IngestStage(
            BronzeWriter(root, quarantine),
            SilverStage(root, mappings, quarantine, resolve_entities=entities),
            EchoFilter(root) if entities else None,
        )

    stages = PerWorker(make_stage)
    # flat_map_batch: the batches of all partitions read in one activation share their silver MERGEs
    changed = op.flat_map_batch("bronze_silver", decoded, lambda bs: nonempty(stages.get().process_many(bs)))
    if not entities:
        op.output("done", changed, WriterSink(lambda _i, _n: _Discard()))
        return flow
    # propagation.topics overrides golden.<entity> for both ends (tests and side-by-side deployments)
    topics = {e: settings.propagation.topics.get(e, golden_topic(e)) for e in entities}
    if publish:
        ensure_topics(bootstrap, list(topics.values()), partitions=settings.kafka.topic_partitions)
    if settings.dataflow.resolve_mode == "staged":
        golden = resolve_staged(
            "resolve",
            changed,
            config_dir=settings.config_dir,
            key_groups=settings.dataflow.resolve_key_groups,
        )
    else:
        golden = resolve("resolve", changed, config_dir=settings.config_dir)
    if publish:
        publishers = PerWorker(lambda: GoldenPublish(bootstrap, topics))
        golden = op.map("golden_publish", golden, lambda b: publishers.get().publish(b))

    def gold_writer(first: GoldBatch) -> BackgroundWriter[GoldBatch]:
        return BackgroundWriter(
            GoldApply(root, first.entity),
            name=f"gold-{first.entity}",
            min_interval_s=settings.dataflow.gold_write_interval_s,
        )

    written = write_in_background("gold", golden, lambda b: b.entity, gold_writer)
    op.output("done", written, WriterSink(lambda _i, _n: _Discard()))
    return flow


def resolvable_entities(config_dir: Path) -> tuple[str, ...]:
    """Entities with both a matching and a survivorship config."""
    matching = {p.stem for p in (config_dir / "matching").glob("*.yaml")}
    survivorship = {p.stem for p in (config_dir / "survivorship").glob("*.yaml")}
    return tuple(sorted(matching & survivorship))
