"""Which Kafka offsets a sink has made durable, so a source can snapshot only what is safe.

Bytewax closes an epoch (and commits its recovery snapshots) once every step has *returned* from
the epoch's items. A sink that hands its writes to a background thread returns before the write
lands, so the source's usual snapshot ("the next offset after the last emitted message") could
be committed while a batch is still in flight; a crash then would lose that batch. With a
:class:`DurableOffsets` shared by the source and the sink of one process:

* the source registers every batch it emits (:meth:`DurableOffsets.emitted`);
* the sink confirms each batch once its writes are committed (:meth:`DurableOffsets.durable`), in
  the order the batches were emitted;
* the source's snapshot is :meth:`DurableOffsets.resume_offset`: the first offset of the oldest
  emitted batch not yet confirmed, or its own next offset when nothing is in flight.

A restart then re-reads the unconfirmed batches; the sink must be idempotent for them (the bronze
appends carry Delta transaction versions, so rows already committed are skipped).
"""

from __future__ import annotations

import threading
from collections import deque


class DurableOffsets:
    """Emitted-but-not-yet-durable offset ranges per Kafka partition (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (topic, partition) -> FIFO of (first offset, next offset after the batch)
        self._in_flight: dict[tuple[str, int], deque[tuple[int, int]]] = {}

    def emitted(self, topic: str, partition: int, first: int, end: int) -> None:
        """The source emitted the messages ``first .. end - 1`` of one partition."""
        with self._lock:
            self._in_flight.setdefault((topic, partition), deque()).append((first, end))

    def durable(self, topic: str, partition: int, end: int) -> None:
        """Everything of the partition before ``end`` is durably written."""
        with self._lock:
            pending = self._in_flight.get((topic, partition))
            while pending and pending[0][1] <= end:
                pending.popleft()

    def resume_offset(self, topic: str, partition: int, next_offset: int) -> int:
        """Where a restart must resume: the oldest unconfirmed batch's start, else ``next_offset``."""
        with self._lock:
            pending = self._in_flight.get((topic, partition))
            return pending[0][0] if pending else next_offset

    def in_flight(self, topic: str, partition: int) -> int:
        """How many emitted batches of the partition are not confirmed yet."""
        with self._lock:
            return len(self._in_flight.get((topic, partition), ()))
