"""The ingest dataflow: bronze, canonical mapping and silver, feeding entity resolution.

    Kafka (one Bytewax partition per Kafka partition, batches)
      -> decode (cdc.envelope)                     tombstones/heartbeats counted, bad messages rejected
      -> bronze   (BronzeWriter)                   raw change log per source table, quarantine + DLQ
      -> mapping  (SilverStage)                    config/mappings -> canonical records;
                                                   mapping rejects -> quarantine (stage "mapping") + DLQ;
                                                   schema drift handled by each mapping's policy
      -> silver   (flows.silver_step)              keyed by entity: the MERGEs on a writer thread per
                                                   silver table; passes on at once the silver state of
                                                   every key the batch touched (RecordChange batches),
      -> echo                                      minus the echo of our own pushes (flows.propagate.echo)
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

What the resolve stage receives is the silver row of each touched key as the MERGE leaves it, not
the change as it came: silver's guard may ignore a late or duplicated change, and TOAST placeholders
are only filled there. The silver step knows that row without waiting for the MERGE when the change
is newer than anything silver holds for the key and carried every field; otherwise it waits for the
queued MERGEs and reads the row back (see :mod:`flows.silver_step`).
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
from core.events import ChangeBatch, Rejected
from core.golden import GoldBatch, RecordChange, combine_batches, golden_topic, split_record_id
from core.metrics import EVENTS_IN, EVENTS_OUT, RETRIES, SCHEMA_DRIFT, SKIPPED, STAGE_SECONDS
from core.retry import retry_transient
from core.settings import Settings
from flows.bronze import BronzeWriter, Quarantine, decoded_changes
from flows.canonical import MappedBatch, MappingSet, compile_mappings, map_rows
from flows.engine.background import BackgroundWriter, write_in_background
from flows.engine.sink import WriterSink
from flows.propagate.echo import EchoFilter
from flows.resolve.operator import resolve
from flows.resolve.staged_operator import resolve_staged
from flows.silver_step import MappedRecords, SilverFeed, SilverLogic, concat_alike
from sinks.delta.gold import GoldWriter
from sinks.delta.silver import split_invalid
from sinks.dlq import DeadLetterProducer
from sinks.golden_topic import GoldenPublisher

log = logging.getLogger(__name__)

T = TypeVar("T")


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


BronzeTables = dict[tuple[str, str, str], pa.Table]
"""A batch's bronze rows per source table ``(system, schema, table)``."""


class SilverStage:
    """Maps bronze rows to canonical records and hands them to silver.

    ``resolve_entities``: entities whose changed records are passed on to entity resolution (others
    are only written to silver). In the ingest flow the mapping runs per worker (:meth:`map_many`)
    and the silver step (:class:`~flows.silver_step.SilverLogic`) keyed by entity applies the
    records; :meth:`apply_many` does both here, synchronously (tools and tests).
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
        self._feeds: dict[str, SilverFeed] = {}
        self._unmapped_logged: set[tuple[str, str, str]] = set()

    def apply(self, batch: ChangeBatch, tables: BronzeTables) -> list[RecordChange]:
        """Map and apply one decoded batch's bronze rows; return the changed records to resolve."""
        return self.apply_many([(batch, tables)])

    def apply_many(self, written: Sequence[tuple[ChangeBatch, BronzeTables]]) -> list[RecordChange]:
        """:meth:`map_many`, then apply to silver and wait for the MERGEs; the changed records."""
        out: list[RecordChange] = []
        for item in self.map_many(written):
            feed = self._feeds.get(item.entity)
            if feed is None:
                feed = self._feeds[item.entity] = SilverFeed(
                    self._root, item.entity, resolve=item.entity in self._resolve
                )
            out.extend(feed.apply(item))
            feed.flush()
        return out

    def map_many(self, written: Sequence[tuple[ChangeBatch, BronzeTables]]) -> list[MappedRecords]:
        """Map the bronze rows of several decoded batches; the valid records per entity.

        Each batch's rejects are quarantined with that batch's position. The records of one source
        table from all the batches (the partitions of its topic read in one activation) come out
        together, so silver takes them in one MERGE: with keys spread over the table a MERGE
        rewrites most of its files whatever its size. (Different partitions never hold the same
        key, and the MERGE orders by sequence anyway.)
        """
        pending: dict[tuple[str, str, str], list[pl.DataFrame]] = {}
        entity_of: dict[tuple[str, str, str], str] = {}
        for batch, tables in written:
            for ident, data in tables.items():
                mapped = self._map(batch, ident, data)
                if mapped is not None:
                    entity_of[ident], records = mapped
                    pending.setdefault(ident, []).append(records)
        return [
            MappedRecords(entity_of[ident], records)
            for ident, frames in pending.items()
            for records in concat_alike(frames)
        ]

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
        mapped = map_rows(mapping, bronze)
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


class IngestStage:
    """The per-worker bronze + mapping stage of the ingest flow (:meth:`map_many`), or bronze,
    mapping and silver in one synchronous call (:meth:`process_many`: tools and tests).

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
        changes = self.silver.apply_many(self._bronze(batches))
        return drop_echoes(self.echo, changes)

    def map_many(self, batches: Sequence[ChangeBatch]) -> list[MappedRecords]:
        """Bronze per batch, then the canonical records of all of them, per entity (for silver)."""
        written = self._bronze(batches)
        with STAGE_SECONDS.labels(stage="mapping").time():
            return self.silver.map_many(written)

    def _bronze(self, batches: Sequence[ChangeBatch]) -> list[tuple[ChangeBatch, BronzeTables]]:
        written: list[tuple[ChangeBatch, BronzeTables]] = []
        for batch in batches:
            with STAGE_SECONDS.labels(stage="bronze").time():
                written.append((batch, self.bronze.write(batch)))
        return written


def drop_echoes(echo: EchoFilter | None, changes: list[RecordChange]) -> list[RecordChange]:
    """``changes`` without the echo of our own pushes (deletes are never echoes)."""
    if echo is None or not changes:
        return changes
    out = []
    for change in changes:
        if change.values is not None:
            system, _table, key = split_record_id(change.record_id)
            if echo.is_echo(system, key, change.values):
                continue
        out.append(change)
    return out


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
            BronzeWriter(root, quarantine), SilverStage(root, mappings, quarantine, resolve_entities=entities)
        )

    stages = PerWorker(make_stage)
    # flat_map_batch: the batches of all partitions read in one activation are mapped together
    mapped = op.flat_map_batch("bronze_map", decoded, lambda bs: stages.get().map_many(bs))
    # one silver step per entity: its MERGEs on a writer thread, the touched rows passed on at once
    keyed = op.key_on("silver_key", mapped, lambda m: m.entity)
    silver_interval = settings.dataflow.silver_write_interval_s
    silvered = op.stateful_batch(
        "silver",
        keyed,
        lambda resume: SilverLogic(
            root, frozenset(entities), silver_interval, resume, engine=settings.dataflow.silver_engine
        ),
    )
    if not entities:
        op.output("done", silvered, WriterSink(lambda _i, _n: _Discard()))
        return flow
    echoes = PerWorker(lambda: EchoFilter(root))
    changed = op.filter(
        "changed",
        op.map("echo", op.key_rm("silver_unkey", silvered), lambda cs: drop_echoes(echoes.get(), cs)),
        bool,
    )
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
