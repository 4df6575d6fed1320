"""Writes that run beside the dataflow, with exactly-once kept by Bytewax's recovery snapshots.

Why: a sink whose Delta commits take a second holds its worker for that second, so every batch
behind it waits; latency then grows with the slowest table of the pipeline. Here the worker only
queues the item and carries on; a thread per writer applies what has queued up, several items at
once (one set of commits for all of them, which also lets it keep up under load).

Why nothing is lost: the step is a ``stateful_batch`` operator, and Bytewax calls ``snapshot`` on it
at the end of every epoch. The snapshot is the list of items submitted but not yet written (the one
being written included). After a crash the step resumes from it and writes those items again, and
the epochs after it are replayed from the source, so every item is written at least once; the
writer must be idempotent (the gold writer is: its MERGEs are guarded by version). Waiting for the
writes at the snapshot instead would stall the worker for a whole write at every epoch.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

log = logging.getLogger(__name__)

X = TypeVar("X")


class BackgroundWriter(Generic[X]):
    """Applies submitted items in order on its own thread, coalescing what queued up.

    ``apply`` gets every item that waited (in submission order) and must be idempotent and either
    succeed or raise: it runs its own retries. After a failure every later :meth:`submit`,
    :meth:`pending` and :meth:`flush` raises the error, so the dataflow stops instead of skipping
    data.

    ``min_interval_s``: a write starts at least this long after the previous one started (unless
    :meth:`flush` is waiting). A write's cost is mostly per commit, not per row, so on a busy
    machine spacing them out gives the CPU back to the critical path; the items that queued up in
    the meantime are written together.
    """

    def __init__(
        self,
        apply: Callable[[list[X]], None],
        *,
        name: str,
        max_pending: int = 256,
        min_interval_s: float = 0.0,
    ) -> None:
        self._apply = apply
        self._min_interval_s = min_interval_s
        self._last_start = -math.inf
        self._hurry = threading.Event()
        # Bounded: a writer that falls behind slows the worker down instead of growing memory.
        # The thread is a daemon: what it has not written at exit is in the last snapshot.
        self._queue: queue.Queue[X] = queue.Queue(maxsize=max_pending)
        self._lock = threading.Condition()
        self._unwritten: deque[X] = deque()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"writer-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: X) -> None:
        """Queue ``item`` (blocks while ``max_pending`` items wait)."""
        self.raise_if_failed()
        with self._lock:
            self._unwritten.append(item)
        self._queue.put(item)

    def pending(self) -> list[X]:
        """The items submitted and not yet written, oldest first (a copy)."""
        self.raise_if_failed()
        with self._lock:
            return list(self._unwritten)

    def flush(self) -> None:
        """Wait until everything submitted is written (now, not after ``min_interval_s``); raise if a
        write failed."""
        self._hurry.set()
        try:
            with self._lock:
                self._lock.wait_for(lambda: not self._unwritten or self._error is not None)
        finally:
            self._hurry.clear()
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        """Raise the writer thread's error, if it had one."""
        if self._error is not None:
            raise RuntimeError(f"background write failed: {self._error}") from self._error

    def _run(self) -> None:
        while True:
            items: list[X] = [self._queue.get()]
            wait = self._last_start + self._min_interval_s - time.monotonic()
            if wait > 0:
                self._hurry.wait(wait)
            self._last_start = time.monotonic()
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if self._error is None:
                    self._apply(items)
            except BaseException as exc:  # surfaced to the worker by submit / pending / flush
                log.exception("background write failed")
                self._error = exc
            with self._lock:
                if self._error is None:
                    for _ in items:
                        self._unwritten.popleft()
                self._lock.notify_all()


class _WriteBehind(StatefulBatchLogic[X, None, list[X]]):
    def __init__(self, make: Callable[[X], BackgroundWriter[X]], resume: list[X] | None) -> None:
        self._make = make
        self._writer: BackgroundWriter[X] | None = None
        for item in resume or ():
            # written before the crash or not: the writer is idempotent, so write them again
            self._submit(item)

    def _submit(self, item: X) -> None:
        if self._writer is None:
            # built on the first item: Bytewax does not tell a logic builder its key
            self._writer = self._make(item)
        self._writer.submit(item)

    def on_batch(self, values: list[X]) -> tuple[Iterable[None], bool]:
        for v in values:
            self._submit(v)
        return [], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[None], bool]:
        if self._writer is not None:
            self._writer.flush()
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> list[X]:
        # What a restart must write again; a fresh list, so later submits do not change it.
        return self._writer.pending() if self._writer is not None else []


@operator
def write_in_background(
    step_id: str,
    up: Stream[X],
    key: Callable[[X], str],
    make: Callable[[X], BackgroundWriter[X]],
) -> Stream[tuple[str, None]]:
    """Apply ``up``'s items with one :class:`BackgroundWriter` per ``key`` (built by ``make`` from the
    key's first item); unwritten items are kept in the recovery snapshots. The returned stream
    carries nothing."""
    keyed = op.key_on("key", up, key)
    return op.stateful_batch("write", keyed, lambda resume: _WriteBehind(make, resume))
