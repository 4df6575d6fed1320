"""The bronze dataflow: every Debezium change, decoded, appended once to its bronze Delta table.

    Kafka (one Bytewax partition per Kafka partition, batches)
      -> decode (cdc.envelope)                      tombstones/heartbeats counted, bad messages rejected
      -> BronzeWriter                               bronze table per source table, quarantine + DLQ
         (BackgroundBronzeWriter: commits on a background thread, overlapping the next batch)

Exactly-once in effect: each append carries the Delta transaction ``(app_id=topic:partition,
version=last offset)``, checked on the same table object before committing, so batches replayed
after a crash or a restart from an older recovery snapshot add nothing twice. Because commits land
after the sink returns, the source snapshots only offsets the sink confirmed committed
(:class:`~flows.engine.durable.DurableOffsets`); a restart re-reads the rest.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
from bytewax import operators as op
from bytewax.dataflow import Dataflow, Stream

from cdc.connectors import ConnectorFile
from cdc.envelope import decode_batch
from core.events import ChangeBatch, RawBatch, Rejected
from core.metrics import (
    COMMIT_SECONDS,
    EVENTS_IN,
    EVENTS_OUT,
    QUARANTINED,
    RETRIES,
    SKIPPED,
    SOURCE_TO_DELTA_SECONDS,
    observe_many,
)
from core.retry import retry_transient
from core.settings import Settings
from flows.engine.durable import DurableOffsets
from flows.engine.kafka_source import KafkaBatchSource
from flows.engine.sink import WriterSink
from sinks.delta.appender import IdempotentAppender
from sinks.delta.bronze import (
    BRONZE_PARTITION_BY,
    BRONZE_SCHEMA,
    BRONZE_WRITER_PROPERTIES,
    batch_to_arrow,
    bronze_app_id,
    bronze_path,
    stored_columns,
    table_groups,
)
from sinks.delta.quarantine import (
    QUARANTINE_PARTITION_BY,
    QUARANTINE_SCHEMA,
    quarantine_app_id,
    quarantine_path,
    rejects_to_arrow,
)
from sinks.dlq import DeadLetterProducer

log = logging.getLogger(__name__)


class Quarantine:
    """Writes rejects to the quarantine table (exactly once) and the DLQ topic (at least once)."""

    def __init__(self, delta_root: Path, dlq: DeadLetterProducer | None) -> None:
        self._table = IdempotentAppender(
            quarantine_path(delta_root), QUARANTINE_SCHEMA, partition_by=QUARANTINE_PARTITION_BY
        )
        self._dlq = dlq

    def send(self, rejects: tuple[Rejected, ...], *, topic: str, partition: int, version: int) -> None:
        """Quarantine ``rejects`` from one Kafka partition; ``version`` is the batch's last offset."""
        if not rejects:
            return
        stage = rejects[0].stage
        result = retry_transient(
            lambda: self._table.append(
                rejects_to_arrow(rejects), app_id=quarantine_app_id(stage, topic, partition), version=version
            ),
            operation=f"quarantine append {topic}[{partition}]",
            on_retry=lambda _e, _n: RETRIES.labels(operation="quarantine_append").inc(),
        )
        # Publish to the DLQ only what the table newly accepted, so a replay does not re-publish.
        if result.rows_written and self._dlq is not None:
            fresh = rejects[len(rejects) - result.rows_written :]
            dlq = self._dlq
            retry_transient(
                lambda: dlq.publish(fresh),
                operation=f"DLQ publish {topic}[{partition}]",
                on_retry=lambda _e, _n: RETRIES.labels(operation="dlq_publish").inc(),
            )
        for r in rejects[len(rejects) - result.rows_written :]:
            QUARANTINED.labels(stage=r.stage, reason=r.reason).inc()
            log.warning(
                "quarantined %s[%d]@%d: %s: %s", r.topic, r.partition, r.offset, r.reason, r.detail[:200]
            )

    def close(self) -> None:
        """Flush the DLQ producer."""
        if self._dlq is not None:
            self._dlq.close()


class BronzeWriter:
    """Appends decoded batches to their bronze tables and rejects to quarantine.

    ``images``: the rows :meth:`write` and :meth:`prepare` return also carry the ``before`` and
    ``after`` images as columns (the canonical mapping's input); the tables never store them.
    """

    def __init__(self, delta_root: Path, quarantine: Quarantine, *, images: bool = True) -> None:
        self._root = delta_root
        self._quarantine = quarantine
        self._images = images
        self._tables: dict[tuple[str, str, str], IdempotentAppender] = {}
        self._out = EVENTS_OUT.labels(stage="bronze")
        self._commit = COMMIT_SECONDS.labels(layer="bronze")

    def _table(self, system: str, schema: str, table: str) -> IdempotentAppender:
        key = (system, schema, table)
        if key not in self._tables:
            self._tables[key] = IdempotentAppender(
                bronze_path(self._root, system, schema, table),
                BRONZE_SCHEMA,
                partition_by=BRONZE_PARTITION_BY,
                # the compaction after 50 commits rewrites ~50 batches (seconds for 20k-event
                # batches); the appends that follow must not wait for it
                background_maintenance=True,
                writer_properties=BRONZE_WRITER_PROPERTIES,
            )
        return self._tables[key]

    def write(self, batch: ChangeBatch) -> dict[tuple[str, str, str], pa.Table]:
        """Write one decoded batch: quarantine first, then each source table's rows.

        Returns the bronze rows per source table ``(system, schema, table)``, for later stages.
        """
        tables = self.prepare(batch)
        self.append(batch, tables)
        return tables

    def prepare(self, batch: ChangeBatch) -> dict[tuple[str, str, str], pa.Table]:
        """First half of :meth:`write`: count skips, quarantine the rejects, build the Arrow rows.

        The bronze rows are not written yet; :meth:`append` does that.
        """
        SKIPPED.labels(reason="tombstone").inc(batch.tombstones)
        SKIPPED.labels(reason="heartbeat").inc(batch.heartbeats)
        self._quarantine.send(
            batch.rejected, topic=batch.topic, partition=batch.partition, version=batch.last_offset
        )
        if not len(batch):
            return {}
        return {
            ident: batch_to_arrow(batch, rows, images=self._images)
            for ident, rows in table_groups(batch).items()
        }

    def append(self, batch: ChangeBatch, tables: dict[tuple[str, str, str], pa.Table]) -> None:
        """Second half of :meth:`write`: commit the rows :meth:`prepare` built for ``batch``.

        Uses only the bronze tables (not the quarantine), so it may run on another thread than
        :meth:`prepare`, as long as one thread at a time appends.
        """
        app_id = bronze_app_id(batch.topic, batch.partition)
        for (system, schema, table), data in tables.items():
            appender = self._table(system, schema, table)
            result = retry_transient(
                partial(appender.append, stored_columns(data), app_id=app_id, version=batch.last_offset),
                operation=f"bronze append {system}.{schema}.{table}",
                on_retry=lambda _e, _n: RETRIES.labels(operation="bronze_append").inc(),
            )
            if result.rows_skipped:
                SKIPPED.labels(reason="already_committed").inc(result.rows_skipped)
            if result.rows_written:
                self._out.inc(result.rows_written)
                self._commit.observe(result.seconds)
                src_us = np.asarray(data.column("source_ts").cast("int64"))[-result.rows_written :]
                observe_many(SOURCE_TO_DELTA_SECONDS, (time.time() * 1e6 - src_us) / 1e6, layer="bronze")

    def close(self) -> None:
        """Wait for background maintenance of the bronze tables, close the quarantine's producer."""
        try:
            for appender in self._tables.values():
                appender.close()
        finally:
            self._quarantine.close()


class BackgroundBronzeWriter:
    """The bronze flow's sink writer: Arrow rows on the calling thread, Delta commits on another.

    ``write_deltalake`` runs in Rust without the GIL, so committing batch N on a background thread
    overlaps it with polling, decoding and converting batch N+1 on the worker thread. One batch at
    a time is in flight: :meth:`write` first waits for the previous commit (re-raising its error,
    which stops the dataflow like a synchronous failure would), so memory stays bounded and every
    Kafka partition's batches still commit in offset order.

    Exactly-once: :meth:`write` returns before its batch is committed, so Bytewax may close the
    epoch first. The source's recovery snapshot therefore comes from ``durable``
    (:class:`~flows.engine.durable.DurableOffsets`): a batch counts as written only once its commit
    landed, and a restart re-reads anything later, which the Delta transaction versions
    deduplicate. Without a tracker (tests, tools), the in-flight batch is only safe after
    :meth:`flush` or :meth:`close`.
    """

    def __init__(self, writer: BronzeWriter, durable: DurableOffsets | None) -> None:
        self._writer = writer
        self._durable = durable
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bronze-commit")
        self._pending: Future[None] | None = None

    def write(self, batch: ChangeBatch) -> None:
        """Build ``batch``'s rows, wait for the previous commit, then start committing this one."""
        tables = self._writer.prepare(batch)
        self.flush()
        self._pending = self._pool.submit(self._commit, batch, tables)

    def _commit(self, batch: ChangeBatch, tables: dict[tuple[str, str, str], pa.Table]) -> None:
        self._writer.append(batch, tables)
        if self._durable is not None:
            self._durable.durable(batch.topic, batch.partition, batch.last_offset + 1)

    def flush(self) -> None:
        """Wait until the batch in flight (if any) is committed; re-raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Commit what is in flight, stop the background thread, close the quarantine."""
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()


def decode(batch: RawBatch) -> ChangeBatch:
    """Decode one polled batch (the flows' first step)."""
    EVENTS_IN.labels(stage="decode").inc(len(batch.offsets))
    decoded = decode_batch(batch)
    EVENTS_OUT.labels(stage="decode").inc(len(decoded))
    return decoded


def bronze_topics(connectors: list[ConnectorFile]) -> list[str]:
    """The Kafka topics the bronze flow reads: every captured table but our internal ones."""
    return [t for c in connectors for t in c.table_topics()]


def decoded_changes(
    flow: Dataflow,
    settings: Settings,
    connectors: list[ConnectorFile],
    *,
    start: str,
    durable: DurableOffsets | None = None,
) -> Stream[ChangeBatch]:
    """The first steps every change-capture flow shares: our Kafka batch source over the
    connectors' table topics, then decoding. ``durable``: the source snapshots only the offsets
    its sink confirmed there (for sinks that commit in the background)."""
    if start not in ("earliest", "latest"):
        raise ValueError(f"start must be earliest or latest, not {start!r}")
    source = KafkaBatchSource(
        settings.kafka.bootstrap_servers,
        bronze_topics(connectors),
        batch_size=settings.dataflow.batch_size,
        batch_timeout_ms=settings.dataflow.batch_timeout_ms,
        start="earliest" if start == "earliest" else "latest",
        durable=durable,
    )
    raw = op.input("kafka", flow, source)
    return op.map("decode", raw, decode)


def build_bronze_flow(
    settings: Settings,
    connectors: list[ConnectorFile],
    *,
    start: str = "earliest",
    dlq: bool = True,
) -> Dataflow:
    """The bronze dataflow over every table the connectors capture."""
    flow = Dataflow("goldstream_bronze")
    # One tracker per process: the source and the sink of a Kafka partition run on the same worker
    # (no exchange between them), so the sink's confirmations reach that partition's snapshots.
    durable = DurableOffsets()
    decoded = decoded_changes(flow, settings, connectors, start=start, durable=durable)
    root = settings.delta_root
    bootstrap, dlq_topic = settings.kafka.bootstrap_servers, settings.dataflow.dlq_topic

    def make_writer(_worker: int, _count: int) -> BackgroundBronzeWriter:
        producer = DeadLetterProducer(bootstrap, dlq_topic) if dlq else None
        # nothing downstream maps these rows: no image columns to build
        writer = BronzeWriter(root, Quarantine(root, producer), images=False)
        return BackgroundBronzeWriter(writer, durable)

    op.output("bronze", decoded, WriterSink(make_writer))
    return flow
