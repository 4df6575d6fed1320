"""A Bytewax sink that hands each item to a plain Python writer object.

The writer holds the real logic (and is unit-tested without Bytewax); this wrapper only adapts it.
It is a dynamic (per-worker) sink: items are written on the worker that produced them, so every
Kafka partition's batches are written in offset order by one writer. Exactly-once comes from the
writer's Delta transaction ids, not from Bytewax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition

X = TypeVar("X")
X_contra = TypeVar("X_contra", contravariant=True)


class Writer(Protocol[X_contra]):
    """What a sink writer does."""

    def write(self, item: X_contra) -> object:
        """Write one item durably (or raise); a return value is ignored."""

    def close(self) -> None:
        """Release resources."""


class _Partition(StatelessSinkPartition[X], Generic[X]):
    def __init__(self, writer: Writer[X]) -> None:
        self._writer = writer

    def write_batch(self, items: list[X]) -> None:
        for item in items:
            self._writer.write(item)

    def close(self) -> None:
        self._writer.close()


class WriterSink(DynamicSink[X], Generic[X]):
    """Builds one writer per worker with ``factory(worker_index, worker_count)``."""

    def __init__(self, factory: Callable[[int, int], Writer[X]]) -> None:
        self._factory = factory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition[X]:
        """Make this worker's writer."""
        return _Partition(self._factory(worker_index, worker_count))
