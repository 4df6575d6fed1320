"""The Kafka batch source's recovery snapshot with and without a sink's durability tracker."""

from __future__ import annotations

from typing import Any

from flows.engine.durable import DurableOffsets
from flows.engine.kafka_source import KafkaBatchPartition

T = "crm.public.contacts"


class _Msg:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def error(self) -> None:
        return None

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b'{"id":%d}' % self._offset

    def value(self) -> bytes:
        return b"{}"

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000 + self._offset)


class _Consumer:
    """Serves offsets start.. in order, ``per_poll`` at a time."""

    def __init__(self, per_poll: int) -> None:
        self.next = 0
        self.per_poll = per_poll

    def assign(self, parts: list[Any]) -> None:
        self.next = parts[0].offset

    def consume(self, n: int, _timeout: float) -> list[_Msg]:
        msgs = [_Msg(o) for o in range(self.next, self.next + min(n, self.per_poll))]
        self.next += len(msgs)
        return msgs

    def get_watermark_offsets(self, _tp: Any, cached: bool = True) -> tuple[int, int]:
        return 0, 10_000

    def close(self) -> None:
        pass


def partition(durable: DurableOffsets | None, start: int = 0) -> KafkaBatchPartition:
    return KafkaBatchPartition(
        _Consumer(per_poll=10),  # type: ignore[arg-type]
        T,
        0,
        start_offset=start,
        batch_size=10,
        batch_timeout_s=60,
        durable=durable,
    )


def test_without_a_tracker_the_snapshot_is_the_next_offset_after_the_emitted_batch() -> None:
    p = partition(None)
    [batch] = p.next_batch()
    assert batch.offsets == tuple(range(10))
    assert p.snapshot() == 10


def test_with_a_tracker_the_snapshot_waits_for_the_sinks_confirmation() -> None:
    durable = DurableOffsets()
    p = partition(durable, start=5)
    [first] = p.next_batch()
    [second] = p.next_batch()
    assert (first.offsets[0], second.last_offset) == (5, 24)
    assert p.snapshot() == 5  # nothing confirmed: a restart re-reads both batches
    durable.durable(T, 0, first.last_offset + 1)
    assert p.snapshot() == 15
    durable.durable(T, 0, second.last_offset + 1)
    assert p.snapshot() == 25
