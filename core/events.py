"""Change events: one Debezium change, decoded, with its full source position.

These are the frozen, typed records that cross from ``cdc`` (decoding) to ``flows`` and ``sinks``.
They are :class:`msgspec.Struct` classes because they are built on the hot path: a Struct costs a
fraction of a dataclass or a pydantic model to create.
"""

from __future__ import annotations

from typing import Literal

import msgspec

#: Debezium operations we keep: read (snapshot), create, update, delete, truncate, message.
Op = Literal["r", "c", "u", "d", "t", "m"]
OPS: frozenset[str] = frozenset({"r", "c", "u", "d", "t", "m"})


class KafkaPosition(msgspec.Struct, frozen=True, gc=False):
    """Where a message sat in Kafka: the coordinates a replay or a dead-letter entry needs."""

    topic: str
    partition: int
    offset: int


class ChangeEvent(msgspec.Struct, frozen=True, gc=False):
    """One row change from a source database, as Debezium reported it.

    ``key``, ``before`` and ``after`` keep the JSON text exactly as Debezium wrote it: the bronze
    layer is a raw change log and typing happens later, in the canonical mappings.
    """

    system: str
    """Logical source system: Debezium's ``topic.prefix`` / ``source.name`` (``crm``, ``erp``...)."""
    db: str
    schema: str
    table: str
    op: str
    key: str | None
    before: str | None
    after: str | None
    lsn: int | None
    """PostgreSQL log sequence number of the change (the ordering key per source row)."""
    tx_id: int | None
    source_ts_us: int
    """Commit time in the source database, microseconds since the epoch (UTC)."""
    connector_ts_us: int
    """When Debezium processed the change, microseconds since the epoch (UTC)."""
    snapshot: str
    """``false`` for streamed changes; ``true``/``first``/``last``/... for snapshot reads."""
    topic: str
    partition: int
    offset: int
    kafka_ts_ms: int
    envelope: str
    """The raw Debezium value, kept verbatim."""

    @property
    def position(self) -> KafkaPosition:
        """The Kafka coordinates of this event."""
        return KafkaPosition(self.topic, self.partition, self.offset)


class Rejected(msgspec.Struct, frozen=True, gc=False):
    """A message that could not be decoded: it goes to quarantine and the dead-letter topic."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    kafka_ts_ms: int
    key: bytes | None
    value: bytes | None
    stage: str = "decode"


class RawBatch(msgspec.Struct, frozen=True, gc=False):
    """Messages polled from one Kafka partition, in offset order, as parallel columns.

    The dataflow moves whole batches rather than single messages: Bytewax's per-item overhead is
    paid once per batch, and the decoder and the Delta writer work column-wise.
    """

    topic: str
    partition: int
    offsets: tuple[int, ...]
    keys: tuple[bytes | None, ...]
    values: tuple[bytes | None, ...]
    timestamps_ms: tuple[int, ...]
    high_watermark: int = -1
    """The partition's high watermark when polled (-1 if unknown): consumer lag = hwm - last offset - 1."""

    @property
    def last_offset(self) -> int:
        """Offset of the last message, or -1 for an empty batch."""
        return self.offsets[-1] if self.offsets else -1


class ChangeBatch(msgspec.Struct, frozen=True, gc=False):
    """Decoded changes of one :class:`RawBatch`, column-wise, plus what was rejected or skipped.

    Column ``i`` of every tuple describes the same change. Text columns hold UTF-8 bytes exactly as
    they appeared in the message (``None`` for JSON null): the Delta writer validates and converts
    them in bulk, which is many times cheaper than a ``str`` per value. :meth:`events` gives the
    same data as typed :class:`ChangeEvent` records for code that works per change.
    """

    topic: str
    partition: int
    last_offset: int
    """The last Kafka offset the batch covers, decoded or not: the idempotency version of a commit."""
    system: tuple[str, ...]
    db: tuple[str, ...]
    schema: tuple[str, ...]
    table: tuple[str, ...]
    op: tuple[str, ...]
    key: tuple[bytes | None, ...]
    before: tuple[bytes | None, ...]
    after: tuple[bytes | None, ...]
    lsn: tuple[int | None, ...]
    tx_id: tuple[int | None, ...]
    source_ts_us: tuple[int, ...]
    connector_ts_us: tuple[int, ...]
    snapshot: tuple[str, ...]
    offset: tuple[int, ...]
    kafka_ts_ms: tuple[int, ...]
    envelope: tuple[bytes, ...]
    rejected: tuple[Rejected, ...] = ()
    tombstones: int = 0
    heartbeats: int = 0

    def __len__(self) -> int:
        return len(self.offset)

    def events(self) -> list[ChangeEvent]:
        """The changes as typed records (text decoded to ``str``)."""

        def text(value: bytes | None) -> str | None:
            return None if value is None else value.decode("utf-8")

        return [
            ChangeEvent(
                system=self.system[i],
                db=self.db[i],
                schema=self.schema[i],
                table=self.table[i],
                op=self.op[i],
                key=text(self.key[i]),
                before=text(self.before[i]),
                after=text(self.after[i]),
                lsn=self.lsn[i],
                tx_id=self.tx_id[i],
                source_ts_us=self.source_ts_us[i],
                connector_ts_us=self.connector_ts_us[i],
                snapshot=self.snapshot[i],
                topic=self.topic,
                partition=self.partition,
                offset=self.offset[i],
                kafka_ts_ms=self.kafka_ts_ms[i],
                envelope=self.envelope[i].decode("utf-8"),
            )
            for i in range(len(self.offset))
        ]
