"""Re-driving quarantined messages after a fix (``goldstream dlq replay``).

A message lands in quarantine (``sinks.delta.quarantine``) when a stage cannot process it: the
decoder (not a Debezium envelope), the mapping engine, the silver contract. Once the cause is fixed
(a decoder or mapping change, a repaired connector), :func:`replay` re-publishes each selected
message's original key and value bytes to its original topic and partition, so the dataflow reads
it again like any other change: bronze appends it, the canonical stage maps it, and silver's
sequence guard (LSN, txId) makes re-applying an old change safe: it cannot overwrite anything newer.
Null values (tombstones) and bytes that are not JSON at all are re-sent exactly as they were.

Order of effects: publish, wait until the broker acknowledged every message, then mark the rows
``replayed=true`` in the quarantine table. A crash in between leaves them unmarked and the next
replay sends them again: at least once, like every Kafka delivery, and harmless for the same
reason. Rows already marked are never sent again. A message quarantined at several stages is sent
once. Messages are sent in source order (topic, partition, offset) to the partition they came from,
so changes of one key keep their relative order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import polars as pl
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from core.errors import TransientError
from core.metrics import DLQ_REPLAYED
from sinks.delta.quarantine import POSITION, QuarantineFilter, mark_replayed, read_quarantine

#: Header on every re-published message: where the original was (``topic:partition:offset``).
REPLAY_HEADER = "goldstream.replay.of"


@dataclass(frozen=True)
class ReplayMessage:
    """One message to re-publish."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Publisher(Protocol):
    """Sends messages and confirms their delivery (Kafka in production, a fake in tests)."""

    def publish(self, messages: list[ReplayMessage]) -> int:
        """Send ``messages`` and wait for every acknowledgement; raise if any is not delivered."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class KafkaPublisher:
    """Re-publishes messages to their original topic and partition, each delivery confirmed."""

    def __init__(
        self, bootstrap: str, *, timeout: float = 60.0, extra_config: dict[str, str] | None = None
    ) -> None:
        self.timeout = timeout
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,  # no duplicates from producer-internal retries
                "linger.ms": 20,
                **(extra_config or {}),
            }
        )

    def publish(self, messages: list[ReplayMessage]) -> int:
        """Send ``messages`` in order and wait for the broker's acknowledgements."""
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(f"{msg.topic()}[{msg.partition()}]: {err}")

        for m in messages:
            headers: list[tuple[str, str | bytes | None]] = [
                (REPLAY_HEADER, f"{m.topic}:{m.partition}:{m.offset}".encode())
            ]
            while True:
                try:
                    self._producer.produce(
                        m.topic,
                        key=m.key,
                        value=m.value,
                        partition=m.partition,
                        headers=headers,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)  # local queue full: let deliveries drain
                except KafkaException as exc:
                    raise TransientError(f"re-publishing to {m.topic}[{m.partition}] failed: {exc}") from exc
        remaining = self._producer.flush(self.timeout)
        if remaining:
            raise TransientError(
                f"{remaining} re-published message(s) not acknowledged within {self.timeout}s"
            )
        if failures:
            raise TransientError(
                f"{len(failures)} re-published message(s) not delivered, first: {failures[0]}"
            )
        return len(messages)

    def close(self) -> None:
        """Flush what is still queued."""
        self._producer.flush(self.timeout)


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay would send: the matching quarantine rows and the messages they come from."""

    rows: pl.DataFrame
    """Matching, not-yet-replayed quarantine rows (positions, reason, preview)."""
    messages: list[ReplayMessage]
    """One per distinct source position, in source order."""
    unsendable: pl.DataFrame
    """Rows with neither key nor value: nothing to re-send (they stay unmarked)."""

    def counts(self) -> pl.DataFrame:
        """Rows per stage, reason and topic: what the confirmation shows."""
        return self.rows.group_by("stage", "reason", "topic").len("rows").sort("stage", "reason", "topic")


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did."""

    sent: int
    marked: int
    dry_run: bool
    unsendable: int = 0
    batches: int = 0
    topics: dict[str, int] = field(default_factory=dict)


def plan_replay(root: Path, flt: QuarantineFilter) -> ReplayPlan:
    """The messages a replay with ``flt`` would send (replayed rows are always excluded)."""
    rows = read_quarantine(
        root,
        QuarantineFilter(stages=flt.stages, reasons=flt.reasons, topics=flt.topics, include_replayed=False),
        columns=[*POSITION, "reason", "key", "value", "value_preview"],
    )
    empty = pl.col("key").is_null() & pl.col("value").is_null()
    unsendable = rows.filter(empty)
    rows = rows.filter(~empty)
    distinct = rows.unique(subset=["topic", "partition", "offset"], keep="first").sort(
        "topic", "partition", "offset"
    )
    messages = [
        ReplayMessage(t, p, o, k, v)
        for t, p, o, k, v in distinct.select("topic", "partition", "offset", "key", "value").iter_rows()
    ]
    return ReplayPlan(rows, messages, unsendable)


def replay(
    root: Path,
    plan: ReplayPlan,
    publisher: Publisher,
    *,
    dry_run: bool = False,
    batch: int = 5000,
    on_batch: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Re-publish ``plan``'s messages in batches, marking each batch's rows replayed once delivered.

    Marking per batch bounds what a failure in the middle leaves to send again. ``on_batch`` gets the
    number of messages each finished batch held (progress display).
    """
    topics = {t: n for t, n in plan.rows.group_by("topic").len().iter_rows()}
    if dry_run or not plan.messages:
        return ReplayReport(0, 0, dry_run, plan.unsendable.height, 0, topics)
    sent = marked = batches = 0
    for start in range(0, len(plan.messages), batch):
        chunk = plan.messages[start : start + batch]
        sent += publisher.publish(chunk)
        for m in chunk:
            DLQ_REPLAYED.labels(topic=m.topic).inc()
        keys = pl.DataFrame(
            [(m.topic, m.partition, m.offset) for m in chunk],
            schema={"topic": pl.String(), "partition": pl.Int32(), "offset": pl.Int64()},
            orient="row",
        )
        positions = plan.rows.select(POSITION).join(keys, on=["topic", "partition", "offset"], how="semi")
        marked += mark_replayed(root, positions)
        batches += 1
        if on_batch is not None:
            on_batch(len(chunk))
    return ReplayReport(sent, marked, False, plan.unsendable.height, batches, topics)
