"""A Kafka source that emits whole batches, one Bytewax partition per Kafka partition.

Why not Bytewax's bundled Kafka input: it emits one item per message (Python per-item overhead on
every message), its deserializers route Debezium tombstones to an error stream that is dropped
unless attached, and it resets to the beginning when an offset is out of range. This source:

* emits :class:`~core.events.RawBatch` items of up to ``batch_size`` messages, or whatever arrived
  within ``batch_timeout_ms`` of the first buffered message, so downstream steps and Delta commits
  work on batches;
* keeps the next offset to read as its recovery state (no consumer group, nothing committed to
  Kafka); a resumed partition continues right after the last *emitted* message, or, given a
  :class:`~flows.engine.durable.DurableOffsets` its sink confirms writes to, at the oldest emitted
  batch the sink has not confirmed yet (for sinks that write in the background);
* treats an out-of-range offset (data deleted by retention before we read it) as a terminal error
  instead of silently skipping data.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Literal, cast

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from cdc.topics import topic_partitions
from core.errors import TerminalError, TransientError
from core.events import RawBatch
from core.metrics import CONSUMER_LAG, EVENTS_IN
from core.retry import retry_transient
from flows.engine.durable import DurableOffsets

log = logging.getLogger(__name__)
LAG_EVERY_S = 2.0


def part_key(topic: str, partition: int) -> str:
    """Bytewax partition key of one Kafka partition."""
    return f"{topic}#{partition}"


def parse_part_key(key: str) -> tuple[str, int]:
    """Inverse of :func:`part_key`."""
    topic, _, part = key.rpartition("#")
    return topic, int(part)


class KafkaBatchPartition(StatefulSourcePartition[RawBatch, int]):
    """Reads one Kafka partition; the state is the next offset to read."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        partition: int,
        *,
        start_offset: int,
        batch_size: int,
        batch_timeout_s: float,
        durable: DurableOffsets | None = None,
    ) -> None:
        self._consumer = consumer
        self._durable = durable
        self._topic = topic
        self._partition = partition
        self._tp = TopicPartition(topic, partition)
        self._next_offset = start_offset
        self._batch_size = batch_size
        self._timeout_s = batch_timeout_s
        self._offsets: list[int] = []
        self._keys: list[bytes | None] = []
        self._values: list[bytes | None] = []
        self._ts: list[int] = []
        self._first_at = 0.0
        self._last_lag_at = 0.0
        self._lag = CONSUMER_LAG.labels(topic=topic, partition=str(partition))
        self._in = EVENTS_IN.labels(stage="source")
        consumer.assign([TopicPartition(topic, partition, start_offset)])

    def _poll(self) -> None:
        want = self._batch_size - len(self._offsets)
        if want <= 0:
            return
        # timeout=0: only what librdkafka has already prefetched; never block the worker, other
        # partitions on it need their turn (next_awake paces us when idle).
        msgs = self._consumer.consume(want, 0)
        if not msgs:
            return
        errors = [e for m in msgs if (e := m.error()) is not None]
        for err in errors:
            self._on_error(err)
        if errors:
            msgs = [m for m in msgs if m.error() is None]
            if not msgs:
                return
        if not self._offsets:
            self._first_at = time.monotonic()
        # one comprehension per column: several times cheaper than four appends per message
        # only error events lack an offset, and those were taken out above
        self._offsets += cast("list[int]", [m.offset() for m in msgs])
        self._keys += [m.key() for m in msgs]
        self._values += [m.value() for m in msgs]
        self._ts += [m.timestamp()[1] for m in msgs]

    def _on_error(self, err: KafkaError) -> None:
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if code == KafkaError._AUTO_OFFSET_RESET or err.fatal():
            raise TerminalError(
                f"{self._topic}[{self._partition}] at offset {self._next_offset}: {err.str()} "
                "(the messages after the last recovery snapshot are gone: retention deleted them "
                "before they were read; re-snapshot the connector and reset recovery)"
            )
        # Broker or network trouble: librdkafka reconnects by itself; say so and keep going.
        log.warning("%s[%d]: %s", self._topic, self._partition, err.str())

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_at < LAG_EVERY_S:
            return
        self._last_lag_at = now
        try:
            _low, high = self._consumer.get_watermark_offsets(self._tp, cached=True)
        except Exception:
            return
        if high is not None and high >= 0 and self._next_offset >= 0:
            self._lag.set(max(0, high - self._next_offset))

    def next_batch(self) -> list[RawBatch]:
        """Emit a batch when it is full or its first message has waited ``batch_timeout_ms``."""
        self._poll()
        self._update_lag()
        if not self._offsets:
            return []
        full = len(self._offsets) >= self._batch_size
        if not full and time.monotonic() - self._first_at < self._timeout_s:
            return []
        batch = RawBatch(
            topic=self._topic,
            partition=self._partition,
            offsets=tuple(self._offsets),
            keys=tuple(self._keys),
            values=tuple(self._values),
            timestamps_ms=tuple(self._ts),
        )
        self._next_offset = self._offsets[-1] + 1
        if self._durable is not None:
            self._durable.emitted(self._topic, self._partition, self._offsets[0], self._next_offset)
        self._offsets, self._keys, self._values, self._ts = [], [], [], []
        self._in.inc(len(batch.offsets))
        return [batch]

    def next_awake(self) -> datetime | None:
        """Busy partitions are polled again at once; idle ones every 20 ms."""
        if len(self._offsets) >= self._batch_size:
            return None
        return datetime.now(UTC) + timedelta(milliseconds=20)

    def snapshot(self) -> int:
        """Where to resume: everything before it has been emitted downstream (and, with a
        ``durable`` tracker, confirmed written by the sink)."""
        if self._durable is not None:
            return self._durable.resume_offset(self._topic, self._partition, self._next_offset)
        return self._next_offset

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()


def end_offset(consumer: Consumer, topic: str, partition: int, *, deadline_s: float = 60.0) -> int:
    """The partition's end (high watermark) now, asked of the broker.

    Why not assign ``OFFSET_END`` and let librdkafka resolve it: it does so lazily, at its first
    fetch, so a message produced between starting the flow and that fetch would be skipped, and a
    recovery snapshot taken before the first message would hold ``OFFSET_END`` itself, so a
    restart would skip everything produced while the flow was down. A concrete offset has neither
    gap.
    """

    def ask() -> int:
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10.0, cached=False
            )
        except KafkaException as exc:
            raise TransientError(f"{topic}[{partition}]: end offset: {exc}") from exc
        if high is None or high < 0:
            raise TransientError(f"{topic}[{partition}]: the broker gave no end offset")
        return int(high)

    return retry_transient(ask, operation=f"end offset of {topic}[{partition}]", deadline_s=deadline_s)


class KafkaBatchSource(FixedPartitionedSource[RawBatch, int]):
    """Every partition of ``topics``, read in batches with offsets kept in recovery snapshots.

    ``durable``: the tracker a background-writing sink confirms its commits to; the snapshots then
    hold back to the oldest unconfirmed batch (see :mod:`flows.engine.durable`).
    """

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        *,
        batch_size: int = 20_000,
        batch_timeout_ms: int = 500,
        start: Literal["earliest", "latest"] = "earliest",
        extra_config: dict[str, str] | None = None,
        durable: DurableOffsets | None = None,
    ) -> None:
        if not topics:
            raise TerminalError("no topics to read (are the connector files empty?)")
        self._bootstrap = bootstrap
        self._topics = topics
        self._batch_size = batch_size
        self._timeout_s = batch_timeout_ms / 1000
        self._start = OFFSET_BEGINNING if start == "earliest" else OFFSET_END
        self._extra = extra_config or {}
        self._durable = durable

    def list_parts(self) -> list[str]:
        """One part per Kafka partition of every topic."""
        counts = topic_partitions(self._bootstrap, self._topics)
        return [part_key(t, p) for t, n in counts.items() for p in range(n)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> KafkaBatchPartition:
        """Open a consumer for one partition, at the resumed offset or the configured start."""
        topic, partition = parse_part_key(for_part)
        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                # Required by librdkafka even with manual assignment; nothing is committed to it.
                "group.id": "goldstream-unused",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "error",
                "enable.partition.eof": False,
                "client.id": f"goldstream-{step_id}-{for_part}",
                **self._extra,
            }
        )
        start = resume_state if resume_state is not None else self._start
        if start == OFFSET_END:
            start = end_offset(consumer, topic, partition)
        return KafkaBatchPartition(
            consumer,
            topic,
            partition,
            start_offset=start,
            batch_size=self._batch_size,
            batch_timeout_s=self._timeout_s,
            durable=self._durable,
        )
